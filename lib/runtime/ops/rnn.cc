// LSTM (forward / reverse / bidirectional, bias, peepholes, sequence_lens, initial states, clip,
// input_forget, layout 0/1, the standard activation functions). The input projection of all time
// steps is one GEMM; each step adds H_{t-1}·Rᵀ (one GEMM) and applies the gates. Gate order i, o, f, c.
#include <cmath>

#include "lib/runtime/gemm.h"
#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {

const char* const kActNames[] = {"Sigmoid", "Tanh",   "Relu", "HardSigmoid", "LeakyRelu", "ThresholdedRelu",
                                  "Affine",  "ScaledTanh", "Elu",  "Softsign",    "Softplus"};

struct Act {
  int kind = 0;  // index into kActNames
  float alpha = 0, beta = 0;
  float operator()(float x) const {
    switch (kind) {
      case 0: return 1.0f / (1.0f + std::exp(-x));
      case 1: return std::tanh(x);
      case 2: return x > 0 ? x : 0.0f;
      case 3: return std::max(0.0f, std::min(1.0f, alpha * x + beta));
      case 4: return x >= 0 ? x : alpha * x;
      case 5: return x > alpha ? x : 0.0f;
      case 6: return alpha * x + beta;
      case 7: return alpha * std::tanh(beta * x);
      case 8: return x >= 0 ? x : alpha * (std::exp(x) - 1.0f);
      case 9: return x / (1.0f + std::abs(x));
      default: return std::log1p(std::exp(x));
    }
  }
};

Act makeAct(const std::string& name, size_t i, const std::vector<float>& alphas, const std::vector<float>& betas,
            const NodeInfo& info) {
  Act a;
  a.kind = -1;
  for (int k = 0; k < 11; ++k)
    if (name == kActNames[k]) a.kind = k;
  if (a.kind < 0) info.unsupported("activation '" + name + "'");
  const float da = name == "HardSigmoid" ? 0.2f : (name == "LeakyRelu" ? 0.01f : 1.0f);
  const float db = name == "HardSigmoid" ? 0.5f : 0.0f;
  a.alpha = i < alphas.size() ? alphas[i] : da;
  a.beta = i < betas.size() ? betas[i] : db;
  return a;
}

}  // namespace

