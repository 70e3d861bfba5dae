// `ptq-tool batch MANIFEST.json --out-dir DIR [--jobs N] [--shard I/N]` and `ptq-tool batch --merge DIR...`.
//
// One child process per model (fork + exec of the ptq-tool binary: `quantize ... -o DIR/NAME/<model>
// --report DIR/NAME/report.json`, stdout and stderr to DIR/NAME/log.txt), at most N at a time, so a
// crash takes down only its model. Each finished model (exit 0 or 3) gets DIR/NAME/done.json with its
// digest (batch_manifest.h); a later run skips a model whose done.json digest matches and whose output
// exists. DIR/summary.json and DIR/summary.md (or, for a shard, DIR/shards/summary-I-of-N.json/.md)
// are written atomically. SIGINT/SIGTERM are forwarded to the running children, which are waited for.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ptq::driver {

struct BatchOptions {
  std::string manifest_path;
  std::string out_dir;
  int jobs = 1;
  std::string shard;            // "I/N"; empty: from the environment (SLURM_ARRAY_*, JOB_COMPLETION_INDEX)
  int64_t shard_count = 0;      // with JOB_COMPLETION_INDEX
  bool dry_run = false;         // print what this shard would run or skip, run nothing
  std::vector<std::string> merge_dirs;  // --merge: join the shard summaries of these folders
  std::string tool_path = "/proc/self/exe";  // the ptq-tool binary the children run
  std::string report_html;      // --report-html: one HTML page, one row per model
};

// Runs the batch (or the merge) and returns the exit code: 0 every model ok or skipped, 3 a gate failed
// and nothing failed, 6 (ExitCode::kBatchFailed) a model failed, 128+signal when interrupted.
// Throws ptq::Error for a bad manifest (kUsage naming models[i].key) or an unwritable DIR (kOutput).
int runBatch(const BatchOptions& options);

// The Markdown table of a summary document (summary.md).
std::string batchSummaryMarkdown(const nlohmann::json& summary);

}  // namespace ptq::driver
