#include "lib/driver/eval_job.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/calibration.h"
#include "lib/driver/html_report.h"
#include "lib/driver/quantize_job.h"
#include "lib/driver/tensor_files.h"
#include "lib/runtime/session.h"
#include "lib/util/atomic_file.h"
#include "lib/util/error.h"

namespace ptq::driver {

namespace {

constexpr int64_t kProgressEvery = 5;  // batches between progress lines

bool endsWith(const std::string& s, const char* ext) {
  const std::string e(ext);
  return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

std::vector<char> readBytes(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throwInput(path + ": cannot open " + what);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

std::vector<int64_t> readInt64File(const std::string& path, const std::string& what) {
  const std::vector<char> b = readBytes(path, what);
  if (b.size() % 8) throwInput(path + ": " + what + " size " + std::to_string(b.size()) + " is not a multiple of 8 (int64)");
  std::vector<int64_t> v(b.size() / 8);
  if (!v.empty()) std::memcpy(v.data(), b.data(), b.size());
  return v;
}

std::vector<int64_t> readLabels(const std::string& path) {
  if (!endsWith(path, ".npy")) return readInt64File(path, "label file");
  const ir::Tensor t = readTensorFile(path);
  if (t.rank() != 1) throwInput(path + ": labels must be one-dimensional (one per sample), got " + ir::shapeToString(t.shape()));
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  if (t.dtype() == ir::DType::kInt64) {
    std::memcpy(v.data(), t.data(), v.size() * 8);
  } else if (t.dtype() == ir::DType::kInt32) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = t.data<int32_t>()[i];
  } else {
    throwInput(path + ": labels must be int64 or int32, got " + ir::dtypeName(t.dtype()));
  }
  return v;
}

std::string joinNames(std::vector<std::string> v) {
  std::string s;
  for (const std::string& n : v) s += (s.empty() ? "" : ", ") + n;
  return s;
}

void checkSameInterface(const runtime::Session& ref, const runtime::Session& cand, const EvalOptions& o) {
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  if (sorted(ref.inputNames()) != sorted(cand.inputNames()))
    throwInput("models have different inputs: " + o.ref_path + " has [" + joinNames(ref.inputNames()) + "], " + o.cand_path +
               " has [" + joinNames(cand.inputNames()) + "]");
  if (sorted(ref.outputNames()) != sorted(cand.outputNames()))
    throwInput("models have different outputs: " + o.ref_path + " has [" + joinNames(ref.outputNames()) + "], " + o.cand_path +
               " has [" + joinNames(cand.outputNames()) + "]");
}

// Float values of an output (a view for float32, a converted copy otherwise).
struct FloatView {
  std::vector<float> copy;
  const float* p = nullptr;
  explicit FloatView(const ir::Tensor& t) {
    if (t.dtype() == ir::DType::kFloat32) {
      p = t.data<float>();
    } else {
      copy = t.toFloats();
      p = copy.data();
    }
  }
};

bool isWeightDequant(const ir::Value* v) {
  const ir::Node* p = v ? v->producer() : nullptr;
  return p && p->opType() == "DequantizeLinear" && p->input(0) && p->input(0)->isConstant();
}

std::string nodeLabel(const ir::Node& n) {
  if (!n.name.empty()) return n.name;
  return n.output(0) ? "<" + n.output(0)->name() + ">" : "<unnamed " + n.opType() + ">";
}

// The quantized layers of the candidate's main graph and the value each is compared at.
void findAttributionLayers(const ir::Graph& cand, const ir::Graph& ref, EvalResult& r) {
  auto inRef = [&](const ir::Value* v) {
    const ir::Value* rv = v ? ref.findValue(v->name()) : nullptr;
    return rv && !rv->isConstant() && rv->kind() != ir::Value::Kind::kGraphInput;
  };
  std::set<std::string> taken;
  for (const ir::Node* n : cand.nodes()) {
    const std::string& op = n->opType();
    if (op == "DequantizeLinear" || op == "QuantizeLinear" || op == "DynamicQuantizeLinear") continue;
    bool quantized = op == "MatMulNBits" || op == "MatMulInteger" || op == "ConvInteger";
    for (const ir::Value* in : n->inputs()) quantized = quantized || isWeightDequant(in);
    if (!quantized || !n->output(0)) continue;
    // Follow the layer's tail (integer kernels' Cast/Mul/Add, activation Q/DQ) to a value the reference has.
    const ir::Value* v = n->output(0);
    for (int hop = 0; hop < 4 && !inRef(v); ++hop) {
      if (v->uses().size() != 1) break;
      const ir::Node* next = v->uses()[0].node;
      static const std::set<std::string> tail = {"Cast", "Mul", "Add", "QuantizeLinear", "DequantizeLinear"};
      if (!tail.count(next->opType()) || !next->output(0)) break;
      v = next->output(0);
    }
    if (!inRef(v) || !taken.insert(v->name()).second) {
      r.unmatched.push_back(nodeLabel(*n));
      continue;
    }
    LayerAttribution a;
    // The weight to isolate: a DequantizeLinear of constants into this node, matched to the reference
    // node of the same name's constant input at the same index.
    const ir::Node* rn = nullptr;
    for (const ir::Node* m : ref.nodes())
      if (!n->name.empty() && m->name == n->name && m->opType() == n->opType()) rn = m;
    for (size_t i = 0; i < n->numInputs() && rn; ++i)
      if (isWeightDequant(n->input(i)) && rn->input(i) && rn->input(i)->isConstant()) {
        a.cand_weight = n->input(i)->name();
        a.ref_weight = rn->input(i)->name();
        break;
      }
    a.node = nodeLabel(*n);
    a.op_type = n->domain().empty() ? op : n->domain() + "." + op;
    a.value = v->name();
    r.layers.push_back(a);
  }
}

// The graph outputs plus the attribution values.
std::vector<std::string> requestedOutputs(const runtime::Session& s, const EvalResult& r) {
  std::vector<std::string> outs = s.outputNames();
  for (const LayerAttribution& a : r.layers)
    if (std::find(outs.begin(), outs.end(), a.value) == outs.end()) outs.push_back(a.value);
  return outs;
}

void addAttribution(const std::map<std::string, ir::Tensor>& ref, const std::map<std::string, ir::Tensor>& cand, EvalResult& r) {
  for (LayerAttribution& a : r.layers) {
    const ir::Tensor& x = ref.at(a.value);
    const ir::Tensor& y = cand.at(a.value);
    if (x.dtype() == ir::DType::kString || x.numel() != y.numel()) continue;
    const FloatView fx(x), fy(y);
    a.error.add(fx.p, fy.p, static_cast<size_t>(x.numel()));
  }
}

class Evaluator {
 public:
  // per_position: a float [N, T, C] output counts as a classifier of its N·T positions (a sequence
  // recognizer such as PP-OCR rec); off for language models, whose logits are measured as such.
  Evaluator(EvalResult& r, const std::vector<std::string>& outputs, const std::vector<int64_t>* labels, bool per_position)
      : r_(r), labels_(labels), per_position_(per_position) {
    for (const std::string& n : outputs) {
      OutputEval e;
      e.name = n;
      r_.outputs.push_back(e);
    }
  }

  // Compares one batch; `first_sample` indexes the labels.
  void add(const std::map<std::string, ir::Tensor>& ref, const std::map<std::string, ir::Tensor>& cand, int64_t rows,
           int64_t first_sample) {
    for (OutputEval& e : r_.outputs) {
      const ir::Tensor& a = ref.at(e.name);
      const ir::Tensor& b = cand.at(e.name);
      if (a.dtype() != b.dtype() || a.shape() != b.shape())
        throwInput("output '" + e.name + "': reference gives " + ir::dtypeName(a.dtype()) + ir::shapeToString(a.shape()) +
                   ", candidate " + ir::dtypeName(b.dtype()) + ir::shapeToString(b.shape()));
      if (a.dtype() == ir::DType::kString) continue;
      if (r_.batches == 0) {
        e.dtype = ir::dtypeName(a.dtype());
        e.shape = a.shape();
        e.classifier = a.dtype() == ir::DType::kFloat32 && a.rank() == 2 && a.shape()[0] == rows && a.shape()[1] >= 2;
        e.per_position = per_position_ && a.dtype() == ir::DType::kFloat32 && a.rank() == 3 && a.shape()[0] == rows && a.shape()[2] >= 2;
        e.classifier = e.classifier || e.per_position;
      }
      const FloatView fa(a), fb(b);
      e.error.add(fa.p, fb.p, static_cast<size_t>(a.numel()));
      if (e.per_position) {
        if (a.rank() != 3 || a.shape()[0] != rows) throwInput("output '" + e.name + "': per-position classifier output changed shape to " + ir::shapeToString(a.shape()));
        e.classes.add(fa.p, fb.p, rows * a.shape()[1], a.shape()[2], nullptr);
      } else if (e.classifier) {
        if (a.rank() != 2 || a.shape()[0] != rows) throwInput("output '" + e.name + "': classifier output changed shape to " + ir::shapeToString(a.shape()));
        e.classes.add(fa.p, fb.p, rows, a.shape()[1], labels_ ? labels_->data() + first_sample : nullptr);
      }
    }
  }

 private:
  EvalResult& r_;
  const std::vector<int64_t>* labels_;
  bool per_position_ = false;
};

void progress(const EvalResult& r, int64_t batch, int64_t batches, std::chrono::steady_clock::time_point t0) {
  if ((batch + 1) % kProgressEvery != 0 && batch + 1 != batches) return;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (r.language_model)
    spdlog::info("eval: batch {}/{} ({:.1f} s): perplexity so far ref {:.4f}, cand {:.4f}", batch + 1, batches, s,
                 r.ref_ppl.perplexity(), r.cand_ppl.perplexity());
  else
    spdlog::info("eval: batch {}/{} ({:.1f} s)", batch + 1, batches, s);
}

void evalTokens(const EvalOptions& o, runtime::Session& ref, runtime::Session& cand, EvalResult& r) {
  if (o.seq <= 0) throwUsage("--seq must be positive");
  const std::vector<std::string> inputs = ref.inputNames();
  if (inputs.size() != 1 || (ref.valueType(inputs[0]) != ir::DType::kInt64 && ref.valueType(inputs[0]) != ir::DType::kInt32))
    throwUsage("--tokens " + o.tokens + ": " + o.ref_path + " must have exactly one integer input (it has [" + joinNames(inputs) +
               "]); use --data NAME=FILE");
  const std::string input = inputs[0];
  const std::vector<int64_t> tokens = readInt64File(o.tokens, "token file");
  const int64_t avail = eval::wholeWindows(static_cast<int64_t>(tokens.size()), o.seq);
  if (avail < 1)
    throwInput(o.tokens + ": " + std::to_string(tokens.size()) + " tokens, need at least " + std::to_string(o.seq + 1) +
               " for one window of " + std::to_string(o.seq));
  if (o.windows > avail)
    throwUsage("--windows " + std::to_string(o.windows) + ": " + o.tokens + " holds only " + std::to_string(avail) +
               " whole windows of " + std::to_string(o.seq) + " (+1 target)");
  const int64_t windows = o.windows > 0 ? o.windows : avail;
  r.language_model = true;
  r.seq = o.seq;
  r.samples = windows;
  r.data_description = std::to_string(windows) + " windows of " + std::to_string(o.seq) + " tokens from " + o.tokens +
                       " (input " + input + ")";

  std::vector<std::string> outs = ref.outputNames();
  const std::vector<std::string> requested = requestedOutputs(ref, r);
  Evaluator ev(r, outs, nullptr, false);
  const int64_t batches = (windows + o.batch - 1) / o.batch;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t bi = 0; bi < batches; ++bi) {
    const int64_t w0 = bi * o.batch, nb = std::min(o.batch, windows - w0);
    std::vector<int64_t> ids(tokens.begin() + w0 * o.seq, tokens.begin() + (w0 + nb) * o.seq);
    const std::map<std::string, ir::Tensor> feeds{{input, ir::Tensor::fromInt64s({nb, o.seq}, ids)}};
    const auto ro = ref.run(feeds, requested);
    const auto co = cand.run(feeds, requested);
    addAttribution(ro, co, r);
    if (bi == 0) {
      // The logits: "logits" if there is such an output, else the first float [batch, seq, vocab] one.
      for (const std::string& n : outs) {
        const ir::Tensor& t = ro.at(n);
        const bool ok = t.dtype() == ir::DType::kFloat32 && t.rank() == 3 && t.shape()[0] == nb && t.shape()[1] == o.seq;
        if (ok && (r.lm_output.empty() || n == "logits")) r.lm_output = n;
      }
      if (r.lm_output.empty())
        throwInput(o.ref_path + ": no float32 output of shape [batch, " + std::to_string(o.seq) + ", vocab] to read logits from");
    }
    ev.add(ro, co, nb, w0);
    const ir::Tensor& lr = ro.at(r.lm_output);
    const ir::Tensor& lc = co.at(r.lm_output);
    const int64_t V = lr.shape()[2];
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t t = 0; t < o.seq; ++t) {
        const int64_t pos = (w0 + b) * o.seq + t + 1;
        const int64_t target = tokens[static_cast<size_t>(pos)];
        if (target < 0 || target >= V)
          throwInput(o.tokens + ": token " + std::to_string(target) + " at " + std::to_string(pos) + " is outside the vocabulary [0, " +
                     std::to_string(V) + ")");
        const float* pr = lr.data<float>() + (b * o.seq + t) * V;
        const float* pc = lc.data<float>() + (b * o.seq + t) * V;
        r.ref_ppl.add(eval::nextTokenNll(pr, V, target));
        r.cand_ppl.add(eval::nextTokenNll(pc, V, target));
        const int64_t ar = eval::argmax(pr, V), ac = eval::argmax(pc, V);
        r.lm_top1_agree += ar == ac;
        r.lm_ref_correct += ar == target;
        r.lm_cand_correct += ac == target;
      }
    ++r.batches;
    progress(r, bi, batches, t0);
  }
}

void evalData(const EvalOptions& o, const ir::Model& ref_model, runtime::Session& ref, runtime::Session& cand, EvalResult& r) {
  calib::CalibrationSpec spec;
  for (const std::string& arg : o.data) {
    const auto eq = arg.find('=');
    struct stat st {};
    if (eq != std::string::npos) {
      if (eq == 0 || eq + 1 == arg.size()) throwUsage("--data " + arg + ": expected NAME=FILE");
      spec.named_files.emplace_back(arg.substr(0, eq), arg.substr(eq + 1));
    } else if (::stat(arg.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      spec.dir = arg;
    } else if (endsWith(arg, ".i64")) {
      throwUsage("--data " + arg + ": a token file goes to --tokens");
    } else {
      throwUsage("--data " + arg + ": expected NAME=FILE or a folder of NAME.npy");
    }
  }
  if (!o.data_shape.empty()) spec.tokens_shape = calib::parseShape(o.data_shape, "--data-shape");
  spec.samples = o.samples;
  spec.batch_size = o.batch;
  const calib::CalibrationSet set = calib::CalibrationSet::load(spec, *ref_model.graph, readTensorFile);
  r.samples = set.samples();
  r.data_description = set.describe();

  std::vector<int64_t> labels;
  if (!o.labels.empty()) {
    labels = readLabels(o.labels);
    if (static_cast<int64_t>(labels.size()) < set.samples())
      throwInput(o.labels + ": " + std::to_string(labels.size()) + " labels for " + std::to_string(set.samples()) + " samples");
  }
  const std::vector<std::string> requested = requestedOutputs(ref, r);
  Evaluator ev(r, ref.outputNames(), o.labels.empty() ? nullptr : &labels, true);
  const int64_t batches = set.numBatches();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t bi = 0; bi < batches; ++bi) {
    const auto feeds = set.batch(bi);
    const auto ro = ref.run(feeds, requested);
    const auto co = cand.run(feeds, requested);
    addAttribution(ro, co, r);
    const int64_t rows = std::min(o.batch, set.samples() - bi * o.batch);
    ev.add(ro, co, rows, bi * o.batch);
    ++r.batches;
    progress(r, bi, batches, t0);
  }
  if (!o.labels.empty()) {
    bool any = false;
    for (const OutputEval& e : r.outputs) any = any || e.classifier;
    if (!any) spdlog::warn("--labels {}: no output is a classifier (float [N, C]); labels unused", o.labels);
  }
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

void isolateLayers(const EvalOptions& o, const ir::Model& ref_model, runtime::Session& ref, runtime::Session& cand, EvalResult& r) {
  runtime::SessionOptions so;
  so.threads = o.threads;
  std::unique_ptr<runtime::Session> iso;
  EvalOptions oi = o;
  oi.attribution = false;
  oi.isolate = 0;
  for (size_t k = 0; k < r.layers.size() && static_cast<int64_t>(k) < o.isolate; ++k) {
    LayerAttribution& a = r.layers[k];
    if (a.ref_weight.empty()) {
      a.isolated.note = "not isolated: its weight is not a DequantizeLinear of constants matched to a reference weight";
      continue;
    }
    const ir::Value* rw = ref_model.graph->findValue(a.ref_weight);
    ir::Tensor q = cand.run({}, {a.cand_weight}).at(a.cand_weight);
    if (!rw || q.dtype() != rw->initializer.dtype() || q.shape() != rw->initializer.shape()) {
      a.isolated.note = "not isolated: the dequantized weight's type or shape differs from the reference's";
      continue;
    }
    if (!iso) iso = std::make_unique<runtime::Session>(ref_model, so);
    spdlog::info("eval: only {} quantized ({}/{})", a.node, k + 1, std::min<size_t>(r.layers.size(), static_cast<size_t>(o.isolate)));
    iso->setConstant(a.ref_weight, std::move(q));
    EvalResult ri;
    if (!o.tokens.empty()) evalTokens(oi, ref, *iso, ri);
    else evalData(oi, ref_model, ref, *iso, ri);
    iso->setConstant(a.ref_weight, rw->initializer);
    IsolatedLayer& x = a.isolated;
    x.done = true;
    x.sqnr_db = eval::kMaxSqnrDb;
    x.cosine = 1;
    for (const OutputEval& e : ri.outputs) {
      if (e.error.count == 0) continue;
      x.sqnr_db = std::min(x.sqnr_db, e.error.sqnr());
      x.cosine = std::min(x.cosine, e.error.cosineSimilarity());
    }
    if (ri.language_model) {
      const double n = static_cast<double>(std::max<int64_t>(1, ri.ref_ppl.count));
      x.perplexity = ri.cand_ppl.perplexity();
      x.agreement = static_cast<double>(ri.lm_top1_agree) / n;
      x.accuracy = static_cast<double>(ri.lm_cand_correct) / n;
    } else {
      for (const OutputEval& e : ri.outputs)
        if (e.classifier) {
          x.agreement = e.classes.top1Agreement();
          x.accuracy = e.classes.labelled ? e.classes.candAccuracy() : 0;
          break;
        }
    }
  }
}

}  // namespace

EvalResult runEval(const EvalOptions& o) {
  if (o.tokens.empty() == o.data.empty()) throwUsage("eval needs exactly one of --tokens FILE.i64 or --data NAME=FILE");
  if (!o.tokens.empty() && !o.labels.empty()) throwUsage("--labels goes with --data, not --tokens");
  if (o.batch <= 0) throwUsage("--batch must be positive");
  if (o.isolate < 0) throwUsage("--isolate must be positive");
  if (o.isolate > 0 && !o.attribution) throwUsage("--isolate K needs --attribution");
  if (o.windows < 0) throwUsage("--windows must be positive");
  const auto t0 = std::chrono::steady_clock::now();
  const ir::Model ref_model = loadRunnableModel(o.ref_path);
  const ir::Model cand_model = loadRunnableModel(o.cand_path);
  runtime::SessionOptions so;
  so.threads = o.threads;
  runtime::Session ref(ref_model, so), cand(cand_model, so);
  checkSameInterface(ref, cand, o);

  EvalResult r;
  r.ref_path = o.ref_path;
  r.cand_path = o.cand_path;
  r.attribution = o.attribution;
  if (o.attribution) findAttributionLayers(*cand_model.graph, *ref_model.graph, r);
  if (!o.tokens.empty()) evalTokens(o, ref, cand, r);
  else evalData(o, ref_model, ref, cand, r);
  std::stable_sort(r.layers.begin(), r.layers.end(),
                   [](const LayerAttribution& a, const LayerAttribution& b) { return a.error.sqnr() < b.error.sqnr(); });
  if (o.attribution && o.isolate > 0) isolateLayers(o, ref_model, ref, cand, r);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!o.report_path.empty()) writeFileAtomically(o.report_path, r.toJson() + "\n");
  if (!o.report_html.empty()) writeFileAtomically(o.report_html, renderEvalHtml(nlohmann::json::parse(r.toJson())));
  return r;
}

