#include "passes/registry.h"

#include "passes/qdq.h"
#include "passes/rtn.h"

namespace ptq::passes {

const pipeline::PassTable& builtinPasses() {
  static const pipeline::PassTable table = {rtnPassInfo(), qdqPassInfo()};
  return table;
}

}  // namespace ptq::passes
