// ReduceMean/Sum/Max/Min/Prod/L1/L2/SumSquare/LogSum/LogSumExp and ArgMax/ArgMin.
// Axes: attribute before opset 18 (ReduceSum: before 13), optional second input after; empty axes
// reduce everything unless noop_with_empty_axes. Reduced axes are moved last (a copy when they are
// not already trailing), then each output element is one row reduced in order, in double for floats.
#include <cmath>
#include <limits>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {

// Rearranges `x` so the reduced axes are trailing. Returns rows x D layout.
Tensor moveAxesLast(ExecContext& ctx, const Tensor& x, const std::vector<bool>& red, int64_t* rows, int64_t* D) {
  const int64_t rank = x.rank();
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < rank; ++d)
    if (!red[d]) perm.push_back(d);
  *rows = 1;
  for (int64_t d : perm) *rows *= x.shape()[d];
  for (int64_t d = 0; d < rank; ++d)
    if (red[d]) perm.push_back(d);
  *D = x.numel() / std::max<int64_t>(*rows, 1);
  bool identity = true;
  for (int64_t d = 0; d < rank; ++d) identity = identity && perm[d] == d;
  if (identity) return x;
  Shape ps(rank);
  std::vector<int64_t> st(rank);
  const std::vector<int64_t> dense = rowMajorStrides(x.shape());
  for (int64_t d = 0; d < rank; ++d) { ps[d] = x.shape()[perm[d]]; st[d] = dense[perm[d]]; }
  Tensor t = ctx.alloc(x.dtype(), ps);
  stridedCopy(x.data(), outData<uint8_t>(t), ir::dtypeBits(x.dtype()) / 8, ps, st, ctx.threads());
  return t;
}

enum class Op { kMean, kSum, kMax, kMin, kProd, kL1, kL2, kSumSquare, kLogSum, kLogSumExp };

Op opOf(const std::string& n) {
  if (n == "ReduceMean") return Op::kMean;
  if (n == "ReduceSum") return Op::kSum;
  if (n == "ReduceMax") return Op::kMax;
  if (n == "ReduceMin") return Op::kMin;
  if (n == "ReduceProd") return Op::kProd;
  if (n == "ReduceL1") return Op::kL1;
  if (n == "ReduceL2") return Op::kL2;
  if (n == "ReduceSumSquare") return Op::kSumSquare;
  if (n == "ReduceLogSum") return Op::kLogSum;
  return Op::kLogSumExp;
}

template <typename T>
void reduceRows(Op op, const T* x, T* y, int64_t rows, int64_t D, int threads) {
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, T>;
  parallelFor(threads, rows, grainFor(D), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      const T* p = x + r * D;
      Acc acc{};
      if (op == Op::kMax || op == Op::kMin) {
        if (D == 0) {
          y[r] = op == Op::kMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
          if constexpr (std::is_floating_point_v<T>) y[r] = op == Op::kMax ? -INFINITY : INFINITY;
          continue;
        }
        T m = p[0];
        if (op == Op::kMax) for (int64_t i = 1; i < D; ++i) m = p[i] > m ? p[i] : m;
        else for (int64_t i = 1; i < D; ++i) m = p[i] < m ? p[i] : m;
        y[r] = m;
        continue;
      }
      if (op == Op::kProd) {
        acc = Acc(1);
        for (int64_t i = 0; i < D; ++i) acc *= p[i];
      } else if (op == Op::kSumSquare || op == Op::kL2) {
        for (int64_t i = 0; i < D; ++i) acc += static_cast<Acc>(p[i]) * p[i];
        if (op == Op::kL2) acc = static_cast<Acc>(std::sqrt(static_cast<double>(acc)));
      } else if (op == Op::kL1) {
        for (int64_t i = 0; i < D; ++i) acc += p[i] < T(0) ? static_cast<Acc>(-p[i]) : static_cast<Acc>(p[i]);
      } else if (op == Op::kLogSumExp) {
        double m = -INFINITY;
        for (int64_t i = 0; i < D; ++i) m = std::max(m, static_cast<double>(p[i]));
        double s2 = 0;
        for (int64_t i = 0; i < D; ++i) s2 += std::exp(static_cast<double>(p[i]) - m);
        acc = static_cast<Acc>(std::isinf(m) ? m : m + std::log(s2));
      } else {
        for (int64_t i = 0; i < D; ++i) acc += p[i];
        if (op == Op::kMean) acc = static_cast<Acc>(D ? acc / static_cast<Acc>(D) : acc);
        else if (op == Op::kLogSum) acc = static_cast<Acc>(std::log(static_cast<double>(acc)));
      }
      y[r] = static_cast<T>(acc);
    }
  });
}

}  // namespace

