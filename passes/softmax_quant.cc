#include "passes/softmax_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ptq::passes {

namespace {

ir::Value* scalar(ir::Graph& g, const std::string& name, float v) {
  return g.addInitializer(g.uniqueName(name), ir::Tensor::fromFloats({}, {v}));
}

}  // namespace

float softmaxQuantize(float x, float delta, int bits, SoftmaxGrid grid) {
  const float levels = static_cast<float>(1 << bits);
  if (grid == SoftmaxGrid::kUniform) {
    const float s = delta / (levels - 1.0f);
    return std::min(std::max(std::nearbyint(x / s), 0.0f), levels - 1.0f) * s;
  }
  // The same float32 steps as the graph: Div, Log, Mul, Round (half to even), Less, Clip, Mul, Exp, Mul.
  const float c = std::nearbyint(std::log(x / delta) * static_cast<float>(-2.0 / std::log(2.0)));
  if (!(c < levels)) return 0.0f;  // also x = 0 (c = +inf)
  const float cc = std::min(std::max(c, 0.0f), levels - 1.0f);
  return std::exp(cc * static_cast<float>(-std::log(2.0) / 2.0)) * delta;
}

float chooseSoftmaxClip(std::vector<float>& sample, int bits, SoftmaxGrid grid, double* chosen_percentile, double* error) {
  std::sort(sample.begin(), sample.end());
  double best_err = std::numeric_limits<double>::infinity(), best_p = 1.0;
  float best = 1.0f;
  for (double p : {0.999, 0.9999, 0.99999, 1.0}) {
    if (sample.empty()) break;
    if (p == 1.0 && grid == SoftmaxGrid::kLogSqrt2) break;  // RepQ-ViT's candidates
    const size_t at = std::min(sample.size() - 1, static_cast<size_t>(p * static_cast<double>(sample.size() - 1) + 0.5));
    const float delta = sample[at];
    if (!(delta > 0.0f)) continue;
    double err = 0;
    for (float x : sample) {
      const double d = static_cast<double>(x) - softmaxQuantize(x, delta, bits, grid);
      err += d * d;
    }
    if (err < best_err) {
      best_err = err;
      best_p = p;
      best = delta;
    }
  }
  if (chosen_percentile) *chosen_percentile = best_p;
  if (error) *error = std::isfinite(best_err) ? best_err : 0.0;
  return best;
}

int64_t insertSoftmaxQuantizer(ir::Graph& g, ir::Node* reader, int slot, float delta, int bits, SoftmaxGrid grid,
                               const std::string& base) {
  ir::Value* x = reader->input(static_cast<size_t>(slot));
  int64_t added = 0;
  auto op = [&](const std::string& type, const std::vector<ir::Value*>& in, ir::DType t = ir::DType::kFloat32) {
    ir::Node* n = g.addNode(type, in, {g.uniqueName(base + "_" + type + "_output")}, g.uniqueName(base + "/" + type), "", reader);
    n->output(0)->dtype = t;
    ++added;
    return n->output(0);
  };
  const float levels = static_cast<float>(1 << bits);
  if (grid == SoftmaxGrid::kUniform) {
    const float s = delta / (levels - 1.0f);
    ir::Value* r = op("Div", {x, scalar(g, base + "_scale", s)});
    ir::Value* q = op("Round", {r});
    ir::Value* qc = op("Clip", {q, scalar(g, base + "_zero", 0.0f), scalar(g, base + "_top", levels - 1.0f)});
    reader->setInput(static_cast<size_t>(slot), op("Mul", {qc, scalar(g, base + "_scale_out", s)}));
    return added;
  }
  ir::Value* r = op("Div", {x, scalar(g, base + "_delta", delta)});
  ir::Value* l = op("Log", {r});
  ir::Value* c = op("Mul", {l, scalar(g, base + "_m2_over_ln2", static_cast<float>(-2.0 / std::log(2.0)))});
  ir::Value* q = op("Round", {c});
  ir::Value* keep = op("Less", {q, scalar(g, base + "_levels", levels)}, ir::DType::kBool);
  ir::Value* qc = op("Clip", {q, scalar(g, base + "_zero", 0.0f), scalar(g, base + "_top", levels - 1.0f)});
  ir::Value* e = op("Mul", {qc, scalar(g, base + "_mln2_over_2", static_cast<float>(-std::log(2.0) / 2.0))});
  ir::Value* p = op("Exp", {e});
  ir::Value* y = op("Mul", {p, scalar(g, base + "_delta_out", delta)});
  ir::Value* out = op("Where", {keep, y, scalar(g, base + "_zero_out", 0.0f)});
  reader->setInput(static_cast<size_t>(slot), out);
  return added;
}

}  // namespace ptq::passes
