// Runs the config's pipeline of passes over a model, timing each, recording its counters in the
// report, and (with verify_each) checking the IR after every pass. Before the first pass runs it
// checks the whole pipeline against what each pass declares (PassTraits): calibration data present
// when a pass needs it, passes that need float weights before every pass that quantizes weights,
// passes that observe the written model after them. A bad pipeline fails before any work is done.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/pipeline/pass.h"
#include "lib/pipeline/report.h"

namespace ptq::pipeline {

class PassManager {
 public:
  explicit PassManager(bool verify_each) : verify_each_(verify_each) {}
  // Builds the passes named in config.pipeline, with their parsed options.
  static PassManager fromConfig(const QuantConfig& config, bool verify_each);
  // Throws Error(kUsage) naming the config and the pass when the pipeline cannot run as ordered or
  // lacks what a pass needs.
  static void checkPipeline(const QuantConfig& config, bool has_calibration);
  // Progress callback: (pass name, index, count). Called before each pass.
  std::function<void(const std::string&, size_t, size_t)> on_pass_start;
  // Runs every pass; appends one PassRecord per pass to `records`.
  void run(ir::Model& model, PassContext& ctx, std::vector<PassRecord>& records);
  size_t size() const { return passes_.size(); }

 private:
  bool verify_each_;
  std::vector<std::unique_ptr<Pass>> passes_;
};

}  // namespace ptq::pipeline