std::string EvalResult::table() const {
  std::string s = "reference " + ref_path + "\ncandidate " + cand_path + "\ndata      " + data_description + " (" +
                  std::to_string(batches) + " batches, " + fmt("%.2f", seconds) + " s)\n\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-24s %-22s %12s %12s %14s %10s\n", "output", "shape (first batch)", "max-abs", "mean-abs",
                "cosine", "SQNR dB");
  s += line;
  for (const OutputEval& e : outputs) {
    std::snprintf(line, sizeof line, "%-24s %-22s %12.4g %12.4g %14.9f %10.2f\n", e.name.c_str(),
                  (e.dtype + ir::shapeToString(e.shape)).c_str(), e.error.max_abs, e.error.meanAbs(), e.error.cosineSimilarity(),
                  e.error.sqnr());
    s += line;
    if (e.error.non_finite) s += "  (" + std::to_string(e.error.non_finite) + " non-finite values left out)\n";
  }
  for (const OutputEval& e : outputs) {
    if (!e.classifier) continue;
    const eval::ClassStats& c = e.classes;
    std::snprintf(line, sizeof line, "\nclassifier %s (%lld %s): top-1 agreement %.4f (%lld), top-5 agreement %.4f (%lld)\n",
                  e.name.c_str(), static_cast<long long>(c.samples), e.per_position ? "positions" : "samples", c.top1Agreement(), static_cast<long long>(c.top1_agree),
                  c.top5Agreement(), static_cast<long long>(c.top5_agree));
    s += line;
    if (c.labelled) {
      std::snprintf(line, sizeof line, "  accuracy on %lld labels: reference %.4f, candidate %.4f (%+.4f)\n",
                    static_cast<long long>(c.labelled), c.refAccuracy(), c.candAccuracy(), c.candAccuracy() - c.refAccuracy());
      s += line;
    }
  }
  if (attribution) {
    std::snprintf(line, sizeof line, "\nper-layer output error, worst first (%zu quantized layers matched, %zu unmatched)\n", layers.size(),
                  unmatched.size());
    s += line;
    std::snprintf(line, sizeof line, "%-44s %-26s %10s %14s %12s\n", "layer", "op", "SQNR dB", "cosine", "mean-abs");
    s += line;
    for (const LayerAttribution& a : layers) {
      std::snprintf(line, sizeof line, "%-44s %-26s %10.2f %14.9f %12.4g\n", a.node.c_str(), a.op_type.c_str(), a.error.sqnr(),
                    a.error.cosineSimilarity(), a.error.meanAbs());
      s += line;
    }
    bool any = false;
    for (const LayerAttribution& a : layers) any = any || a.isolated.done || !a.isolated.note.empty();
    if (any) {
      s += "\nonly this layer quantized (the worst layers, each alone):\n";
      std::snprintf(line, sizeof line, "%-44s %12s %14s %12s %12s\n", "layer", "out SQNR dB", language_model ? "perplexity" : "accuracy",
                    "agreement", language_model ? "ppl change" : "");
      s += line;
      for (const LayerAttribution& a : layers) {
        if (a.isolated.done) {
          const IsolatedLayer& x = a.isolated;
          std::snprintf(line, sizeof line, "%-44s %12.2f %14.4f %12.4f %11s\n", a.node.c_str(), x.sqnr_db, language_model ? x.perplexity : x.accuracy,
                        x.agreement, language_model ? fmt("%+.3f%%", 100.0 * (x.perplexity / ref_ppl.perplexity() - 1.0)).c_str() : "");
          s += line;
        } else if (!a.isolated.note.empty()) {
          s += a.node + ": " + a.isolated.note + "\n";
        }
      }
    }
  }
  if (language_model) {
    const double pr = ref_ppl.perplexity(), pc = cand_ppl.perplexity();
    std::snprintf(line, sizeof line,
                  "\nperplexity (%s, %lld windows of %lld, %lld positions): reference %.4f, candidate %.4f (%+.3f%%)\n"
                  "  next-token top-1 agreement %.4f, accuracy reference %.4f, candidate %.4f\n",
                  lm_output.c_str(), static_cast<long long>(samples), static_cast<long long>(seq), static_cast<long long>(ref_ppl.count),
                  pr, pc, 100.0 * (pc / pr - 1.0),
                  ref_ppl.count ? static_cast<double>(lm_top1_agree) / static_cast<double>(ref_ppl.count) : 0.0,
                  ref_ppl.count ? static_cast<double>(lm_ref_correct) / static_cast<double>(ref_ppl.count) : 0.0,
                  ref_ppl.count ? static_cast<double>(lm_cand_correct) / static_cast<double>(ref_ppl.count) : 0.0);
    s += line;
  }
  return s;
}

