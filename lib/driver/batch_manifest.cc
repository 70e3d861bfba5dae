#include "lib/driver/batch_manifest.h"

#include <sys/stat.h>
#include <xxhash.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>

#include "formats/onnx/onnx_io.h"
#include "lib/driver/accuracy_gate.h"
#include "lib/driver/quantize_job.h"
#include "lib/util/error.h"

namespace ptq::driver {

namespace {

using nlohmann::json;

enum class Kind { kString, kStrings, kInt, kPositiveInt, kBool };

struct KeySpec {
  const char* key;
  Kind kind;
  bool path;  // resolved relative to the manifest (for kStrings, each item; NAME=FILE: the FILE part)
};

// Every key an entry (or "defaults") may hold. README.md "Batch manifest" lists the same.
constexpr KeySpec kKeys[] = {
    {"name", Kind::kString, false},          {"model", Kind::kString, true},
    {"config", Kind::kString, false},        {"calib", Kind::kStrings, true},
    {"calib_shape", Kind::kString, false},   {"calib_samples", Kind::kPositiveInt, false},
    {"calib_batch", Kind::kPositiveInt, false}, {"format", Kind::kString, false},
    {"eval_tokens", Kind::kString, true},    {"eval_seq", Kind::kPositiveInt, false},
    {"eval_windows", Kind::kPositiveInt, false}, {"eval_data", Kind::kStrings, true},
    {"eval_data_shape", Kind::kString, false}, {"eval_samples", Kind::kPositiveInt, false},
    {"eval_labels", Kind::kString, true},    {"eval_batch", Kind::kPositiveInt, false},
    {"max_drop", Kind::kStrings, false},     {"eval_attribution", Kind::kBool, false},
    {"threads", Kind::kPositiveInt, false},  // 0 ("all cores") would oversubscribe --jobs N
    {"seed", Kind::kInt, false},
};

const KeySpec* findKey(const std::string& k) {
  for (const KeySpec& s : kKeys)
    if (k == s.key) return &s;
  return nullptr;
}

std::string dirOf(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string baseName(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string stem(const std::string& path) {
  std::string b = baseName(path);
  const auto dot = b.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? b : b.substr(0, dot);
}

bool isFile(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Lexically normal ("a/./b/../c" is "a/c"), so one file has one spelling in the digest and the logs.
std::string resolvePath(const std::string& base, const std::string& p) {
  if (p.empty()) return p;
  const std::filesystem::path joined = p[0] == '/' || base == "." ? std::filesystem::path(p) : std::filesystem::path(base) / p;
  return joined.lexically_normal().string();
}

// The FILE of a calib / eval_data item (NAME=FILE or FILE).
std::string itemFile(const std::string& item) {
  const auto eq = item.find('=');
  return eq != std::string::npos && eq > 0 ? item.substr(eq + 1) : item;
}

// A calib / eval_data item: NAME=FILE resolves FILE; anything else resolves the whole.
std::string resolveItem(const std::string& base, const std::string& item) {
  const std::string file = itemFile(item);
  return item.substr(0, item.size() - file.size()) + resolvePath(base, file);
}

// Checks one entry (or "defaults") object: known keys, types. Returns it with list keys as lists.
json checkObject(const json& o, const std::string& where) {
  if (!o.is_object()) throwUsage(where + ": must be an object");
  json out = json::object();
  for (auto it = o.begin(); it != o.end(); ++it) {
    const std::string at = where + "." + it.key();
    const KeySpec* k = findKey(it.key());
    if (!k) throwUsage(at + ": unknown key (keys: name, model, config, calib, calib_shape, calib_samples, calib_batch, format, "
                       "eval_tokens, eval_seq, eval_windows, eval_data, eval_data_shape, eval_samples, eval_labels, eval_batch, "
                       "eval_attribution, max_drop, threads, seed)");
    const json& v = it.value();
    switch (k->kind) {
      case Kind::kString:
        if (!v.is_string() || v.get<std::string>().empty()) throwUsage(at + ": must be a non-empty string");
        out[it.key()] = v;
        break;
      case Kind::kStrings:
        if (v.is_string()) {
          out[it.key()] = json::array({v});
        } else if (v.is_array()) {
          for (size_t i = 0; i < v.size(); ++i)
            if (!v[i].is_string() || v[i].get<std::string>().empty())
              throwUsage(at + "[" + std::to_string(i) + "]: must be a non-empty string");
          out[it.key()] = v;
        } else {
          throwUsage(at + ": must be a string or a list of strings");
        }
        break;
      case Kind::kBool:
        if (!v.is_boolean()) throwUsage(at + ": must be true or false");
        out[it.key()] = v;
        break;
      case Kind::kInt:
      case Kind::kPositiveInt:
        if (!v.is_number_integer() || v.get<int64_t>() < (k->kind == Kind::kPositiveInt ? 1 : 0))
          throwUsage(at + ": must be an integer " + (k->kind == Kind::kPositiveInt ? ">= 1" : ">= 0"));
        out[it.key()] = v;
        break;
    }
  }
  return out;
}

bool safeName(const std::string& n) {
  if (n.empty() || n == "." || n == ".." || n == "shards" || n.size() > 200) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

std::string readText(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throwInput(path + ": cannot open " + what);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void addArgs(std::vector<std::string>& args, const json& e) {
  auto str = [&](const char* key, const char* flag) {
    if (e.contains(key)) {
      args.push_back(flag);
      args.push_back(e[key].is_string() ? e[key].get<std::string>() : std::to_string(e[key].get<int64_t>()));
    }
  };
  auto list = [&](const char* key, const char* flag) {
    if (!e.contains(key)) return;
    for (const auto& v : e[key]) {
      args.push_back(flag);
      args.push_back(v.get<std::string>());
    }
  };
  str("format", "--format");
  list("calib", "--calib");
  str("calib_shape", "--calib-shape");
  str("calib_samples", "--calib-samples");
  str("calib_batch", "--calib-batch");
  str("eval_tokens", "--eval-tokens");
  str("eval_seq", "--eval-seq");
  str("eval_windows", "--eval-windows");
  list("eval_data", "--eval-data");
  str("eval_data_shape", "--eval-data-shape");
  str("eval_samples", "--eval-samples");
  str("eval_labels", "--eval-labels");
  str("eval_batch", "--eval-batch");
  list("max_drop", "--max-drop");
  if (e.contains("eval_attribution") && e["eval_attribution"].get<bool>()) args.push_back("--eval-attribution");
  str("threads", "--threads");
  str("seed", "--seed");
}

class Hasher {
 public:
  Hasher() : s_(XXH64_createState(), &XXH64_freeState) { XXH64_reset(s_.get(), 0); }
  void add(const void* p, size_t n) { XXH64_update(s_.get(), p, n); }
  // A length-prefixed string, so concatenations cannot collide.
  void addString(const std::string& s) {
    const uint64_t n = s.size();
    add(&n, sizeof n);
    add(s.data(), s.size());
  }
  // Only regular files: a manifest naming /dev/zero or a FIFO must not hang the digest (its run
  // then fails on the path).
  bool addFile(const std::string& path) {
    if (!isFile(path)) return false;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    std::vector<char> buf(1 << 20);
    size_t n;
    uint64_t total = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) {
      add(buf.data(), n);
      total += n;
    }
    std::fclose(f);
    add(&total, sizeof total);
    return true;
  }
  std::string hex() const {
    char b[17];
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(XXH64_digest(s_.get())));
    return b;
  }

 private:
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> s_;
};

}  // namespace

BatchManifest loadBatchManifest(const std::string& path) {
  BatchManifest m;
  m.path = path;
  const std::string text = readText(path, "batch manifest");
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    throwUsage(path + ": not valid JSON: " + e.what());
  }
  if (!doc.is_object()) throwUsage(path + ": a manifest is a JSON object with a \"models\" list");
  for (auto it = doc.begin(); it != doc.end(); ++it)
    if (it.key() != "models" && it.key() != "defaults")
      throwUsage(path + ": " + it.key() + ": unknown key (a manifest holds \"models\" and optionally \"defaults\")");
  if (!doc.contains("models") || !doc["models"].is_array()) throwUsage(path + ": models: a list of model entries is required");
  const json defaults = doc.contains("defaults") ? checkObject(doc["defaults"], path + ": defaults") : json::object();
  if (defaults.contains("name") || defaults.contains("model")) throwUsage(path + ": defaults: name and model belong to each entry");
  const std::string base = dirOf(path);
  std::set<std::string> names;
  for (size_t i = 0; i < doc["models"].size(); ++i) {
    const std::string where = path + ": models[" + std::to_string(i) + "]";
    json e = defaults;
    const json own = checkObject(doc["models"][i], where);
    for (auto it = own.begin(); it != own.end(); ++it) e[it.key()] = it.value();
    if (!e.contains("model")) throwUsage(where + ".model: required");
    if (!e.contains("config")) throwUsage(where + ".config: required (a preset name or a config file), here or in defaults");
    if (e.contains("format")) {
      const std::string f = e["format"];
      if (f != "qdq" && f != "matmulnbits" && f != "packed") throwUsage(where + ".format: '" + f + "': must be qdq, matmulnbits or packed");
    }
    if (e.contains("max_drop"))
      for (size_t k = 0; k < e["max_drop"].size(); ++k)
        parseAccuracyGate(e["max_drop"][k].get<std::string>(), where + ".max_drop[" + std::to_string(k) + "]");
    if (e.contains("max_drop") && !e.contains("eval_tokens") && !e.contains("eval_data"))
      throwUsage(where + ".max_drop: needs eval_tokens or eval_data");
    if (e.value("eval_attribution", false) && !e.contains("eval_tokens") && !e.contains("eval_data"))
      throwUsage(where + ".eval_attribution: needs eval_tokens or eval_data");
    // Paths relative to the manifest.
    for (auto it = e.begin(); it != e.end(); ++it) {
      json& v = it.value();
      const KeySpec* spec = findKey(it.key());
      if (!spec->path) continue;
      if (v.is_string()) v = resolvePath(base, v.get<std::string>());
      else
        for (auto& item : v) item = resolveItem(base, item.get<std::string>());
    }
    // A config names a file beside the manifest when there is one, else a preset.
    // A name is never looked up in the current directory (the batch's, which is not the manifest's):
    // it resolves to the preset's file here, so the digest and the quantize run read the same file.
    const std::string cfg = e["config"];
    if (isFile(resolvePath(base, cfg))) {
      e["config"] = resolvePath(base, cfg);
    } else if (cfg.find('/') != std::string::npos) {
      throwUsage(where + ".config: no such file: " + resolvePath(base, cfg));
    } else {
      const std::string preset = presetPath(cfg);
      if (preset.empty()) throwUsage(where + ".config: '" + cfg + "' is neither a file beside the manifest nor a preset (" + presetNames() + ")");
      e["config"] = preset;
    }
    BatchEntry be;
    be.index = i;
    be.model = e["model"];
    be.name = e.contains("name") ? e["name"].get<std::string>() : stem(be.model);
    if (!safeName(be.name))
      throwUsage(where + ".name: '" + be.name + "' must be a folder name of letters, digits, '.', '_', '-' (not 'shards')");
    if (!names.insert(be.name).second) throwUsage(where + ".name: '" + be.name + "' is used by an earlier entry");
    e["name"] = be.name;
    be.config = e["config"];
    be.config_label = cfg;
    const bool packed = e.contains("format") && e["format"] == "packed";
    be.output_name = stem(be.model) + (packed ? ".ptq" : ".onnx");
    be.quantize_args = {be.model, "--config", be.config};
    addArgs(be.quantize_args, e);
    be.resolved = e;
    m.entries.push_back(std::move(be));
  }
  return m;
}

std::string entryDigest(const BatchEntry& e) {
  Hasher h;
  h.addString(PTQ_VERSION);
  h.addString(e.resolved.dump());
  std::string config_file;
  try {
    config_file = resolveConfigPath(e.config);
  } catch (const Error&) {
    config_file.clear();
  }
  h.addString(config_file.empty() ? "unknown config " + e.config : readText(config_file, "config"));
  if (!h.addFile(e.model)) {
    h.addString("unreadable model " + e.model);
    return h.hex();
  }
  // Calibration and evaluation files by content, in the entry's key order (a file rewritten in place
  // redoes the model; its path alone is already in the resolved entry).
  for (auto it = e.resolved.begin(); it != e.resolved.end(); ++it) {
    const KeySpec* spec = findKey(it.key());
    if (!spec || !spec->path || it.key() == "model") continue;
    const json items = it.value().is_array() ? it.value() : json::array({it.value()});
    for (const json& item : items) {
      const std::string file = itemFile(item.get<std::string>());
      h.addString(file);
      if (!h.addFile(file)) h.addString("missing");
    }
  }
  try {
    const std::string dir = dirOf(e.model);
    for (const std::string& loc : onnx_io::externalDataFiles(e.model)) {
      h.addString(loc);
      if (!h.addFile(dir + "/" + loc)) h.addString("missing");
    }
  } catch (const Error&) {
    h.addString("not ONNX");  // a damaged model: its run fails
  }
  return h.hex();
}

int64_t shardOf(const std::string& name, int64_t count) {
  return count <= 1 ? 0 : static_cast<int64_t>(XXH64(name.data(), name.size(), 0) % static_cast<uint64_t>(count));
}

namespace {

bool parseIndex(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 12) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  *out = std::stoll(s);
  return true;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

ShardSpec resolveShard(const std::string& flag, int64_t shard_count) {
  ShardSpec s;
  if (!flag.empty()) {
    const auto slash = flag.find('/');
    if (slash == std::string::npos || !parseIndex(flag.substr(0, slash), &s.index) || !parseIndex(flag.substr(slash + 1), &s.count) ||
        s.count < 1 || s.index >= s.count)
      throwUsage("--shard " + flag + ": expected I/N with 0 <= I < N");
    if (shard_count > 0 && shard_count != s.count) throwUsage("--shard " + flag + " contradicts --shard-count " + std::to_string(shard_count));
    s.source = "--shard";
    return s;
  }
  const std::string slurm_id = env("SLURM_ARRAY_TASK_ID");
  if (!slurm_id.empty() && shard_count == 0) {
    int64_t id = 0, count = 0, min = 0;
    if (!parseIndex(slurm_id, &id)) throwUsage("SLURM_ARRAY_TASK_ID=" + slurm_id + ": not a task index");
    const std::string c = env("SLURM_ARRAY_TASK_COUNT"), mn = env("SLURM_ARRAY_TASK_MIN");
    if (!parseIndex(c, &count) || count < 1)
      throwUsage("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT='" + c + "' is not a count (Slurm >= 20.11 sets it)");
    if (!mn.empty() && !parseIndex(mn, &min)) throwUsage("SLURM_ARRAY_TASK_MIN=" + mn + ": not a task index");
    if (id < min || id - min >= count)
      throwUsage("SLURM_ARRAY_TASK_ID=" + slurm_id + " is outside SLURM_ARRAY_TASK_MIN=" + std::to_string(min) +
                 " + SLURM_ARRAY_TASK_COUNT=" + c + " (use a contiguous --array=0-" + std::to_string(count - 1) + ", or --shard I/N)");
    s.index = id - min;
    s.count = count;
    s.source = "SLURM_ARRAY_TASK_ID";
    return s;
  }
  if (shard_count > 0) {
    const std::string idx = env("JOB_COMPLETION_INDEX");
    if (idx.empty()) throwUsage("--shard-count " + std::to_string(shard_count) + " needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) or --shard I/N");
    if (!parseIndex(idx, &s.index) || s.index >= shard_count)
      throwUsage("JOB_COMPLETION_INDEX=" + idx + ": not an index below --shard-count " + std::to_string(shard_count));
    s.count = shard_count;
    s.source = "JOB_COMPLETION_INDEX";
    return s;
  }
  return s;
}

}  // namespace ptq::driver
