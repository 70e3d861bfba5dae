#include "lib/pipeline/config.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "lib/util/error.h"

namespace ptq::pipeline {

using nlohmann::json;

std::string outputFormatName(OutputFormat f) {
  switch (f) {
    case OutputFormat::kQdq: return "qdq";
    case OutputFormat::kMatMulNBits: return "matmulnbits";
    case OutputFormat::kPacked: return "packed";
  }
  return "?";
}

OutputFormat parseOutputFormat(const std::string& s, const std::string& what) {
  if (s == "qdq") return OutputFormat::kQdq;
  if (s == "matmulnbits") return OutputFormat::kMatMulNBits;
  if (s == "packed") return OutputFormat::kPacked;
  throwUsage(what + ": '" + s + "' is not an output format (qdq, matmulnbits, packed)");
}

std::string activationGranularityName(ActivationGranularity g) {
  return g == ActivationGranularity::kToken ? "token" : "tensor";
}

const std::vector<std::string>& activationOpTypes() {
  static const std::vector<std::string> ops = {"MatMul", "Gemm", "Conv", "Add", "Mul", "Concat", "MaxPool",
                                               "AveragePool", "GlobalAveragePool", "Relu", "Sigmoid", "Resize"};
  return ops;
}

bool globMatch(const std::string& p, const std::string& t) {
  // Iterative matcher with backtracking on the last '*'.
  size_t pi = 0, ti = 0, star = std::string::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

namespace {

// Walks a JSON object, handing out typed fields and remembering which keys were read, so that
// any key left over is reported as unknown.
class ObjectReader {
 public:
  ObjectReader(const json& j, std::string source, std::string path) : j_(j), source_(std::move(source)), path_(std::move(path)) {
    if (!j_.is_object()) fail("", "must be an object");
  }
  ~ObjectReader() noexcept(false) {
    if (std::uncaught_exceptions()) return;
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!read_.count(it.key())) fail(it.key(), "unknown key" + hint());
  }
  bool has(const std::string& k) { read_.insert(k); return j_.contains(k) && !j_.at(k).is_null(); }
  const json& raw(const std::string& k) { read_.insert(k); return j_.at(k); }

  int64_t integer(const std::string& k, int64_t lo, int64_t hi) {
    const json& v = raw(k);
    if (!v.is_number_integer()) fail(k, "must be an integer, got " + v.dump());
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) fail(k, std::to_string(x) + " is out of range " + std::to_string(lo) + ".." + std::to_string(hi));
    return x;
  }
  bool boolean(const std::string& k) {
    const json& v = raw(k);
    if (!v.is_boolean()) fail(k, "must be true or false, got " + v.dump());
    return v.get<bool>();
  }
  std::string string(const std::string& k) {
    const json& v = raw(k);
    if (!v.is_string()) fail(k, "must be a string, got " + v.dump());
    return v.get<std::string>();
  }
  std::string choice(const std::string& k, const std::vector<std::string>& allowed) {
    std::string s = string(k);
    for (const auto& a : allowed)
      if (a == s) return s;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    fail(k, "'" + s + "' is not one of: " + list);
  }
  std::vector<std::string> strings(const std::string& k) {
    const json& v = raw(k);
    if (!v.is_array()) fail(k, "must be an array of strings");
    std::vector<std::string> out;
    for (const auto& e : v) {
      if (!e.is_string()) fail(k, "must be an array of strings, has " + e.dump());
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  std::string key(const std::string& k) const { return path_.empty() ? k : path_ + "." + k; }
  [[noreturn]] void fail(const std::string& k, const std::string& msg) const {
    throwUsage(source_ + ": " + (k.empty() ? (path_.empty() ? "config" : path_) : key(k)) + ": " + msg);
  }
  void setHint(std::string h) { hint_ = std::move(h); }

 private:
  std::string hint() const { return hint_.empty() ? "" : " (known keys: " + hint_ + ")"; }
  const json& j_;
  std::string source_;
  std::string path_;
  std::set<std::string> read_;
  std::string hint_;
};

Granularity parseGranularity(ObjectReader& r, const std::string& k) {
  const std::string g = r.choice(k, {"tensor", "channel", "group"});
  return g == "tensor" ? Granularity::kTensor : g == "channel" ? Granularity::kChannel : Granularity::kGroup;
}

ClipSearch parseClip(ObjectReader& r, const std::string& k) {
  return r.choice(k, {"none", "mse"}) == "mse" ? ClipSearch::kMse : ClipSearch::kNone;
}

void readWeights(const json& j, const std::string& source, const std::string& path, WeightSettings& w) {
  ObjectReader r(j, source, path);
  r.setHint("bits, symmetric, granularity, group_size, clip_search");
  if (r.has("bits")) w.bits = static_cast<int>(r.integer("bits", 2, 8));
  if (r.has("symmetric")) w.symmetric = r.boolean("symmetric");
  if (r.has("granularity")) w.granularity = parseGranularity(r, "granularity");
  if (r.has("group_size")) w.group_size = r.integer("group_size", 16, 256);
  if (r.has("clip_search")) w.clip_search = parseClip(r, "clip_search");
}

void readOverride(const json& j, const std::string& source, const std::string& path, LayerOverride& o) {
  ObjectReader r(j, source, path);
  r.setHint("match, op_type, skip, weights");
  if (!r.has("match")) r.fail("match", "is required (a glob over node or weight names)");
  o.match = r.string("match");
  if (r.has("op_type")) o.op_type = r.string("op_type");
  if (r.has("skip")) o.skip = r.boolean("skip");
  if (r.has("weights")) {
    ObjectReader w(r.raw("weights"), source, r.key("weights"));
    w.setHint("bits, symmetric, granularity, group_size, clip_search");
    if (w.has("bits")) o.bits = static_cast<int>(w.integer("bits", 2, 8));
    if (w.has("symmetric")) o.symmetric = w.boolean("symmetric");
    if (w.has("granularity")) o.granularity = parseGranularity(w, "granularity");
    if (w.has("group_size")) o.group_size = w.integer("group_size", 16, 256);
    if (w.has("clip_search")) o.clip_search = parseClip(w, "clip_search");
  }
}

void readActivations(const json& j, const std::string& source, ActivationSettings& a) {
  ObjectReader r(j, source, "activations");
  r.setHint("bits, symmetric, dynamic, granularity, observer, percentile, momentum, bins, op_types");
  a.present = true;
  if (r.has("dynamic")) a.dynamic = r.boolean("dynamic");
  if (r.has("granularity")) {
    a.granularity = r.choice("granularity", {"tensor", "token"}) == "token" ? ActivationGranularity::kToken
                                                                            : ActivationGranularity::kTensor;
    // A per-token scale is a property of each row at run time; a calibrated one would be per position.
    if (a.granularity == ActivationGranularity::kToken && !a.dynamic)
      r.fail("granularity", "'token' needs \"dynamic\": true (per-token scales are computed at run time)");
  }
  // Observer options describe calibration, which dynamic quantization does not do.
  if (a.dynamic)
    for (const char* k : {"observer", "percentile", "momentum", "bins"})
      if (r.has(k)) r.fail(k, "is read only by static quantization, not with \"dynamic\": true");
  if (r.has("bits")) {
    a.bits = static_cast<int>(r.integer("bits", 4, 16));
    if (a.bits != 4 && a.bits != 8 && a.bits != 16) r.fail("bits", std::to_string(a.bits) + " is not one of 4, 8, 16");
  }
  if (r.has("symmetric")) a.symmetric = r.boolean("symmetric");
  if (r.has("observer")) a.observer = r.choice("observer", {"minmax", "moving_minmax", "percentile", "mse", "entropy"});
  // Observer options are read only by their observer: one given next to another observer is an error.
  auto onlyFor = [&](const char* key, std::initializer_list<const char*> observers) {
    for (const char* o : observers)
      if (a.observer == o) return;
    std::string list;
    for (const char* o : observers) list += std::string(list.empty() ? "" : ", ") + "'" + o + "'";
    r.fail(key, "is read only by the " + list + " observer" + (observers.size() > 1 ? "s" : "") + ", not by '" +
                    a.observer + "'");
  };
  if (r.has("percentile")) {
    onlyFor("percentile", {"percentile"});
    if (!r.raw("percentile").is_number()) r.fail("percentile", "must be a number");
    a.percentile = r.raw("percentile").get<double>();
    if (!(*a.percentile >= 50 && *a.percentile <= 100)) r.fail("percentile", "must be in [50, 100], got " + r.raw("percentile").dump());
  }
  if (r.has("momentum")) {
    onlyFor("momentum", {"moving_minmax"});
    if (!r.raw("momentum").is_number()) r.fail("momentum", "must be a number");
    a.momentum = r.raw("momentum").get<double>();
    if (!(*a.momentum > 0 && *a.momentum <= 1)) r.fail("momentum", "must be in (0, 1], got " + r.raw("momentum").dump());
  }
  if (r.has("bins")) {
    onlyFor("bins", {"percentile", "mse", "entropy"});
    a.bins = static_cast<int>(r.integer("bins", 16, 1 << 20));
    if (*a.bins % 2) r.fail("bins", "must be even, got " + std::to_string(*a.bins));
  }
  if (r.has("op_types")) {
    a.op_types = r.strings("op_types");
    const std::vector<std::string>& known = activationOpTypes();
    for (const auto& op : a.op_types)
      if (std::find(known.begin(), known.end(), op) == known.end()) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        r.fail("op_types", "'" + op + "' is not one of " + list);
      }
    // Dynamic quantization feeds integer (or fake-quantized) weight layers only: other ops would need
    // a static scale to stay in integers.
    if (a.dynamic)
      for (const auto& op : a.op_types)
        if (op != "MatMul" && op != "Gemm" && op != "Conv")
          r.fail("op_types", "'" + op + "' is read only by static quantization (dynamic quantizes the inputs of MatMul, Gemm, Conv)");
  }
}

void readCalibration(const json& j, const std::string& source, calib::CalibrationSpec& c) {
  ObjectReader r(j, source, "calibration");
  r.setHint("inputs, dir, tokens, shape, samples, batch_size, synthetic, synthetic_samples");
  if (r.has("inputs")) {
    const json& in = r.raw("inputs");
    if (!in.is_object()) r.fail("inputs", "must map input names to files");
    for (auto it = in.begin(); it != in.end(); ++it) {
      if (!it.value().is_string()) r.fail("inputs." + it.key(), "must be a file path");
      c.named_files.emplace_back(it.key(), it.value().get<std::string>());
    }
  }
  if (r.has("dir")) c.dir = r.string("dir");
  if (r.has("tokens")) c.tokens = r.string("tokens");
  if (r.has("shape")) {
    const json& sh = r.raw("shape");
    if (!sh.is_array() || sh.size() != 2) r.fail("shape", "must be [samples, seq]");
    for (const auto& d : sh) {
      if (!d.is_number_integer() || d.get<int64_t>() <= 0) r.fail("shape", "must hold positive integers");
      c.tokens_shape.push_back(d.get<int64_t>());
    }
  }
  if (r.has("samples")) c.samples = r.integer("samples", 0, INT64_MAX);
  if (r.has("batch_size")) c.batch_size = r.integer("batch_size", 1, 4096);
  if (r.has("synthetic")) c.synthetic = r.boolean("synthetic");
  if (r.has("synthetic_samples")) c.synthetic_samples = r.integer("synthetic_samples", 1, 1 << 20);
}

}  // namespace

QuantConfig parseConfig(const std::string& text, const std::string& source, const PassTable& passes) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1E999
    throwUsage(source + ": not valid JSON: " + e.what());
  }
  QuantConfig c;
  c.source = source;
  ObjectReader r(j, source, "");
  r.setHint("name, description, format, seed, pipeline, weights, activations, calibration, layers, overrides, passes");
  if (r.has("name")) c.name = r.string("name");
  if (r.has("description")) c.description = r.string("description");
  if (r.has("format")) c.format = parseOutputFormat(r.string("format"), source + ": format");
  if (r.has("seed")) c.seed = static_cast<uint64_t>(r.integer("seed", 0, INT64_MAX));
  std::vector<std::string> pipeline;
  for (const auto& info : passes)
    if (info.in_default_pipeline) pipeline.push_back(info.name);
  if (r.has("pipeline")) {
    pipeline = r.strings("pipeline");
    if (pipeline.empty()) r.fail("pipeline", "must name at least one pass");
  }
  for (size_t i = 0; i < pipeline.size(); ++i) {
    const PassInfo* info = findPass(passes, pipeline[i]);
    if (!info) r.fail("pipeline", "unknown pass '" + pipeline[i] + "' (passes: " + passNames(passes) + ")");
    for (size_t k = 0; k < i; ++k)
      if (pipeline[k] == pipeline[i]) r.fail("pipeline", "names pass '" + pipeline[i] + "' twice");
    c.pipeline.push_back(PassSpec{info, {}});
  }
  // Options are parsed (defaults filled, ranges checked) for every pass of the pipeline now.
  const json no_options;
  const json* given = nullptr;
  if (r.has("passes")) {
    given = &r.raw("passes");
    if (!given->is_object()) r.fail("passes", "must be an object keyed by pass name");
    for (auto it = given->begin(); it != given->end(); ++it) {
      if (!findPass(passes, it.key())) r.fail("passes." + it.key(), "unknown pass (passes: " + passNames(passes) + ")");
      if (!c.hasPass(it.key())) r.fail("passes." + it.key(), "options for a pass the pipeline does not name");
    }
  }
  for (PassSpec& p : c.pipeline)
    p.options = parseOptions(p.info->options, given && given->contains(p.name()) ? given->at(p.name()) : no_options,
                             source + ": passes." + p.name());
  if (r.has("weights")) readWeights(r.raw("weights"), source, "weights", c.weights);
  if (r.has("activations")) readActivations(r.raw("activations"), source, c.activations);
  if (r.has("calibration")) readCalibration(r.raw("calibration"), source, c.calibration);
  if (r.has("layers")) {
    ObjectReader l(r.raw("layers"), source, "layers");
    l.setHint("op_types, quantize_embeddings, skip, min_elements, non_finite");
    if (l.has("op_types")) {
      c.layers.op_types = l.strings("op_types");
      for (const auto& op : c.layers.op_types)
        if (op != "MatMul" && op != "Gemm" && op != "Conv" && op != "Gather")
          l.fail("op_types", "'" + op + "' is not a quantizable op type (MatMul, Gemm, Conv, Gather)");
    }
    if (l.has("quantize_embeddings")) c.layers.quantize_embeddings = l.boolean("quantize_embeddings");
    if (l.has("skip")) c.layers.skip = l.strings("skip");
    if (l.has("min_elements")) c.layers.min_elements = l.integer("min_elements", 0, INT64_MAX);
    if (l.has("non_finite")) {
      const std::string v = l.string("non_finite");
      if (v != "error" && v != "keep_float") l.fail("non_finite", "must be \"error\" or \"keep_float\", got \"" + v + "\"");
      c.layers.keep_non_finite_float = v == "keep_float";
    }
  }
  if (r.has("overrides")) {
    const json& arr = r.raw("overrides");
    if (!arr.is_array()) r.fail("overrides", "must be an array of objects");
    for (size_t i = 0; i < arr.size(); ++i) {
      LayerOverride o;
      readOverride(arr[i], source, "overrides[" + std::to_string(i) + "]", o);
      c.overrides.push_back(std::move(o));
    }
  }
  const bool reads_activations = c.quantizesActivations();
  std::string readers;
  for (const auto& info : passes)
    if (info.traits.reads_activations) readers += (readers.empty() ? "'" : ", '") + info.name + "'";
  if (reads_activations && !c.activations.present) r.fail("activations", "is required: the pipeline quantizes activations");
  if (!reads_activations && c.activations.present)
    r.fail("activations", "is read only by " + readers + ", which the pipeline does not name");
  if (c.activations.dynamic && r.has("calibration") && !c.needsCalibration())
    r.fail("calibration", "is read by no pass: activations are dynamic and no other pass of the pipeline needs calibration data");
  if (c.weights.granularity == Granularity::kGroup && c.weights.group_size <= 0)
    r.fail("weights.group_size", "is required for granularity 'group'");
  return c;
}

