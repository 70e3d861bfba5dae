// Runs the config's pipeline of passes over a model, timing each, recording its counters in the
// report, and (with verify_each) checking the IR after every pass.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/pipeline/pass.h"

namespace ptq::pipeline {

class PassManager {
 public:
  explicit PassManager(bool verify_each) : verify_each_(verify_each) {}
  void add(std::unique_ptr<Pass> pass) { passes_.push_back(std::move(pass)); }
  // Builds the passes named in config.pipeline from the registry.
  static PassManager fromConfig(const QuantConfig& config, bool verify_each);
  // Progress callback: (pass name, index, count). Called before each pass.
  std::function<void(const std::string&, size_t, size_t)> on_pass_start;
  void run(ir::Model& model, PassContext& ctx);
  size_t size() const { return passes_.size(); }

 private:
  bool verify_each_;
  std::vector<std::unique_ptr<Pass>> passes_;
};

}  // namespace ptq::pipeline
