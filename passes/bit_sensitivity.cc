#include "passes/bit_sensitivity.h"

#include <algorithm>
#include <cmath>

#include "lib/calib/calibration.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"
#include "passes/hessian.h"
#include "passes/weight_quantizer.h"

namespace ptq::passes {

WeightCandidate weightCandidate(const pipeline::LayerPlan& layer, int bits, int clip_steps, float clip_min_ratio) {
  WeightCandidate c;
  c.bits = bits;
  const ir::Tensor& w = layer.weight->initializer;
  if (bits == kFloatBits) {
    c.bytes = static_cast<int64_t>(w.numel()) * 4;
    return c;
  }
  pipeline::WeightSettings s = layer.weights;
  s.bits = bits;
  try {
    c.quant = quantizeWeight(w, layer.reduce_axis, layer.channel_axis, s, clip_steps, clip_min_ratio);
  } catch (const Error& e) {
    throw e.withContext(layer.label());
  }
  c.quant->method = "rtn";
  c.sq_error = c.quant->mse * static_cast<double>(w.numel());
  c.bytes = storedBytes(*c.quant);
  return c;
}

int64_t storedBytesAt(const ir::QuantizedWeight& q, int bits) {
  return (q.codes.numel() * bits + 7) / 8 + static_cast<int64_t>(q.scales.numel()) * 4 +
         (q.zero_points.empty() ? 0 : (q.zero_points.numel() * bits + 7) / 8);
}

int64_t storedBytes(const ir::QuantizedWeight& q) { return storedBytesAt(q, q.bits); }

double meanHessianDiagonal(const pipeline::LayerHessian& h) {
  double tr = 0;
  for (int64_t g = 0; g < h.groups; ++g) {
    const float* m = h.matrix(g);
    for (int64_t i = 0; i < h.dim; ++i) tr += m[i * h.dim + i];
  }
  const int64_t n = h.dim * h.groups;
  return n ? tr / static_cast<double>(n) : 0.0;
}

std::map<pipeline::LayerPlan*, std::string> collectHessians(runtime::Session& session,
                                                            const std::vector<std::map<std::string, ir::Tensor>>& batches,
                                                            const std::vector<pipeline::LayerPlan*>& layers) {
  std::map<pipeline::LayerPlan*, std::string> none;
  std::map<std::string, std::unique_ptr<HessianAccumulator>> accs;  // by InputUnfold key
  std::map<std::string, std::vector<pipeline::LayerPlan*>> users;
  std::map<std::string, std::vector<HessianAccumulator*>> by_input;
  for (pipeline::LayerPlan* l : layers) {
    std::string why;
    std::optional<InputUnfold> u;
    if (!l->scope.empty()) why = "inside a subgraph (" + l->scope + ")";
    else if (!(u = inputUnfold(*l->node, *l, &why))) {
    } else if (l->node->input(0)->isConstant()) why = "its input is a constant";
    else if (session.valueType(l->node->input(0)->name()) != ir::DType::kFloat32) why = "its input is not float32";
    if (!why.empty()) {
      none[l] = why;
      continue;
    }
    const std::string input = l->node->input(0)->name();
    const std::string key = u->key(input);
    if (!accs.count(key)) {
      accs[key] = std::make_unique<HessianAccumulator>(*u, session.threads());
      by_input[input].push_back(accs[key].get());
    }
    users[key].push_back(l);
  }
  std::map<std::string, runtime::Session::TapFn> taps;
  for (auto& [input, list] : by_input)
    taps[input] = [list = list, input = input](const std::string&, const ir::Tensor& t) {
      for (HessianAccumulator* a : list) {
        try {
          a->add(t);
        } catch (const Error& e) {
          throw e.withContext("bit-allocation: input '" + input + "'");
        }
      }
    };
  for (const auto& feeds : batches) session.run(feeds, {}, taps);
  for (auto& [key, acc] : accs) {
    std::shared_ptr<const pipeline::LayerHessian> h = acc->finish("float");
    for (pipeline::LayerPlan* l : users.at(key)) l->hessian = h;
  }
  return none;
}

namespace {

bool rowsAreProbabilities(const ir::Tensor& t) {
  const int64_t c = t.shape().back();
  const int64_t rows = t.numel() / c;
  const float* x = t.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t j = 0; j < c; ++j) {
      if (!(x[r * c + j] >= 0)) return false;
      s += x[r * c + j];
    }
    if (std::fabs(s - 1.0) > 1e-3) return false;
  }
  return rows > 0;
}

}  // namespace