QuantConfig loadConfig(const std::string& path, const PassTable& passes) {
  std::ifstream f(path);
  if (!f) throwUsage(path + ": cannot open config file");
  std::stringstream ss;
  ss << f.rdbuf();
  return parseConfig(ss.str(), path, passes);
}

bool QuantConfig::hasPass(const std::string& name) const {
  for (const auto& p : pipeline)
    if (p.name() == name) return true;
  return false;
}

bool QuantConfig::needsCalibration() const {
  for (const auto& p : pipeline)
    if (p.info->traits.needsCalibration(activations.dynamic)) return true;
  return false;
}

bool QuantConfig::quantizesActivations() const {
  for (const auto& p : pipeline)
    if (p.info->traits.reads_activations) return true;
  return false;
}

std::string configToJson(const QuantConfig& c) {
  auto weightsJson = [](const WeightSettings& w) {
    return json{{"bits", w.bits}, {"symmetric", w.symmetric}, {"granularity", granularityName(w.granularity)},
                {"group_size", w.group_size}, {"clip_search", w.clip_search == ClipSearch::kMse ? "mse" : "none"}};
  };
  json j;
  j["name"] = c.name;
  if (!c.description.empty()) j["description"] = c.description;
  j["format"] = outputFormatName(c.format);
  j["seed"] = c.seed;
  json pipeline = json::array(), passes = json::object();
  for (const auto& p : c.pipeline) {
    pipeline.push_back(p.name());
    passes[p.name()] = json::parse(p.options.toJson());
  }
  j["pipeline"] = pipeline;
  j["weights"] = weightsJson(c.weights);
  j["layers"] = {{"op_types", c.layers.op_types}, {"quantize_embeddings", c.layers.quantize_embeddings},
                 {"skip", c.layers.skip}, {"min_elements", c.layers.min_elements},
                 {"non_finite", c.layers.keep_non_finite_float ? "keep_float" : "error"}};
  json ov = json::array();
  for (const auto& o : c.overrides) {
    json e{{"match", o.match}};
    if (!o.op_type.empty()) e["op_type"] = o.op_type;
    if (o.skip) e["skip"] = true;
    json w = json::object();
    if (o.bits) w["bits"] = *o.bits;
    if (o.symmetric) w["symmetric"] = *o.symmetric;
    if (o.granularity) w["granularity"] = granularityName(*o.granularity);
    if (o.group_size) w["group_size"] = *o.group_size;
    if (o.clip_search) w["clip_search"] = *o.clip_search == ClipSearch::kMse ? "mse" : "none";
    if (!w.empty()) e["weights"] = w;
    ov.push_back(e);
  }
  j["overrides"] = ov;
  if (c.activations.present) {
    json a{{"bits", c.activations.bits}, {"symmetric", c.activations.symmetric}, {"op_types", c.activations.op_types}};
    // Written only when dynamic, so a static config's JSON (report, .ptq provenance) is unchanged.
    if (c.activations.dynamic) {
      a["dynamic"] = true;
      a["granularity"] = activationGranularityName(c.activations.granularity);
    } else {
      a["observer"] = c.activations.observer;
    }
    if (c.activations.percentile) a["percentile"] = *c.activations.percentile;
    if (c.activations.momentum) a["momentum"] = *c.activations.momentum;
    if (c.activations.bins) a["bins"] = *c.activations.bins;
    j["activations"] = a;
  }
  j["passes"] = passes;
  return j.dump();
}

}  // namespace ptq::pipeline
