// Indexing: Gather, GatherElements, Slice (starts/ends/axes attributes before opset 10, inputs
// with steps after), Trilu.
#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {
size_t elemBytes(const Tensor& t) { return static_cast<size_t>(ir::dtypeBits(t.dtype()) / 8); }
}  // namespace

Kernel makeGather(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 2);
  requireMovable(info, 0);
  info.requireType(1, {DType::kInt64, DType::kInt32});
  const int64_t axis_attr = info.attrInt("axis", 0);
  out_types = {info.inType(0)};
  return [axis_attr](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t r = x.rank(), axis = normAxis(axis_attr, r), len = x.shape()[axis];
    std::vector<int64_t> idx = toInts(in[1], "indices");
    for (int64_t& i : idx) {
      if (i < -len || i >= len) runError("index " + std::to_string(i) + " out of range for axis of size " + std::to_string(len));
      if (i < 0) i += len;
    }
    Shape so(x.shape().begin(), x.shape().begin() + axis);
    so.insert(so.end(), in[1].shape().begin(), in[1].shape().end());
    so.insert(so.end(), x.shape().begin() + axis + 1, x.shape().end());
    Tensor y = ctx.alloc(x.dtype(), so);
    const size_t eb = elemBytes(x);
    const int64_t outer = dimProduct(x.shape(), 0, axis);
    const int64_t inner = dimProduct(x.shape(), axis + 1, r) * static_cast<int64_t>(eb);
    const int64_t n = static_cast<int64_t>(idx.size());
    const uint8_t* px = static_cast<const uint8_t*>(x.data());
    uint8_t* py = outData<uint8_t>(y);
    parallelFor(ctx.threads(), outer * n, grainFor(inner / 4 + 1), [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const int64_t o = t / n, k = t % n;
        std::memcpy(py + t * inner, px + (o * len + idx[k]) * inner, static_cast<size_t>(inner));
      }
    });
    out[0] = std::move(y);
  };
}

Kernel makeGatherElements(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 2);
  requireMovable(info, 0);
  info.requireType(1, {DType::kInt64, DType::kInt32});
  const int64_t axis_attr = info.attrInt("axis", 0);
  out_types = {info.inType(0)};
  return [axis_attr](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t r = x.rank(), axis = normAxis(axis_attr, r), len = x.shape()[axis];
    const Shape& si = in[1].shape();
    if (static_cast<int64_t>(si.size()) != r) runError("indices must have the data's rank");
    const std::vector<int64_t> idx = toInts(in[1], "indices");
    Tensor y = ctx.alloc(x.dtype(), si);
    const std::vector<int64_t> xs = rowMajorStrides(x.shape());
    dispatchBytes(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* px = x.data<T>();
      T* py = outData<T>(y);
      std::vector<int64_t> pos(r, 0);
      for (size_t i = 0; i < idx.size(); ++i) {
        int64_t k = idx[i];
        if (k < -len || k >= len) runError("index " + std::to_string(k) + " out of range");
        if (k < 0) k += len;
        int64_t off = 0;
        for (int64_t d = 0; d < r; ++d) off += (d == axis ? k : pos[d]) * xs[d];
        py[i] = px[off];
        for (int64_t d = r - 1; d >= 0; --d) {
          if (++pos[d] < si[d]) break;
          pos[d] = 0;
        }
      }
    });
    out[0] = std::move(y);
  };
}

Kernel makeSlice(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool attr = info.opset < 10;
  info.requireInputs(attr ? 1 : 3, attr ? 1 : 5);
  requireMovable(info, 0);
  for (size_t i = 1; i < info.numInputs(); ++i) info.requireType(i, {DType::kInt64, DType::kInt32});
  const std::vector<int64_t> a_starts = info.attrInts("starts"), a_ends = info.attrInts("ends"), a_axes = info.attrInts("axes");
  out_types = {info.inType(0)};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t r = x.rank();
    std::vector<int64_t> starts = a_starts, ends = a_ends, axes = a_axes, steps;
    if (!attr) {
      starts = toInts(in[1], "starts");
      ends = toInts(in[2], "ends");
      axes = in.size() > 3 && !in[3].empty() ? toInts(in[3], "axes") : std::vector<int64_t>{};
      if (in.size() > 4 && !in[4].empty()) steps = toInts(in[4], "steps");
    }
    if (axes.empty())
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    if (steps.empty()) steps.assign(starts.size(), 1);
    if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
      runError("starts, ends, axes and steps must have the same length");
    Shape so = x.shape();
    const std::vector<int64_t> dense = rowMajorStrides(x.shape());
    std::vector<int64_t> st = dense;
    int64_t offset = 0;
    std::vector<bool> seen(r, false);
    for (size_t i = 0; i < starts.size(); ++i) {
      const int64_t d = normAxis(axes[i], r);
      if (seen[d]) runError("axes repeat");
      seen[d] = true;
      const int64_t dim = x.shape()[d], step = steps[i];
      if (step == 0) runError("step is zero");
      int64_t s = starts[i], e = ends[i];
      if (s < 0) s += dim;
      if (e < 0) e += dim;
      if (step > 0) {
        s = std::clamp<int64_t>(s, 0, dim);
        e = std::clamp<int64_t>(e, 0, dim);
      } else {
        s = std::clamp<int64_t>(s, 0, dim - 1);
        e = std::clamp<int64_t>(e, -1, dim - 1);
      }
      const int64_t n = step > 0 ? (e - s + step - 1) / step : (s - e + (-step) - 1) / (-step);
      so[d] = std::max<int64_t>(0, n);
      offset += s * dense[d];
      st[d] = dense[d] * step;
    }
    Tensor y = ctx.alloc(x.dtype(), so);
    if (y.numel() > 0) {
      const size_t eb = elemBytes(x);
      stridedCopy(static_cast<const uint8_t*>(x.data()) + offset * static_cast<int64_t>(eb), outData<uint8_t>(y), eb, so,
                  st, ctx.threads());
    }
    out[0] = std::move(y);
  };
}

Kernel makeTrilu(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 2);
  requireMovable(info, 0);
  info.requireType(1, {DType::kInt64});
  const bool upper = info.attrInt("upper", 1) != 0;
  out_types = {info.inType(0)};
  return [upper](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    if (x.rank() < 2) runError("input must have rank >= 2, got " + typeShape(x));
    const int64_t k = in.size() > 1 && !in[1].empty() ? scalarInt(in[1], "k") : 0;
    const int64_t N = x.shape()[x.rank() - 2], M = x.shape()[x.rank() - 1], B = x.numel() / std::max<int64_t>(N * M, 1);
    Tensor y = ctx.alloc(x.dtype(), x.shape());
    const size_t eb = elemBytes(x);
    const uint8_t* px = static_cast<const uint8_t*>(x.data());
    uint8_t* py = outData<uint8_t>(y);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < N; ++i) {
        const int64_t row = (b * N + i) * M;
        for (int64_t j = 0; j < M; ++j) {
          const bool keep = upper ? (j - i >= k) : (j - i <= k);
          if (keep) std::memcpy(py + (row + j) * eb, px + (row + j) * eb, eb);
          else std::memset(py + (row + j) * eb, 0, eb);
        }
      }
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
