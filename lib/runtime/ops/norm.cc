// BatchNormalization (inference), LayerNormalization (+ com.microsoft SkipLayerNormalization),
// InstanceNormalization and SimplifiedLayerNormalization (RMSNorm). Statistics are accumulated in
// double, per row, in a fixed order.
#include <cmath>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {
// scale/bias broadcast to `n` trailing elements (numel n, or broadcastable to `norm_shape`).
std::vector<float> expandTo(const Tensor& t, const Shape& norm_shape) {
  const int64_t n = ir::shapeNumel(norm_shape);
  std::vector<float> v = t.toFloats();
  if (static_cast<int64_t>(v.size()) == n) return v;
  if (broadcastShapes(t.shape(), norm_shape) != norm_shape)
    runError("scale/bias " + typeShape(t) + " does not broadcast to " + ir::shapeToString(norm_shape));
  std::vector<float> out(static_cast<size_t>(n));
  stridedCopy(v.data(), out.data(), 4, norm_shape, broadcastStrides(t.shape(), norm_shape), 1);
  return out;
}

bool hasOutput(const ir::Node& n, size_t i) { return i < n.numOutputs() && n.output(i); }
}  // namespace

Kernel makeBatchNorm(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(5, 5);
  info.requireType(0, {DType::kFloat32});
  for (size_t i = 1; i < 5; ++i) info.requireType(i, {DType::kFloat32});
  if (info.attrInt("training_mode", 0) != 0) info.unsupported("training_mode=1");
  for (size_t i = 1; i < info.node.numOutputs(); ++i)
    if (info.node.output(i)) info.unsupported("training outputs (running mean/var)");
  const float eps = info.attrFloat("epsilon", 1e-5f);
  out_types = {DType::kFloat32};
  return [eps](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    if (x.rank() < 2) runError("X must have rank >= 2, got " + typeShape(x));
    const int64_t N = x.shape()[0], C = x.shape()[1], S = dimProduct(x.shape(), 2, x.rank());
    for (size_t i = 1; i < 5; ++i)
      if (in[i].numel() != C) runError("input " + std::to_string(i) + " " + typeShape(in[i]) + " does not have C elements");
    std::vector<float> a(C), b(C);
    const float *sc = in[1].data<float>(), *bi = in[2].data<float>(), *mu = in[3].data<float>(), *va = in[4].data<float>();
    for (int64_t c = 0; c < C; ++c) {
      a[c] = sc[c] / std::sqrt(va[c] + eps);
      b[c] = bi[c] - mu[c] * a[c];
    }
    InPlace ip = inPlace(ctx, in[0], DType::kFloat32);
    const float* px = static_cast<const float*>(ip.x);
    float* py = outData<float>(ip.y);
    parallelFor(ctx.threads(), N * C, grainFor(S), [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const float av = a[t % C], bv = b[t % C];
        for (int64_t i = 0; i < S; ++i) py[t * S + i] = px[t * S + i] * av + bv;
      }
    });
    out[0] = std::move(ip.y);
  };
}

