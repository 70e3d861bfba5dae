// ptq-tool: the command line. Thin by design: parse flags into option structs and call the library
// (lib/driver). Every failure becomes one message on stderr and a documented exit code (README.md).
#include <csignal>
#include <cstdio>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "lib/driver/batch_job.h"
#include "lib/driver/eval_job.h"
#include "lib/driver/inspect.h"
#include "lib/driver/quantize_job.h"
#include "lib/driver/run_job.h"
#include "lib/util/error.h"

namespace {

void setupLogging(const std::string& level, bool quiet) {
  auto logger = spdlog::stderr_color_mt("ptq-tool");
  logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_default_logger(logger);
  if (quiet) {
    spdlog::set_level(spdlog::level::err);
    return;
  }
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

int main(int argc, char** argv) {
  // A file-size limit (ulimit -f) must fail a write with EFBIG (exit 4 naming the file, temporary
  // removed) instead of killing the process with SIGXFSZ and leaving the temporary behind.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"ptq-tool: post-training quantization for ONNX models"};
  app.set_version_flag("--version", std::string("ptq-tool ") + PTQ_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global flags (-q, --log-level) may follow the subcommand
  std::string log_level = "info";
  bool quiet = false;
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_flag("-q,--quiet", quiet, "Only print errors");

  // quantize
  ptq::driver::QuantizeOptions q;
  std::string format;
  uint64_t seed = 0;
  auto* quantize = app.add_subcommand("quantize", "Quantize a model with a config (file or preset name)");
  quantize->add_option("model", q.model_path, "Input .onnx model")->required();
  quantize->add_option("-c,--config", q.config_path, "Config JSON file or preset name (w8a16, w4a16, ...)")->required();
  quantize->add_option("-o,--output", q.output_path, "Output file")->required();
  auto* format_opt = quantize->add_option("-f,--format", format, "Output form: qdq | matmulnbits | packed (.ptq) (overrides the config)")
                         ->check(CLI::IsMember({"qdq", "matmulnbits", "packed"}));
  quantize->add_option("--report", q.report_path, "Write a JSON report of every layer's decision and error");
  quantize->add_option("--report-html", q.report_html, "Write the report as one self-contained HTML page (per-layer SQNR bars, bits, bytes, metrics, gates)");
  quantize->add_option("-j,--threads", q.threads, "Worker threads (0 = all cores)")->check(CLI::Range(0, 4096));
  auto* seed_opt = quantize->add_option("--seed", seed, "Random seed (overrides the config)");
  quantize->add_flag("--verify-each", q.verify_each, "Check the IR after every pass");
  quantize->add_flag("--external-data", q.external_data, "Write weights to OUTPUT.data beside the model");
  quantize->add_option("--accuracy-level", q.accuracy_level, "MatMulNBits accuracy_level (0 = unset, 4 = int8 compute)")
      ->check(CLI::IsMember({0, 1, 2, 3, 4}));

  quantize->add_option("--calib", q.calib, "Calibration data: NAME=FILE (.npy/.npz/.pb/.bin), a folder of NAME.npy, or tokens.i64 (repeatable)")
      ->allow_extra_args(false);
  quantize->add_option("--calib-shape", q.calib_shape, "Shape of a token file, SAMPLESxSEQ (default Nx128)");
  quantize->add_option("--calib-samples", q.calib_samples, "Use at most this many calibration samples")->check(CLI::NonNegativeNumber);
  quantize->add_option("--calib-batch", q.calib_batch, "Calibration batch size (default 8)")->check(CLI::NonNegativeNumber);
  // Accuracy gate: evaluate the written model against the input model (as `eval` does).
  quantize->add_option("--eval-tokens", q.eval_tokens, "Evaluate after writing: raw int64 tokens for a language model (as eval --tokens)");
  quantize->add_option("--eval-seq", q.eval_seq, "Window length for --eval-tokens (default 128)")->check(CLI::PositiveNumber);
  quantize->add_option("--eval-windows", q.eval_windows, "At most this many windows of --eval-tokens")->check(CLI::PositiveNumber);
  quantize->add_option("--eval-data", q.eval_data, "Evaluate after writing: held-out inputs NAME=FILE or a folder (repeatable, as eval --data)")
      ->allow_extra_args(false);
  quantize->add_option("--eval-data-shape", q.eval_data_shape, "Shape of a raw .bin --eval-data file");
  quantize->add_option("--eval-samples", q.eval_samples, "Use at most this many --eval-data samples")->check(CLI::PositiveNumber);
  quantize->add_option("--eval-labels", q.eval_labels, "int64 labels for --eval-data (accuracy)");
  quantize->add_option("--eval-batch", q.eval_batch, "Evaluation batch size (default 8)")->check(CLI::PositiveNumber);
  quantize->add_flag("--eval-attribution", q.eval_attribution, "Per-layer output error (SQNR) of the written model in that evaluation");
  quantize->add_option("--max-drop", q.max_drop, "Accuracy gate (repeatable): ppl:+2%, ppl:+0.5, top1:-0.5, agree:>=0.995, cos:>=0.999, sqnr:>=20; exit 3 when one fails")
      ->allow_extra_args(false);

  // inspect
  std::string inspect_model;
  bool inspect_json = false;
  auto* inspect = app.add_subcommand("inspect", "Describe a model (ops, parameters, quantizable layers) or a .ptq file");
  inspect->add_option("model", inspect_model, "Input .onnx model")->required();
  inspect->add_flag("--json", inspect_json, "Machine-readable output");

  std::string convert_in, convert_out;
  bool convert_external = false;
  auto* convert = app.add_subcommand("convert", "Re-write a model unchanged (e.g. weights to external data)");
  convert->add_option("model", convert_in, "Input .onnx model")->required();
  convert->add_option("-o,--output", convert_out, "Output file")->required();
  convert->add_flag("--external-data", convert_external, "Write weights to OUTPUT.data beside the model");

  std::string unpack_in, unpack_out, unpack_format;
  bool unpack_external = false;
  auto* unpack = app.add_subcommand("unpack", "Turn a .ptq packed file back into runnable ONNX");
  unpack->add_option("file", unpack_in, "Input .ptq file")->required();
  unpack->add_option("-o,--output", unpack_out, "Output .onnx file")->required();
  auto* unpack_format_opt = unpack->add_option("-f,--format", unpack_format, "qdq | matmulnbits (default: the form recorded in the file)")
                                ->check(CLI::IsMember({"qdq", "matmulnbits"}));
  unpack->add_flag("--external-data", unpack_external, "Write weights to OUTPUT.data beside the model");

  ptq::driver::RunModelOptions run_opts;
  auto* run = app.add_subcommand("run", "Run a model on the built-in CPU executor");
  run->add_option("model", run_opts.model_path, "Input .onnx model")->required();
  run->add_option("-i,--input", run_opts.inputs, "NAME=FILE (.npy/.npz/.pb), or one .npz feeding every input (repeatable)")
      ->allow_extra_args(false);
  run->add_option("--output-name", run_opts.outputs, "Value to return (repeatable; default: the graph outputs)")
      ->allow_extra_args(false);
  run->add_option("-o,--output", run_opts.output_path, "Write outputs: FILE.npz, FILE.npy (one output) or a folder");
  run->add_option("-j,--threads", run_opts.threads, "Worker threads (0 = all cores)")->check(CLI::Range(0, 4096));

  ptq::driver::EvalOptions ev;
  auto* eval = app.add_subcommand("eval", "Compare a candidate model with a reference on held-out data (errors, agreement, accuracy, perplexity)");
  eval->add_option("reference", ev.ref_path, "Reference .onnx model (e.g. fp32)")->required();
  eval->add_option("candidate", ev.cand_path, "Candidate .onnx model (e.g. quantized)")->required();
  eval->add_option("--tokens", ev.tokens, "Language model: raw int64 token file (.i64) for the models' one integer input");
  eval->add_option("--seq", ev.seq, "Window length for --tokens (default 128)")->check(CLI::PositiveNumber);
  eval->add_option("--windows", ev.windows, "Use at most this many windows (default: every whole window)")->check(CLI::PositiveNumber);
  eval->add_option("--data", ev.data, "Held-out inputs: NAME=FILE (.npy/.npz/.pb/raw .bin) or a folder of NAME.npy (repeatable)")
      ->allow_extra_args(false);
  eval->add_option("--data-shape", ev.data_shape, "Shape of a raw .bin data file, e.g. 256x1x20x20");
  eval->add_option("--samples", ev.samples, "Use at most this many samples of --data")->check(CLI::PositiveNumber);
  eval->add_option("--labels", ev.labels, "int64 labels, one per sample (raw .i64/.bin or .npy): accuracy of each classifier");
  eval->add_option("--batch", ev.batch, "Batch size (default 8)")->check(CLI::PositiveNumber);
  eval->add_option("--report", ev.report_path, "Write the figures as JSON");
  eval->add_option("--report-html", ev.report_html, "Write the figures as one self-contained HTML page");
  eval->add_option("--isolate", ev.isolate, "With --attribution: evaluate the K worst layers again, each with only that layer quantized")
      ->check(CLI::PositiveNumber);
  eval->add_flag("--attribution", ev.attribution, "Per-layer error attribution: SQNR of each quantized layer's output against the reference's, worst first");
  eval->add_option("-j,--threads", ev.threads, "Worker threads (0 = all cores)")->check(CLI::Range(0, 4096));

  ptq::driver::BatchOptions bo;
  auto* batch = app.add_subcommand("batch", "Quantize (and evaluate, gate) every model of a manifest, one process per model; or --merge shard summaries");
  batch->add_option("manifest", bo.manifest_path, "Manifest JSON (models, defaults)");
  batch->add_option("--out-dir", bo.out_dir, "Output folder: DIR/NAME/ per model, DIR/summary.json and summary.md");
  batch->add_option("--jobs", bo.jobs, "Models run in parallel (default 1)")->check(CLI::Range(1, 1024));
  batch->add_option("--shard", bo.shard, "Run shard I of N (I/N; default: from SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX)");
  batch->add_option("--shard-count", bo.shard_count, "Shard count N for JOB_COMPLETION_INDEX (Kubernetes Indexed Job)")->check(CLI::PositiveNumber);
  batch->add_flag("--dry-run", bo.dry_run, "Print which models this shard would run or skip; run nothing");
  batch->add_option("--report-html", bo.report_html, "Write the summary as one HTML page (a row per model; each model also gets DIR/NAME/report.html)");
  batch->add_option("--merge", bo.merge_dirs, "Join the shard summaries of these batch folders into one summary (in --out-dir, default the first)");

  auto* passes = app.add_subcommand("passes", "List the passes a config's pipeline can name, with their options");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return static_cast<int>(ptq::ExitCode::kUsage);
  }
  setupLogging(log_level, quiet);

  try {
    if (*quantize) {
      if (*format_opt) q.format = ptq::pipeline::parseOutputFormat(format, "--format");
      if (*seed_opt) q.seed = seed;
      const auto result = ptq::driver::runQuantizeJob(q);
      const auto& report = result.report;
      int64_t quantized = 0, before = 0, after = 0;
      for (const auto& l : report.layers)
        if (l.bits) {
          ++quantized;
          before += l.bytes_before;
          after += l.bytes_after;
        }
      spdlog::info("quantized {} of {} layers: weights {:.2f} MB -> {:.2f} MB; wrote {} ({:.2f} MB) in {:.2f} s", quantized,
                   report.layers.size(), before / 1e6, after / 1e6, q.output_path, report.output_bytes / 1e6, report.seconds);
      for (const auto& w : report.warnings) spdlog::warn("{}", w);
      if (result.evaluated) {
        std::string line;
        std::istringstream table(result.eval.table());
        while (std::getline(table, line))
          if (!line.empty()) spdlog::info("eval: {}", line);
        for (const auto& g : result.gates) {
          if (g.pass) spdlog::info("gate {}", g.detail);
          else spdlog::error("gate {}", g.detail);
        }
        if (!result.gatesPassed()) {
          spdlog::error("accuracy gate failed: {} was written, but does not meet every --max-drop", q.output_path);
          return static_cast<int>(ptq::ExitCode::kAccuracyGate);
        }
      }
    } else if (*inspect) {
      std::cout << ptq::driver::inspectModel(inspect_model, inspect_json) << std::endl;
    } else if (*convert) {
      ptq::driver::convertModel(convert_in, convert_out, convert_external);
    } else if (*unpack) {
      std::optional<ptq::pipeline::OutputFormat> f;
      if (*unpack_format_opt) f = ptq::pipeline::parseOutputFormat(unpack_format, "--format");
      ptq::driver::unpackModel(unpack_in, unpack_out, f, unpack_external);
    } else if (*run) {
      auto r = ptq::driver::runModelCommand(run_opts);
      std::cout << r.summary;
      spdlog::info("ran in {:.3f} s", r.seconds);
    } else if (*eval) {
      auto r = ptq::driver::runEval(ev);
      std::cout << r.table();
    } else if (*batch) {
      return ptq::driver::runBatch(bo);
    } else if (*passes) {
      std::cout << ptq::driver::listPasses();
    }
  } catch (const ptq::Error& e) {
    spdlog::error("{}", e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    spdlog::error("internal error: {}", e.what());
    return static_cast<int>(ptq::ExitCode::kInternal);
  }
  return 0;
}
