#include "lib/pipeline/pass_manager.h"

#include <chrono>

#include "lib/ir/verifier.h"
#include "lib/util/error.h"

namespace ptq::pipeline {

PassManager PassManager::fromConfig(const QuantConfig& config, bool verify_each) {
  PassManager pm(verify_each);
  for (const PassSpec& p : config.pipeline) {
    try {  // options that only make sense together are checked when the pass is built
      pm.passes_.push_back(p.info->create(p.options));
    } catch (const Error& e) {
      throw e.withContext(config.source);
    }
  }
  return pm;
}

void PassManager::checkPipeline(const QuantConfig& config, bool has_calibration) {
  const std::string where = config.source + ": pipeline";
  const auto& steps = config.pipeline;
  for (size_t i = 0; i < steps.size(); ++i) {
    const PassTraits& t = steps[i].info->traits;
    const std::string& name = steps[i].name();
    if (t.needsCalibration(config.activations.dynamic) && !has_calibration)
      throwUsage(where + ": pass '" + name +
                 "' needs calibration data: give --calib (NAME=FILE, a folder, or tokens.i64 with --calib-shape), "
                 "the config's \"calibration\" section, or \"calibration\": {\"synthetic\": true}");
    for (size_t k = 0; k < steps.size(); ++k) {
      const PassTraits& other = steps[k].info->traits;
      if (t.needs_float_weights && k < i && other.quantizes_weights)
        throwUsage(where + ": pass '" + name + "' needs float weights, so it must come before '" + steps[k].name() +
                   "', which quantizes them");
      if (t.after_weight_quantization && k > i && other.quantizes_weights)
        throwUsage(where + ": pass '" + name + "' observes the model as it will be written, so it must come after '" +
                   steps[k].name() + "', which quantizes weights");
    }
  }
}

void PassManager::run(ir::Model& model, PassContext& ctx, std::vector<PassRecord>& records) {
  if (verify_each_) ir::verifyOrThrow(*model.graph, "input model");
  for (size_t i = 0; i < passes_.size(); ++i) {
    Pass& p = *passes_[i];
    if (on_pass_start) on_pass_start(p.name(), i, passes_.size());
    const auto t0 = std::chrono::steady_clock::now();
    PassResult r;
    try {
      r = p.run(model, ctx);
    } catch (const Error& e) {
      throw e.withContext("pass '" + p.name() + "'");
    }
    PassRecord rec;
    rec.name = p.name();
    rec.changed = r.changed;
    rec.counters = r.counters;
    rec.figures = r.figures;
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    records.push_back(rec);
    if (verify_each_) ir::verifyOrThrow(*model.graph, "after pass '" + p.name() + "'");
  }
}

}  // namespace ptq::pipeline
