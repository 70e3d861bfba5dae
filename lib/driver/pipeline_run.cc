#include "lib/driver/pipeline_run.h"

#include <spdlog/spdlog.h>

#include "lib/ir/verifier.h"
#include "lib/pipeline/pass_manager.h"
#include "lib/util/error.h"

namespace ptq::driver {

PipelineRun runPipeline(ir::Model& model, const pipeline::QuantConfig& config, const calib::CalibrationSet* calibration,
                        int threads, bool verify_each) {
  pipeline::PassManager::checkPipeline(config, calibration != nullptr);
  PipelineRun run;
  run.plan = pipeline::buildPlan(*model.graph, config);
  for (const auto& l : run.plan.layers())
    if (l.skip && l.skip_reason.rfind("non-finite weight", 0) == 0)
      run.report.warnings.push_back(l.label() + " left in float: " + l.skip_reason);
  pipeline::PassManager pm = pipeline::PassManager::fromConfig(config, verify_each);
  pm.on_pass_start = [](const std::string& name, size_t i, size_t n) { spdlog::info("pass {}/{}: {}", i + 1, n, name); };
  pipeline::PassContext ctx{config, run.plan, run.report.warnings, config.seed, threads, calibration};
  pm.run(model, ctx, run.report.passes);
  // The per-layer records come from the plan, read before legalize replaces the weights.
  run.report.layers = pipeline::layerRecords(run.plan);
  for (const auto& l : run.plan.layers()) run.layer_weights.push_back(l.weight);
  return run;
}

legalize::LegalizeResult legalizeRun(ir::Model& model, const legalize::LegalizeOptions& opts, PipelineRun& run, bool verify) {
  legalize::LegalizeResult result = legalize::legalize(model, opts);
  if (verify) ir::verifyOrThrow(*model.graph, "after legalize");
  for (const auto& w : result.weights)
    for (size_t i = 0; i < run.layer_weights.size(); ++i)
      if (run.layer_weights[i] == w.weight && run.report.layers[i].bits) {
        run.report.layers[i].form = w.form;
        run.report.layers[i].bytes_after = w.bytes;
      }
  run.report.warnings.insert(run.report.warnings.end(), result.warnings.begin(), result.warnings.end());
  return result;
}

}  // namespace ptq::driver
