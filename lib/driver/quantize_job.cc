#include "lib/driver/quantize_job.h"

#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

#include "formats/onnx/lower_weights.h"
#include "formats/onnx/onnx_io.h"
#include "lib/pipeline/pass_manager.h"
#include "lib/util/atomic_file.h"
#include "lib/util/error.h"

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

}  // namespace

std::string resolveConfigPath(const std::string& arg) {
  if (isFile(arg)) return arg;
  const bool looks_like_name = arg.find('/') == std::string::npos;
  const std::string name = arg.size() > 5 && arg.substr(arg.size() - 5) == ".json" ? arg.substr(0, arg.size() - 5) : arg;
  if (looks_like_name) {
    for (const std::string dir : {std::string(PTQ_SOURCE_DIR) + "/configs", std::string(PTQ_INSTALL_DATADIR) + "/configs"}) {
      const std::string p = dir + "/" + name + ".json";
      if (isFile(p)) return p;
    }
  }
  throwUsage(arg + ": no such config file or preset (presets: w8a16, w4a16, ... in configs/)");
}

void convertModel(const std::string& in, const std::string& out, bool external_data) {
  if (out == in || ptq::sameFile(out, in)) throwUsage(out + ": the output path is the input model; refusing to overwrite it");
  checkWritableTarget(out, "output");
  ir::Model model = onnx_io::loadModel(in);
  onnx_io::SaveOptions save;
  if (external_data) save.external_data = onnx_io::SaveOptions::ExternalData::kAlways;
  onnx_io::saveModel(model, out, save);
}

pipeline::Report runQuantize(const QuantizeOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opts.output_path.empty()) throwUsage("quantize: an output path is required (-o FILE)");
  if (opts.output_path == opts.model_path || ptq::sameFile(opts.output_path, opts.model_path))
    throwUsage(opts.output_path + ": the output path is the input model; refusing to overwrite it");
  checkWritableTarget(opts.output_path, "output");
  if (!opts.report_path.empty()) checkWritableTarget(opts.report_path, "report");

  pipeline::QuantConfig config = pipeline::loadConfig(resolveConfigPath(opts.config_path));
  if (opts.format) config.format = *opts.format;
  if (opts.seed) config.seed = *opts.seed;
  if (config.format == pipeline::OutputFormat::kPacked)
    throwUsage("format 'packed' (.ptq) is not available in this version yet; use qdq or matmulnbits");
  if (opts.threads > 0) omp_set_num_threads(opts.threads);

  spdlog::info("loading {}", opts.model_path);
  ir::Model model = onnx_io::loadModel(opts.model_path);

  pipeline::Report report;
  report.tool_version = PTQ_VERSION;
  report.input = opts.model_path;
  report.output = opts.output_path;
  report.format = pipeline::outputFormatName(config.format);
  report.config_json = pipeline::configToJson(config);
  report.seed = config.seed;
  report.threads = opts.threads;
  report.input_bytes = fileSize(opts.model_path);

  pipeline::PassManager pm = pipeline::PassManager::fromConfig(config, opts.verify_each);
  pm.on_pass_start = [](const std::string& name, size_t i, size_t n) { spdlog::info("pass {}/{}: {}", i + 1, n, name); };
  pipeline::PassContext ctx{config, report, config.seed, opts.threads};
  pm.run(model, ctx);

  onnx_io::LoweringOptions lower;
  lower.prefer_matmulnbits = config.format == pipeline::OutputFormat::kMatMulNBits;
  lower.matmulnbits_accuracy_level = opts.accuracy_level;
  onnx_io::lowerQuantizedWeights(model, lower, report);

  // Provenance travels with the model.
  model.metadata_props.emplace_back("ptq_tool.version", PTQ_VERSION);
  model.metadata_props.emplace_back("ptq_tool.config", report.config_json);

  onnx_io::SaveOptions save;
  if (opts.external_data) save.external_data = onnx_io::SaveOptions::ExternalData::kAlways;
  spdlog::info("writing {}", opts.output_path);
  onnx_io::saveModel(model, opts.output_path, save);
  report.output_bytes = fileSize(opts.output_path) + fileSize(opts.output_path + ".data");
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!opts.report_path.empty()) writeFileAtomically(opts.report_path, report.toJson() + "\n");
  return report;
}

}  // namespace ptq::driver
