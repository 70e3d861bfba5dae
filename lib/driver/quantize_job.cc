#include "lib/driver/quantize_job.h"

#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "formats/onnx/onnx_io.h"
#include "formats/packed/ptq_file.h"
#include "lib/calib/calibration.h"
#include "lib/driver/html_report.h"
#include "lib/driver/pipeline_run.h"
#include "lib/driver/tensor_files.h"
#include "lib/ir/verifier.h"
#include "lib/pipeline/pass_manager.h"
#include "lib/pipeline/quant_plan.h"
#include "lib/util/atomic_file.h"
#include "lib/util/error.h"
#include "passes/legalize/legalize.h"
#include "passes/registry.h"

namespace ptq::driver {

namespace {

bool isFile(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

int64_t fileSize(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

std::string dirOf(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Fail before any expensive work when the output cannot be written.
void checkWritableTarget(const std::string& path, const std::string& what) {
  const std::string dir = dirOf(path);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throwOutput(path + ": " + what + " folder '" + dir + "' does not exist");
  if (::access(dir.c_str(), W_OK) != 0) throwOutput(path + ": " + what + " folder '" + dir + "' is not writable");
}

// Packed size of a weight's codes, scales and zero points at their true bit width.
int64_t packedBytes(const ir::QuantizedWeight& q) {
  return (q.codes.numel() * q.bits + 7) / 8 + static_cast<int64_t>(q.scales.nbytes()) +
         (q.zero_points.empty() ? 0 : (q.zero_points.numel() * q.bits + 7) / 8);
}

// Folds the command line's --calib arguments and the effective seed (the config's, or --seed) into
// the config's calibration spec.
calib::CalibrationSpec calibrationSpec(const pipeline::QuantConfig& config, const QuantizeOptions& opts) {
  calib::CalibrationSpec spec = config.calibration;
  spec.seed = config.seed;
  if (!opts.calib.empty()) {
    spec.named_files.clear();
    spec.dir.clear();
    spec.tokens.clear();
    spec.synthetic = false;
    for (const auto& arg : opts.calib) {
      const auto eq = arg.find('=');
      struct stat st {};
      if (eq != std::string::npos) spec.named_files.emplace_back(arg.substr(0, eq), arg.substr(eq + 1));
      else if (::stat(arg.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) spec.dir = arg;
      else if (arg.size() > 4 && arg.substr(arg.size() - 4) == ".i64") spec.tokens = arg;
      else throwUsage("--calib " + arg + ": expected NAME=FILE, a folder, or a .i64 token file");
    }
  }
  if (!opts.calib_shape.empty()) spec.tokens_shape = calib::parseShape(opts.calib_shape, "--calib-shape");
  if (opts.calib_samples > 0) spec.samples = opts.calib_samples;
  if (opts.calib_batch > 0) spec.batch_size = opts.calib_batch;
  return spec;
}

void writePackedOutput(const ir::Model& model, const pipeline::QuantConfig& config, const calib::CalibrationSet* calibration,
                       const std::string& unpack_form, const QuantizeOptions& opts, pipeline::Report& report,
                       const std::vector<const ir::Value*>& layer_weights) {
  packed::Provenance prov;
  prov.tool_version = PTQ_VERSION;
  prov.config_json = report.config_json;
  prov.seed = config.seed;
  prov.source = opts.model_path.substr(opts.model_path.find_last_of('/') + 1);
  prov.source_bytes = report.input_bytes;
  if (calibration) prov.calibration_digest = calibration->digest();
  for (size_t i = 0; i < report.layers.size(); ++i)
    if (report.layers[i].bits) {
      report.layers[i].form = "packed";
      report.layers[i].bytes_after = packedBytes(*layer_weights[i]->quant);
    }
  spdlog::info("writing {}", opts.output_path);
  packed::writePacked(model, opts.output_path, prov, unpack_form);
}

legalize::LegalizeOptions onnxLowering(const pipeline::QuantConfig& config, const QuantizeOptions& opts) {
  legalize::LegalizeOptions lower;
  lower.prefer_matmulnbits = config.format == pipeline::OutputFormat::kMatMulNBits;
  lower.matmulnbits_accuracy_level = opts.accuracy_level;
  return lower;
}

// Refuses to overwrite the input, and fails before any work when the output cannot be written.
void checkOutputPath(const std::string& in, const std::string& out) {
  if (out == in || ptq::sameFile(out, in)) throwUsage(out + ": the output path is the input file; refusing to overwrite it");
  checkWritableTarget(out, "output");
}

void saveOnnx(const ir::Model& model, bool external_data, const std::string& out) {
  onnx_io::SaveOptions save;
  if (external_data) save.external_data = onnx_io::SaveOptions::ExternalData::kAlways;
  spdlog::info("writing {}", out);
  onnx_io::saveModel(model, out, save);
}

}  // namespace

void unpackModel(const std::string& in, const std::string& out, std::optional<pipeline::OutputFormat> format,
                 bool external_data) {
  checkOutputPath(in, out);
  packed::PackedModel pm = packed::readPacked(in);
  legalize::LegalizeOptions lower;
  const pipeline::OutputFormat f = format ? *format : pipeline::parseOutputFormat(pm.output_form, in + ": output_form");
  if (f == pipeline::OutputFormat::kPacked) throwUsage("unpack: --format must be qdq or matmulnbits");
  lower.prefer_matmulnbits = f == pipeline::OutputFormat::kMatMulNBits;
  legalize::legalize(pm.model, lower);
  saveOnnx(pm.model, external_data, out);
}

namespace {

std::vector<std::string> presetDirs() { return {std::string(PTQ_SOURCE_DIR) + "/configs", std::string(PTQ_INSTALL_DATADIR) + "/configs"}; }

}  // namespace

std::string presetPath(const std::string& name_arg) {
  if (name_arg.empty() || name_arg.find('/') != std::string::npos) return "";
  const std::string name =
      name_arg.size() > 5 && name_arg.substr(name_arg.size() - 5) == ".json" ? name_arg.substr(0, name_arg.size() - 5) : name_arg;
  for (const std::string& dir : presetDirs()) {
    const std::string p = dir + "/" + name + ".json";
    if (isFile(p)) return p;
  }
  return "";
}

std::string presetNames() {
  std::set<std::string> names;
  for (const std::string& dir : presetDirs()) {
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string f = it->path().filename().string();
      if (f.size() > 5 && f.substr(f.size() - 5) == ".json") names.insert(f.substr(0, f.size() - 5));
    }
  }
  std::string out = "presets:";
  for (const std::string& n : names) out += " " + n;
  return names.empty() ? "no presets installed" : out;
}

std::string resolveConfigPath(const std::string& arg) {
  if (isFile(arg)) return arg;
  const std::string preset = presetPath(arg);
  if (!preset.empty()) return preset;
  throwUsage(arg + ": no such config file or preset (" + presetNames() + ")");
}

std::string listPasses() { return pipeline::describePasses(passes::builtinPasses()); }

void convertModel(const std::string& in, const std::string& out, bool external_data) {
  checkOutputPath(in, out);
  ir::Model model = onnx_io::loadModel(in);
  onnx_io::SaveOptions save;
  if (external_data) save.external_data = onnx_io::SaveOptions::ExternalData::kAlways;
  onnx_io::saveModel(model, out, save);
}

namespace {

// runQuantize without writing the report (the job adds the evaluation to it first).
pipeline::Report quantizeAndWrite(const QuantizeOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opts.output_path.empty()) throwUsage("quantize: an output path is required (-o FILE)");
  checkOutputPath(opts.model_path, opts.output_path);
  if (!opts.report_path.empty()) checkWritableTarget(opts.report_path, "report");

  pipeline::QuantConfig config = pipeline::loadConfig(resolveConfigPath(opts.config_path), passes::builtinPasses());
  // A packed file unpacks to the config's own ONNX form unless that is "packed" too.
  const std::string unpack_form =
      config.format == pipeline::OutputFormat::kMatMulNBits ? "matmulnbits" : "qdq";
  if (opts.format) config.format = *opts.format;
  if (opts.seed) config.seed = *opts.seed;
  if (opts.threads > 0) omp_set_num_threads(opts.threads);
  // The whole pipeline is checked (order, calibration needs) before anything is loaded or run.
  const calib::CalibrationSpec spec = calibrationSpec(config, opts);
  pipeline::PassManager::checkPipeline(config, !spec.empty());

  spdlog::info("loading {}", opts.model_path);
  ir::Model model = onnx_io::loadModel(opts.model_path);

  // Calibration data is loaded (and validated against the model's inputs) before any pass runs.
  std::unique_ptr<calib::CalibrationSet> calibration;
  if (!spec.empty()) {
    calibration = std::make_unique<calib::CalibrationSet>(calib::CalibrationSet::load(spec, *model.graph, readTensorFile));
    spdlog::info("calibration: {}", calibration->describe());
  }
  if (config.format == pipeline::OutputFormat::kPacked) {
    const pipeline::QuantPlan plan = pipeline::buildPlan(*model.graph, config);
    for (const pipeline::LayerPlan& l : plan.layers())
      if (!l.skip && !l.scope.empty())
        throwUsage(opts.output_path + ": the packed format holds main-graph weights only, and " + l.label() +
                   " is inside a subgraph; write qdq or matmulnbits");
  }

  PipelineRun run = runPipeline(model, config, calibration.get(), opts.threads, opts.verify_each);
  pipeline::Report& report = run.report;
  report.tool_version = PTQ_VERSION;
  report.input = opts.model_path;
  report.output = opts.output_path;
  report.format = pipeline::outputFormatName(config.format);
  report.config_json = pipeline::configToJson(config);
  report.seed = config.seed;
  report.threads = opts.threads;
  report.input_bytes = fileSize(opts.model_path);
  if (calibration) report.calibration = calibration->describe() + " (xxh64 " + calibration->digest() + ")";

  // Provenance travels with the model.
  model.metadata_props.emplace_back("ptq_tool.version", PTQ_VERSION);
  model.metadata_props.emplace_back("ptq_tool.config", report.config_json);
  if (calibration && !config.needsCalibration())
    report.warnings.push_back("calibration data was given, but no pass in the pipeline reads it");

  if (config.format == pipeline::OutputFormat::kPacked) {
    writePackedOutput(model, config, calibration.get(), unpack_form, opts, report, run.layer_weights);
  } else {
    legalizeRun(model, onnxLowering(config, opts), run, opts.verify_each);
    saveOnnx(model, opts.external_data, opts.output_path);
  }
  report.output_bytes = fileSize(opts.output_path) + fileSize(opts.output_path + ".data");
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

EvalOptions gateEvalOptions(const QuantizeOptions& o) {
  EvalOptions e;
  e.ref_path = o.model_path;
  e.cand_path = o.output_path;
  e.tokens = o.eval_tokens;
  e.seq = o.eval_seq;
  e.windows = o.eval_windows;
  e.data = o.eval_data;
  e.data_shape = o.eval_data_shape;
  e.samples = o.eval_samples;
  e.labels = o.eval_labels;
  e.batch = o.eval_batch;
  e.threads = o.threads;
  e.attribution = o.eval_attribution;
  return e;
}

// Every flag combination of the gate, before any work.
std::vector<AccuracyGate> checkGateOptions(const QuantizeOptions& o) {
  std::vector<AccuracyGate> gates;
  for (const std::string& e : o.max_drop) gates.push_back(parseAccuracyGate(e, "--max-drop"));
  if (!gates.empty() && !o.evaluates())
    throwUsage("--max-drop " + gates[0].expression + " needs evaluation data: --eval-tokens FILE.i64 or --eval-data NAME=FILE");
  if (!o.eval_tokens.empty() && !o.eval_data.empty()) throwUsage("give --eval-tokens or --eval-data, not both");
  if (!o.eval_tokens.empty() && !o.eval_labels.empty()) throwUsage("--eval-labels goes with --eval-data, not --eval-tokens");
  if (!o.evaluates()) {
    if (!o.eval_labels.empty()) throwUsage("--eval-labels needs --eval-data");
    if (o.eval_attribution) throwUsage("--eval-attribution needs --eval-tokens or --eval-data");
  }
  if (o.eval_seq <= 0) throwUsage("--eval-seq must be positive");
  if (o.eval_batch <= 0) throwUsage("--eval-batch must be positive");
  if (o.eval_windows < 0) throwUsage("--eval-windows must be positive");
  for (const AccuracyGate& g : gates)
    if (gateNeedsTokens(g) && o.eval_tokens.empty())
      throwUsage("--max-drop " + g.expression + ": perplexity needs --eval-tokens (a language model), not --eval-data");
  return gates;
}

}  // namespace

pipeline::Report runQuantize(const QuantizeOptions& opts) { return runQuantizeJob(opts).report; }

QuantizeResult runQuantizeJob(const QuantizeOptions& opts) {
  const std::vector<AccuracyGate> gates = checkGateOptions(opts);
  if (!opts.report_html.empty()) checkWritableTarget(opts.report_html, "HTML report");
  QuantizeResult r;
  r.report = quantizeAndWrite(opts);
  if (opts.evaluates()) {
    spdlog::info("evaluating {} against {}", opts.output_path, opts.model_path);
    r.eval = runEval(gateEvalOptions(opts));
    r.evaluated = true;
    for (const AccuracyGate& g : gates) r.gates.push_back(checkAccuracyGate(g, r.eval));
  }
  if (!opts.report_path.empty()) writeFileAtomically(opts.report_path, r.reportJson() + "\n");
  if (!opts.report_html.empty()) writeFileAtomically(opts.report_html, renderQuantizeHtml(nlohmann::json::parse(r.reportJson())));
  return r;
}

bool QuantizeResult::gatesPassed() const {
  for (const GateVerdict& g : gates)
    if (!g.pass) return false;
  return true;
}

std::string QuantizeResult::reportJson() const {
  nlohmann::json j = nlohmann::json::parse(report.toJson());
  if (evaluated) {
    j["evaluation"] = nlohmann::json::parse(eval.toJson());
    j["gates"] = nlohmann::json::array();
    for (const GateVerdict& g : gates) j["gates"].push_back(g.toJson());
    j["gates_passed"] = gatesPassed();
  }
  return j.dump(2);
}

ir::Model loadRunnableModel(const std::string& path) {
  if (!packed::isPackedFile(path)) return onnx_io::loadModel(path);
  packed::PackedModel pm = packed::readPacked(path);
  legalize::LegalizeOptions lower;
  lower.prefer_matmulnbits = pm.output_form == "matmulnbits";
  legalize::legalize(pm.model, lower);
  return std::move(pm.model);
}

}  // namespace ptq::driver