std::string EvalResult::toJson() const {
  using nlohmann::json;
  json j;
  j["reference"] = ref_path;
  j["candidate"] = cand_path;
  j["data"] = data_description;
  j["samples"] = samples;
  j["batches"] = batches;
  j["seconds"] = seconds;
  j["outputs"] = json::array();
  for (const OutputEval& e : outputs) {
    json o;
    o["name"] = e.name;
    o["dtype"] = e.dtype;
    o["shape_first_batch"] = e.shape;
    o["elements"] = e.error.count;
    o["non_finite"] = e.error.non_finite;
    o["max_abs"] = e.error.max_abs;
    o["mean_abs"] = e.error.meanAbs();
    o["cosine"] = e.error.cosineSimilarity();
    o["sqnr_db"] = e.error.sqnr();
    if (e.classifier) {
      json c;
      c["samples"] = e.classes.samples;
      c["per_position"] = e.per_position;
      c["top1_agreement"] = e.classes.top1Agreement();
      c["top5_agreement"] = e.classes.top5Agreement();
      if (e.classes.labelled) {
        c["labels"] = e.classes.labelled;
        c["accuracy_reference"] = e.classes.refAccuracy();
        c["accuracy_candidate"] = e.classes.candAccuracy();
      }
      o["classifier"] = c;
    }
    j["outputs"].push_back(o);
  }
  if (attribution) {
    j["attribution"] = json::array();
    for (const LayerAttribution& a : layers) {
      j["attribution"].push_back({{"node", a.node}, {"op_type", a.op_type}, {"value", a.value}, {"sqnr_db", a.error.sqnr()},
                                  {"cosine", a.error.cosineSimilarity()}, {"mean_abs", a.error.meanAbs()}, {"max_abs", a.error.max_abs},
                                  {"elements", a.error.count}});
      if (a.isolated.done)
        j["attribution"].back()["isolated"] = json{{"sqnr_db", a.isolated.sqnr_db}, {"cosine", a.isolated.cosine}, {"perplexity", a.isolated.perplexity},
                                               {"agreement", a.isolated.agreement}, {"accuracy", a.isolated.accuracy}};
      else if (!a.isolated.note.empty())
        j["attribution"].back()["isolated"] = json{{"note", a.isolated.note}};
    }
    j["attribution_unmatched"] = unmatched;
  }
  if (language_model) {
    json l;
    l["output"] = lm_output;
    l["windows"] = samples;
    l["seq"] = seq;
    l["positions"] = ref_ppl.count;
    l["perplexity_reference"] = ref_ppl.perplexity();
    l["perplexity_candidate"] = cand_ppl.perplexity();
    l["nll_reference"] = ref_ppl.meanNll();
    l["nll_candidate"] = cand_ppl.meanNll();
    l["perplexity_delta"] = cand_ppl.perplexity() / ref_ppl.perplexity() - 1.0;
    const double n = ref_ppl.count ? static_cast<double>(ref_ppl.count) : 1.0;
    l["top1_agreement"] = static_cast<double>(lm_top1_agree) / n;
    l["accuracy_reference"] = static_cast<double>(lm_ref_correct) / n;
    l["accuracy_candidate"] = static_cast<double>(lm_cand_correct) / n;
    j["language_model"] = l;
  }
  return j.dump(2);
}

}  // namespace ptq::driver