Kernel makeLSTM(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(3, 8);
  for (size_t i : {0, 1, 2, 3, 5, 6, 7}) info.requireType(i, {DType::kFloat32});
  info.requireType(4, {DType::kInt32});
  const std::string dir = info.attrString("direction", "forward");
  if (dir != "forward" && dir != "reverse" && dir != "bidirectional") info.unsupported("direction '" + dir + "'");
  const int64_t dirs = dir == "bidirectional" ? 2 : 1;
  const int64_t H = info.attrInt("hidden_size", 0);
  if (H <= 0 && !info.constInput(2)) info.unsupported("hidden_size missing");
  const bool input_forget = info.attrInt("input_forget", 0) != 0;
  const bool has_clip = info.node.hasAttr("clip");
  const float clip = info.attrFloat("clip", 0.0f);
  const int64_t layout = info.attrInt("layout", 0);
  auto names_it = info.node.attrs.find("activations");
  std::vector<std::string> names;
  if (names_it != info.node.attrs.end()) names = names_it->second.strings;
  if (names.empty())
    for (int64_t d = 0; d < dirs; ++d) names.insert(names.end(), {"Sigmoid", "Tanh", "Tanh"});
  if (static_cast<int64_t>(names.size()) != 3 * dirs) info.unsupported("activations must list 3 per direction");
  const std::vector<float> alphas = info.attrFloats("activation_alpha"), betas = info.attrFloats("activation_beta");
  std::vector<Act> acts;
  for (size_t i = 0; i < names.size(); ++i) acts.push_back(makeAct(names[i], i, alphas, betas, info));
  out_types.assign(info.node.numOutputs(), DType::kFloat32);
  const bool want_y = info.node.numOutputs() > 0 && info.node.output(0);
  const bool want_h = info.node.numOutputs() > 1 && info.node.output(1);
  const bool want_c = info.node.numOutputs() > 2 && info.node.output(2);

  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& X = in[0];
    const Tensor& W = in[1];
    const Tensor& R = in[2];
    if (X.rank() != 3) runError("X must be 3-D, got " + typeShape(X));
    const int64_t S = layout ? X.shape()[1] : X.shape()[0], B = layout ? X.shape()[0] : X.shape()[1], I = X.shape()[2];
    const int64_t Hs = H > 0 ? H : R.shape().back();
    if (W.shape() != Shape{dirs, 4 * Hs, I}) runError("W " + typeShape(W) + " should be [" + std::to_string(dirs) + ", 4H, input]");
    if (R.shape() != Shape{dirs, 4 * Hs, Hs}) runError("R " + typeShape(R) + " should be [dirs, 4H, H]");
    auto opt = [&](size_t i) -> const Tensor* { return in.size() > i && !in[i].empty() ? &in[i] : nullptr; };
    const Tensor *bias = opt(3), *lens_t = opt(4), *h0 = opt(5), *c0 = opt(6), *peep = opt(7);
    std::vector<int64_t> lens(B, S);
    if (lens_t) {
      const std::vector<int64_t> l = toInts(*lens_t, "sequence_lens");
      if (static_cast<int64_t>(l.size()) != B) runError("sequence_lens must have batch_size entries");
      for (int64_t b = 0; b < B; ++b) lens[b] = std::clamp<int64_t>(l[b], 0, S);
    }
    // X as [S, B, I] contiguous.
    std::vector<float> xs(static_cast<size_t>(S * B * I));
    for (int64_t t = 0; t < S; ++t)
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(&xs[(t * B + b) * I], X.data<float>() + (layout ? (b * S + t) : (t * B + b)) * I, sizeof(float) * I);
    Tensor Y, Yh, Yc;
    std::vector<float> y(static_cast<size_t>(S * dirs * B * Hs), 0.0f), yh(dirs * B * Hs), yc(dirs * B * Hs);
    for (int64_t d = 0; d < dirs; ++d) {
      const bool reverse = dir == "reverse" || d == 1;
      const float* w = W.data<float>() + d * 4 * Hs * I;
      const float* r = R.data<float>() + d * 4 * Hs * Hs;
      // xw[t, b, 4H] = x W^T + Wb + Rb
      std::vector<float> xw(static_cast<size_t>(S * B * 4 * Hs), 0.0f);
      if (bias) {
        const float* pb = bias->data<float>() + d * 8 * Hs;
        for (int64_t row = 0; row < S * B; ++row)
          for (int64_t k = 0; k < 4 * Hs; ++k) xw[row * 4 * Hs + k] = pb[k] + pb[4 * Hs + k];
      }
      GemmArgs g;
      g.trans_b = true;
      g.M = S * B; g.N = 4 * Hs; g.K = I;
      g.A = xs.data(); g.lda = I;
      g.B = w; g.ldb = I;
      g.beta = 1.0f;
      g.C = xw.data(); g.ldc = 4 * Hs;
      sgemmParallel(g, ctx.threads());
      std::vector<float> h(B * Hs, 0.0f), c(B * Hs, 0.0f), gates(B * 4 * Hs);
      if (h0) std::memcpy(h.data(), h0->data<float>() + d * B * Hs, sizeof(float) * B * Hs);
      if (c0) std::memcpy(c.data(), c0->data<float>() + d * B * Hs, sizeof(float) * B * Hs);
      const float* pp = peep ? peep->data<float>() + d * 3 * Hs : nullptr;
      const Act &f = acts[d * 3], &gact = acts[d * 3 + 1], &hact = acts[d * 3 + 2];
      for (int64_t s = 0; s < S; ++s) {
        // gates = xw[t_b] + h R^T (rows of finished sequences are ignored)
        for (int64_t b = 0; b < B; ++b) {
          const int64_t t = reverse ? lens[b] - 1 - s : s;
          if (s < lens[b]) std::memcpy(&gates[b * 4 * Hs], &xw[(t * B + b) * 4 * Hs], sizeof(float) * 4 * Hs);
        }
        GemmArgs q;
        q.trans_b = true;
        q.M = B; q.N = 4 * Hs; q.K = Hs;
        q.A = h.data(); q.lda = Hs;
        q.B = r; q.ldb = Hs;
        q.beta = 1.0f;
        q.C = gates.data(); q.ldc = 4 * Hs;
        sgemm(q);
        for (int64_t b = 0; b < B; ++b) {
          if (s >= lens[b]) continue;
          const int64_t t = reverse ? lens[b] - 1 - s : s;
          float* gb = &gates[b * 4 * Hs];
          for (int64_t k = 0; k < Hs; ++k) {
            float gi = gb[k], go = gb[Hs + k], gf = gb[2 * Hs + k], gc = gb[3 * Hs + k];
            const float cp = c[b * Hs + k];
            if (pp) { gi += pp[k] * cp; gf += pp[2 * Hs + k] * cp; }
            if (has_clip) {
              gi = std::clamp(gi, -clip, clip); gf = std::clamp(gf, -clip, clip);
              gc = std::clamp(gc, -clip, clip); go = std::clamp(go, -clip, clip);
            }
            const float it = f(gi);
            const float ft = input_forget ? 1.0f - it : f(gf);
            const float ct = gact(gc);
            const float cn = ft * cp + it * ct;
            if (pp) { go += pp[Hs + k] * cn; if (has_clip) go = std::clamp(go, -clip, clip); }
            const float ot = f(go);
            const float hn = ot * hact(cn);
            c[b * Hs + k] = cn;
            h[b * Hs + k] = hn;
            y[((t * dirs + d) * B + b) * Hs + k] = hn;
          }
        }
      }
      std::memcpy(&yh[d * B * Hs], h.data(), sizeof(float) * B * Hs);
      std::memcpy(&yc[d * B * Hs], c.data(), sizeof(float) * B * Hs);
    }
    if (want_y) {
      if (layout) {  // [B, S, dirs, H]
        Y = ctx.alloc(DType::kFloat32, {B, S, dirs, Hs});
        for (int64_t t = 0; t < S; ++t)
          for (int64_t d = 0; d < dirs; ++d)
            for (int64_t b = 0; b < B; ++b)
              std::memcpy(outData<float>(Y) + ((b * S + t) * dirs + d) * Hs, &y[((t * dirs + d) * B + b) * Hs], sizeof(float) * Hs);
      } else {
        Y = ctx.alloc(DType::kFloat32, {S, dirs, B, Hs});
        std::memcpy(outData<float>(Y), y.data(), y.size() * sizeof(float));
      }
      out[0] = std::move(Y);
    }
    auto state = [&](const std::vector<float>& v) {
      Tensor t = layout ? ctx.alloc(DType::kFloat32, {B, dirs, Hs}) : ctx.alloc(DType::kFloat32, {dirs, B, Hs});
      for (int64_t d = 0; d < dirs; ++d)
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(outData<float>(t) + (layout ? (b * dirs + d) : (d * B + b)) * Hs, &v[(d * B + b) * Hs], sizeof(float) * Hs);
      return t;
    };
    if (want_h) out[1] = state(yh);
    if (want_c) out[2] = state(yc);
  };
}

}  // namespace ptq::runtime::ops