Kernel makeReduce(const NodeInfo& info, std::vector<DType>& out_types) {
  const std::string& name = info.node.opType();
  const Op op = opOf(name);
  const bool axes_input = name == "ReduceSum" ? info.opset >= 13 : info.opset >= 18;
  info.requireInputs(1, axes_input ? 2 : 1);
  info.requireType(0, {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64, DType::kUInt32,
                       DType::kUInt64, DType::kInt8, DType::kUInt8});
  const bool keepdims = info.attrInt("keepdims", 1) != 0;
  const bool noop = info.attrInt("noop_with_empty_axes", 0) != 0;
  const std::vector<int64_t> attr_axes = info.attrInts("axes");
  out_types = {info.inType(0)};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    std::vector<int64_t> axes = attr_axes;
    if (axes_input && in.size() > 1 && !in[1].empty()) axes = toInts(in[1], "axes");
    const int64_t rank = x.rank();
    if (axes.empty() && noop) { out[0] = x; return; }
    std::vector<bool> red(rank, axes.empty());
    for (int64_t a : axes) red[normAxis(a, rank)] = true;
    Shape so;
    for (int64_t d = 0; d < rank; ++d) {
      if (!red[d]) so.push_back(x.shape()[d]);
      else if (keepdims) so.push_back(1);
    }
    int64_t rows, D;
    const Tensor xt = moveAxesLast(ctx, x, red, &rows, &D);
    Tensor y = ctx.alloc(x.dtype(), so);
    if (!dispatchNumeric(x.dtype(), [&](auto tag) {
          using T = decltype(tag);
          reduceRows<T>(op, xt.data<T>(), outData<T>(y), rows, D, ctx.threads());
        }))
      runError("dtype " + ir::dtypeName(x.dtype()) + " is not supported");
    out[0] = std::move(y);
  };
}

Kernel makeArgMinMax(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool is_max = info.node.opType() == "ArgMax";
  info.requireInputs(1, 1);
  info.requireType(0, {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64, DType::kInt8, DType::kUInt8});
  const int64_t axis_attr = info.attrInt("axis", 0);
  const bool keepdims = info.attrInt("keepdims", 1) != 0;
  const bool last = info.attrInt("select_last_index", 0) != 0;
  out_types = {DType::kInt64};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t rank = x.rank(), axis = normAxis(axis_attr, rank);
    std::vector<bool> red(rank, false);
    red[axis] = true;
    Shape so = x.shape();
    if (keepdims) so[axis] = 1;
    else so.erase(so.begin() + axis);
    int64_t rows, D;
    const Tensor xt = moveAxesLast(ctx, x, red, &rows, &D);
    Tensor y = ctx.alloc(DType::kInt64, so);
    int64_t* py = outData<int64_t>(y);
    dispatchNumeric(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* px = xt.data<T>();
      for (int64_t r = 0; r < rows; ++r) {
        const T* p = px + r * D;
        int64_t best = 0;
        for (int64_t i = 1; i < D; ++i) {
          const bool better = is_max ? (last ? p[i] >= p[best] : p[i] > p[best]) : (last ? p[i] <= p[best] : p[i] < p[best]);
          if (better) best = i;
        }
        py[r] = best;
      }
    });
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
