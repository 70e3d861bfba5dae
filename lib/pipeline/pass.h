// A pass rewrites the model in place (and refines the quantization plan) and says what it did:
// changed or not, plus named counters. It fails by throwing ptq::Error naming the node; the
// PassManager then discards the run (the caller writes nothing), so a pass never leaves a
// half-applied model behind in an output file.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lib/ir/graph.h"
#include "lib/pipeline/config.h"
#include "lib/pipeline/quant_plan.h"

namespace ptq::calib {
class CalibrationSet;
}  // namespace ptq::calib

namespace ptq::pipeline {

struct PassResult {
  bool changed = false;
  std::map<std::string, int64_t> counters;
  std::map<std::string, double> figures;  // non-integer results (bit-allocation: objective, budget, budget used)
};

struct PassContext {
  const QuantConfig& config;
  QuantPlan& plan;
  std::vector<std::string>& warnings;  // end up in the report
  uint64_t seed = 0;
  int threads = 0;  // 0 = OpenMP default
  const calib::CalibrationSet* calibration = nullptr;  // loaded when the config or CLI names data
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual std::string name() const = 0;
  virtual PassResult run(ir::Model& model, PassContext& ctx) = 0;
};

}  // namespace ptq::pipeline
