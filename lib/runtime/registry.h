// The operator table: (domain, op_type) -> kernel factory. The table itself is in registry.cc; the
// factories live in ops/*.cc, one file per op family.
#pragma once
#include <string>
#include <vector>

#include "lib/runtime/kernel.h"

namespace ptq::runtime {

struct OpEntry {
  const char* domain;  // "" = ai.onnx
  const char* op_type;
  KernelFactory make;
};

// nullptr when no kernel exists for the op. "ai.onnx" is the default domain.
KernelFactory findKernelFactory(const std::string& domain, const std::string& op_type);
// Every registered op, for docs and `ptq-tool inspect`.
const std::vector<OpEntry>& registeredOps();

}  // namespace ptq::runtime
