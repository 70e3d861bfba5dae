// Softmax, LogSoftmax, Hardmax. Before opset 13 the input is coerced to 2-D at `axis` (default 1);
// from 13 on the op normalises along the one axis (default -1). exp is Eigen's vectorised one; the
// row sum uses 8 fixed partial sums, so the order never depends on threads or alignment.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <cmath>
#include <limits>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {
using ArrF = Eigen::Array<float, Eigen::Dynamic, 1>;

float sum8(const float* p, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += p[i + k];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += p[i];
  return s;
}

enum class Op { kSoftmax, kLogSoftmax, kHardmax };

// One contiguous row of length D: y = op(x).
void rowOp(Op op, const float* x, float* y, int64_t D) {
  if (op == Op::kHardmax) {
    int64_t arg = 0;
    for (int64_t i = 1; i < D; ++i)
      if (x[i] > x[arg]) arg = i;
    for (int64_t i = 0; i < D; ++i) y[i] = 0.0f;
    if (D) y[arg] = 1.0f;
    return;
  }
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < D; ++i) m = std::max(m, x[i]);
  if (std::isinf(m) && m < 0) m = 0.0f;  // all -inf: avoid inf - inf
  Eigen::Map<const ArrF> xs(x, D);
  Eigen::Map<ArrF> ys(y, D);
  if (op == Op::kSoftmax) {
    ys = (xs - m).exp();
    const float inv = 1.0f / sum8(y, D);
    ys *= inv;
  } else {  // LogSoftmax: x - m - log(sum(exp(x - m))); y may alias x, so exp goes to scratch
    thread_local std::vector<float> tmp;
    tmp.resize(static_cast<size_t>(D));
    Eigen::Map<ArrF>(tmp.data(), D) = (xs - m).exp();
    const float lse = std::log(sum8(tmp.data(), D));
    ys = xs - m - lse;
  }
}
}  // namespace

Kernel makeSoftmax(const NodeInfo& info, std::vector<DType>& out_types) {
  const std::string& name = info.node.opType();
  const Op op = name == "Softmax" ? Op::kSoftmax : (name == "LogSoftmax" ? Op::kLogSoftmax : Op::kHardmax);
  info.requireInputs(1, 1);
  info.requireType(0, {DType::kFloat32});
  const bool coerce2d = info.opset < 13;
  const int64_t axis_attr = info.attrInt("axis", coerce2d ? 1 : -1);
  out_types = {DType::kFloat32};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    expectType(in[0], DType::kFloat32, "input");
    const Shape shape = in[0].shape();
    const int64_t rank = static_cast<int64_t>(shape.size());
    const int64_t axis = rank == 0 ? 0 : normAxis(axis_attr, rank);
    int64_t outer, D, inner;
    if (coerce2d) {
      outer = dimProduct(shape, 0, axis);
      D = dimProduct(shape, axis, rank);
      inner = 1;
    } else {
      outer = dimProduct(shape, 0, axis);
      D = rank == 0 ? 1 : shape[axis];
      inner = dimProduct(shape, axis + 1, rank);
    }
    InPlace ip = inPlace(ctx, in[0], DType::kFloat32);
    const float* px = static_cast<const float*>(ip.x);
    float* py = outData<float>(ip.y);
    if (inner == 1) {
      parallelFor(ctx.threads(), outer, grainFor(8 * D), [&](int64_t s, int64_t e) {
        for (int64_t r = s; r < e; ++r) rowOp(op, px + r * D, py + r * D, D);
      });
    } else {
      parallelFor(ctx.threads(), outer * inner, grainFor(8 * D), [&](int64_t s, int64_t e) {
        std::vector<float> xr(D), yr(D);
        for (int64_t t = s; t < e; ++t) {
          const int64_t o = t / inner, i = t % inner;
          const float* base = px + o * D * inner + i;
          for (int64_t d = 0; d < D; ++d) xr[d] = base[d * inner];
          rowOp(op, xr.data(), yr.data(), D);
          float* ob = py + o * D * inner + i;
          for (int64_t d = 0; d < D; ++d) ob[d * inner] = yr[d];
        }
      });
    }
    out[0] = std::move(ip.y);
  };
}

}  // namespace ptq::runtime::ops