OutputErrorMeter::OutputErrorMeter(runtime::Session& reference, const calib::CalibrationSet& calibration, int64_t samples,
                                   OutputMetric metric)
    : metric_(metric) {
  for (int64_t b = 0; b < calibration.numBatches() && samples_ < samples; ++b) {
    batches_.push_back(calibration.batch(b));
    samples_ += batches_.back().begin()->second.shape()[0];
  }
  bool first = true, probs = true;
  for (const auto& feeds : batches_) {
    std::map<std::string, ir::Tensor> out = reference.run(feeds);
    std::map<std::string, ir::Tensor> kept;
    for (auto& [name, t] : out) {
      if (t.dtype() != ir::DType::kFloat32 || t.rank() == 0 || t.numel() == 0) continue;
      kept[name] = t;
      if (first) outputs_.push_back(name);
      probs = probs && rowsAreProbabilities(t);
    }
    first = false;
    reference_.push_back(std::move(kept));
  }
  if (outputs_.empty()) throwInput("bit-allocation: the model has no float output to measure errors on");
  probabilities_ = probs;
}

double OutputErrorMeter::error(const ir::Tensor& ref, const ir::Tensor& got) const {
  const int64_t n = ref.numel();
  const float* r = ref.data<float>();
  const float* q = got.data<float>();
  if (metric_ == OutputMetric::kMse) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(q[i]) - r[i];
      e += d * d;
      s += static_cast<double>(r[i]) * r[i];
    }
    return s > 0 ? e / s : e / static_cast<double>(n);
  }
  // KL(p_ref || p_got) per row of the last axis, averaged over the rows.
  const int64_t c = ref.shape().back();
  const int64_t rows = n / c;
  double kl = 0;
  std::vector<double> lp(static_cast<size_t>(c)), lq(static_cast<size_t>(c));
  auto logProbs = [&](const float* x, std::vector<double>& out) {
    if (probabilities_) {
      for (int64_t j = 0; j < c; ++j) out[static_cast<size_t>(j)] = std::log(std::max<double>(x[j], 1e-30));
      return;
    }
    double m = -INFINITY;
    for (int64_t j = 0; j < c; ++j) m = std::max<double>(m, x[j]);
    double s = 0;
    for (int64_t j = 0; j < c; ++j) s += std::exp(x[j] - m);
    const double lse = m + std::log(s);
    for (int64_t j = 0; j < c; ++j) out[static_cast<size_t>(j)] = x[j] - lse;
  };
  for (int64_t row = 0; row < rows; ++row) {
    logProbs(r + row * c, lp);
    logProbs(q + row * c, lq);
    double k = 0;
    for (size_t j = 0; j < lp.size(); ++j) k += std::exp(lp[j]) * (lp[j] - lq[j]);
    kl += std::max(0.0, k);
  }
  return rows ? kl / static_cast<double>(rows) : 0.0;
}

double OutputErrorMeter::measure(runtime::Session& session) {
  double total = 0;
  for (size_t b = 0; b < batches_.size(); ++b) {
    std::map<std::string, ir::Tensor> out = session.run(batches_[b], outputs_);
    for (const std::string& name : outputs_) {
      auto it = reference_[b].find(name);
      auto jt = out.find(name);
      if (it == reference_[b].end() || jt == out.end() || it->second.shape() != jt->second.shape())
        throwInternal("bit-allocation: output '" + name + "' changed shape between runs");
      total += error(it->second, jt->second) * static_cast<double>(it->second.shape()[0]);
    }
  }
  ++runs_;
  return samples_ ? total / static_cast<double>(samples_) : 0.0;
}

}  // namespace ptq::passes
