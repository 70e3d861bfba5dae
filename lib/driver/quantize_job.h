// `ptq-tool quantize` as a library call: load, run the config's passes, lower, write, report.
// The CLI only fills QuantizeOptions; tests call runQuantize directly.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/driver/accuracy_gate.h"
#include "lib/driver/eval_job.h"
#include "lib/ir/graph.h"
#include "lib/pipeline/config.h"
#include "lib/pipeline/report.h"

namespace ptq::driver {

struct QuantizeOptions {
  std::string model_path;
  std::string config_path;            // a file, or a preset name from configs/ ("w4a16")
  std::string output_path;
  std::optional<pipeline::OutputFormat> format;  // overrides the config's "format"
  std::string report_path;            // empty = no report file
  int threads = 0;                    // 0 = OpenMP default
  std::optional<uint64_t> seed;       // overrides the config's "seed"
  bool verify_each = false;
  bool external_data = false;         // force model.onnx + model.onnx.data
  int64_t accuracy_level = 0;         // MatMulNBits accuracy_level
  // --calib arguments: NAME=FILE, a folder, or a raw .i64 token file; they replace the config's
  // calibration sources. --calib-shape / --calib-samples / --calib-batch refine them.
  std::vector<std::string> calib;
  std::string calib_shape;            // "64x128" for token files
  int64_t calib_samples = 0;
  int64_t calib_batch = 0;
  // Accuracy gate: after the output is written, the input model and the written one are compared by
  // `eval` on these held-out inputs (as eval's --tokens/--seq/--windows or --data/--data-shape/
  // --samples/--labels/--batch), and every --max-drop expression (accuracy_gate.h) is checked.
  std::string eval_tokens;
  int64_t eval_seq = 128;
  int64_t eval_windows = 0;
  std::vector<std::string> eval_data;
  std::string eval_data_shape;
  int64_t eval_samples = 0;
  std::string eval_labels;
  int64_t eval_batch = 8;
  std::vector<std::string> max_drop;
  bool eval_attribution = false;  // per-layer output error in that evaluation (eval --attribution)
  std::string report_html;        // --report-html: the report as one self-contained HTML page

  bool evaluates() const { return !eval_tokens.empty() || !eval_data.empty(); }
};

struct QuantizeResult {
  pipeline::Report report;
  bool evaluated = false;
  EvalResult eval;                  // input model vs written model, when evaluated
  std::vector<GateVerdict> gates;   // one per --max-drop, in order
  bool gatesPassed() const;
  std::string reportJson() const;   // the --report document: the quantize report + "evaluation" + "gates"
};

// Throws ptq::Error with the exit code the CLI returns. Writes nothing unless it succeeds.
pipeline::Report runQuantize(const QuantizeOptions& opts);
// runQuantize, then (with eval data) the evaluation and the gates. A failed gate does not throw: the
// output and the report are written and the verdicts returned (the CLI exits 3). Gate expressions,
// and gates without eval data, are checked before anything is loaded (kUsage naming the flag).
QuantizeResult runQuantizeJob(const QuantizeOptions& opts);

// A model ready for the executor: ONNX as read, or a .ptq file unpacked in memory to its recorded form.
ir::Model loadRunnableModel(const std::string& path);

// `ptq-tool convert`: load and write a model unchanged (e.g. to move weights into external data).
void convertModel(const std::string& in, const std::string& out, bool external_data);

// `ptq-tool unpack`: a .ptq file back to runnable ONNX (the form recorded in it, or `format`).
void unpackModel(const std::string& in, const std::string& out, std::optional<pipeline::OutputFormat> format,
                 bool external_data);

// `ptq-tool passes`: the pass table as text (summary, traits, typed options with ranges and defaults).
std::string listPasses();

// Resolves a --config argument: an existing file, else configs/<name>.json beside the executable's
// source tree or install prefix. Throws kUsage listing the presets when neither exists.
std::string resolveConfigPath(const std::string& arg);

// The file of preset NAME (or NAME.json) in configs/, or "" when there is none. Never the current
// directory: a batch manifest's config names are presets unless a file beside the manifest has the name.
std::string presetPath(const std::string& name);

// "presets: mixed-3bit w3a16-gptq ..." (every configs/*.json), for error messages.
std::string presetNames();

}  // namespace ptq::driver
