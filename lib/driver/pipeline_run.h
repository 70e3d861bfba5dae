// The in-memory core of `quantize`: build the plan from the config and the graph, check and run the
// pipeline, take the per-layer records from the plan, and legalize. No files are read or written,
// so tests drive exactly what the CLI does on models they build.
#pragma once
#include <vector>

#include "lib/calib/calibration.h"
#include "lib/pipeline/config.h"
#include "lib/pipeline/quant_plan.h"
#include "lib/pipeline/report.h"
#include "passes/legalize/legalize.h"

namespace ptq::driver {

struct PipelineRun {
  pipeline::QuantPlan plan;
  pipeline::Report report;                     // layers (one per plan layer), passes, warnings
  std::vector<const ir::Value*> layer_weights;  // report.layers[i]'s weight (identity only after legalize)
};

// Checks the pipeline (throws kUsage before any pass runs), builds the plan, runs the passes and
// fills report.layers from the plan. `calibration` may be null when no pass needs it.
PipelineRun runPipeline(ir::Model& model, const pipeline::QuantConfig& config, const calib::CalibrationSet* calibration,
                        int threads = 0, bool verify_each = false);

// Legalizes the model and puts what was written per weight (form, bytes) and legalize's warnings
// into run.report. With verify, checks the IR afterwards.
legalize::LegalizeResult legalizeRun(ir::Model& model, const legalize::LegalizeOptions& opts, PipelineRun& run,
                                     bool verify = false);

}  // namespace ptq::driver