Kernel makeLayerNorm(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool skip = info.node.opType() == "SkipLayerNormalization";
  if (skip) info.requireInputs(3, 5);
  else info.requireInputs(2, 3);
  info.requireType(0, {DType::kFloat32});
  const int64_t axis_attr = skip ? -1 : info.attrInt("axis", -1);
  const float eps = info.attrFloat("epsilon", skip ? 1e-12f : 1e-5f);
  out_types.assign(info.node.numOutputs(), DType::kFloat32);
  if (skip && hasOutput(info.node, 1)) info.unsupported("mean output of SkipLayerNormalization");
  if (skip && hasOutput(info.node, 2)) info.unsupported("inv_std output of SkipLayerNormalization");
  const bool want_mean = !skip && hasOutput(info.node, 1), want_inv = !skip && hasOutput(info.node, 2);
  const bool want_sum = skip && hasOutput(info.node, 3);
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    Tensor x = std::move(in[0]);
    expectType(x, DType::kFloat32, "X");
    const size_t gi = skip ? 2 : 1, bi = skip ? 3 : 2;
    if (skip) {  // x = input + skip (+ bias)
      Tensor sum = ctx.alloc(DType::kFloat32, x.shape());
      const float *a = x.data<float>(), *s = in[1].data<float>();
      if (in[1].numel() != x.numel()) runError("skip must have the input's shape");
      float* o = outData<float>(sum);
      const int64_t n = x.numel();
      const float* bias = in.size() > 4 && !in[4].empty() ? in[4].data<float>() : nullptr;
      const int64_t hb = bias ? in[4].numel() : 1;
      for (int64_t i = 0; i < n; ++i) o[i] = a[i] + s[i] + (bias ? bias[i % hb] : 0.0f);
      x = std::move(sum);
    }
    const int64_t axis = normAxis(axis_attr, x.rank());
    const Shape norm_shape(x.shape().begin() + axis, x.shape().end());
    const int64_t D = ir::shapeNumel(norm_shape), rows = x.numel() / std::max<int64_t>(D, 1);
    const std::vector<float> gamma = expandTo(in[gi], norm_shape);
    const bool has_beta = in.size() > bi && !in[bi].empty();
    const std::vector<float> beta = has_beta ? expandTo(in[bi], norm_shape) : std::vector<float>();
    Shape stat_shape = x.shape();
    for (int64_t d = axis; d < x.rank(); ++d) stat_shape[d] = 1;
    Tensor mean_t, inv_t;
    if (want_mean) mean_t = ctx.alloc(DType::kFloat32, stat_shape);
    if (want_inv) inv_t = ctx.alloc(DType::kFloat32, stat_shape);
    Tensor sum_out = want_sum ? x : Tensor();
    InPlace ip = inPlace(ctx, x, DType::kFloat32);
    const float* px = static_cast<const float*>(ip.x);
    float* py = outData<float>(ip.y);
    parallelFor(ctx.threads(), rows, grainFor(4 * D), [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r) {
        const float* xr = px + r * D;
        float* yr = py + r * D;
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < D; ++i) sum += xr[i];
        const double mu = sum / static_cast<double>(D);
        for (int64_t i = 0; i < D; ++i) sq += (xr[i] - mu) * (xr[i] - mu);
        const double inv = 1.0 / std::sqrt(sq / static_cast<double>(D) + eps);
        const float m = static_cast<float>(mu), iv = static_cast<float>(inv);
        if (has_beta) for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - m) * iv * gamma[i] + beta[i];
        else for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - m) * iv * gamma[i];
        if (want_mean) outData<float>(mean_t)[r] = m;
        if (want_inv) outData<float>(inv_t)[r] = iv;
      }
    });
    out[0] = std::move(ip.y);
    if (want_mean) out[1] = std::move(mean_t);
    if (want_inv) out[2] = std::move(inv_t);
    if (want_sum) out[3] = std::move(sum_out);
  };
}

Kernel makeSimplifiedLayerNorm(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 2);
  info.requireType(0, {DType::kFloat32});
  for (size_t i = 1; i < info.node.numOutputs(); ++i)
    if (info.node.output(i)) info.unsupported("the inv_std_var output");
  const int64_t axis_attr = info.attrInt("axis", -1);
  const float eps = info.attrFloat("epsilon", 1e-5f);
  out_types = {DType::kFloat32};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const int64_t axis = normAxis(axis_attr, in[0].rank());
    const Shape norm_shape(in[0].shape().begin() + axis, in[0].shape().end());
    const int64_t D = ir::shapeNumel(norm_shape), rows = in[0].numel() / std::max<int64_t>(D, 1);
    const std::vector<float> gamma = expandTo(in[1], norm_shape);
    InPlace ip = inPlace(ctx, in[0], DType::kFloat32);
    const float* px = static_cast<const float*>(ip.x);
    float* py = outData<float>(ip.y);
    parallelFor(ctx.threads(), rows, grainFor(3 * D), [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r) {
        double sq = 0;
        for (int64_t i = 0; i < D; ++i) sq += static_cast<double>(px[r * D + i]) * px[r * D + i];
        const float iv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(D) + eps));
        for (int64_t i = 0; i < D; ++i) py[r * D + i] = px[r * D + i] * iv * gamma[i];
      }
    });
    out[0] = std::move(ip.y);
  };
}

Kernel makeInstanceNorm(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(3, 3);
  info.requireType(0, {DType::kFloat32});
  const float eps = info.attrFloat("epsilon", 1e-5f);
  out_types = {DType::kFloat32};
  return [eps](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    if (x.rank() < 3) runError("X must have rank >= 3, got " + typeShape(x));
    const int64_t C = x.shape()[1], S = dimProduct(x.shape(), 2, x.rank()), rows = x.numel() / std::max<int64_t>(S, 1);
    if (in[1].numel() != C || in[2].numel() != C) runError("scale and B must have C elements");
    const float *sc = in[1].data<float>(), *bi = in[2].data<float>();
    InPlace ip = inPlace(ctx, in[0], DType::kFloat32);
    const float* px = static_cast<const float*>(ip.x);
    float* py = outData<float>(ip.y);
    parallelFor(ctx.threads(), rows, grainFor(3 * S), [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r) {
        const float* xr = px + r * S;
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < S; ++i) sum += xr[i];
        const double mu = sum / static_cast<double>(S);
        for (int64_t i = 0; i < S; ++i) sq += (xr[i] - mu) * (xr[i] - mu);
        const float iv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(S) + eps));
        const float m = static_cast<float>(mu), a = sc[r % C] * iv, b = bi[r % C];
        for (int64_t i = 0; i < S; ++i) py[r * S + i] = (xr[i] - m) * a + b;
      }
    });
    out[0] = std::move(ip.y);
  };
}

}  // namespace ptq::runtime::ops
