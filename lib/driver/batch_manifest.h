// The manifest of `ptq-tool batch MANIFEST.json`: a list of models to quantize (and evaluate), each
// turned into one `ptq-tool quantize` command line; the digest that decides whether a finished
// model is redone; and the shard a model belongs to when a Slurm array or a Kubernetes Indexed Job
// splits the manifest.
//
//   {"defaults": {"config": "w8a16", "threads": 1},
//    "models": [{"name": "gpt", "model": "gpt.onnx", "config": "w4a16", "calib": ["tokens.i64"],
//                "calib_shape": "64x128", "eval_tokens": "val.i64", "eval_seq": 128, "max_drop": ["ppl:+2%"]}]}
//
// Paths are relative to the manifest's folder. `defaults` is merged into every entry (the entry's
// own keys win). Unknown keys and wrong types are Error(kUsage) naming `models[i].key`.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ptq::driver {

struct BatchEntry {
  size_t index = 0;          // position in the manifest's "models"
  std::string name;          // folder under --out-dir; unique; [A-Za-z0-9._-], default: the model's file stem
  std::string model;         // resolved path
  std::string config;        // the config file: beside the manifest, or the preset's file in configs/
  std::string config_label;  // as the manifest spells it (a preset's name), for summaries
  std::string output_name;   // file name of the quantized model: <model stem>.onnx, or .ptq for packed
  nlohmann::json resolved;   // the merged entry with resolved paths (what the digest covers)
  std::vector<std::string> quantize_args;  // everything after `ptq-tool quantize` except -o/--report
};

struct BatchManifest {
  std::string path;
  std::vector<BatchEntry> entries;
};

// Reads and checks the manifest: keys, types, paths, --max-drop expressions, unique names.
// Missing model files are not an error here (that model fails in its own run, the others go on).
BatchManifest loadBatchManifest(const std::string& path);

// xxHash64 (hex) of the model file's bytes, its external-data files, the config text (a preset
// resolved to its file), the resolved entry JSON and the tool version. A model file that cannot be
// read hashes as its path (the run fails and is never skipped).
std::string entryDigest(const BatchEntry& e);

// Which part of a manifest this process runs.
struct ShardSpec {
  int64_t index = 0;
  int64_t count = 1;
  std::string source;  // "--shard", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", or "" (no sharding)
};

// From --shard I/N, else SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT, else
// JOB_COMPLETION_INDEX of --shard-count N (shard_count > 0). Throws kUsage on malformed values.
ShardSpec resolveShard(const std::string& shard_flag, int64_t shard_count);

// The shard of a model: xxHash64 (seed 0) of its name, modulo the shard count. Stable whatever the
// manifest's order or length, so a model stays on its shard when entries are added.
int64_t shardOf(const std::string& name, int64_t count);

}  // namespace ptq::driver
