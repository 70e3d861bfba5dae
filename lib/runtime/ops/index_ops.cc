// Index-producing and scatter ops: CumSum, TopK, NonZero, OneHot, EyeLike, GatherND, ScatterND,
// ScatterElements (reduction none/add/mul/max/min). Plain loops: these are small in real models.
#include <algorithm>
#include <numeric>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {
const std::initializer_list<DType> kArith = {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64,
                                             DType::kUInt32, DType::kUInt64};

template <typename T>
T reduce(const std::string& how, T a, T b) {
  if (how == "add") return static_cast<T>(a + b);
  if (how == "mul") return static_cast<T>(a * b);
  if (how == "max") return std::max(a, b);
  if (how == "min") return std::min(a, b);
  return b;
}

Tensor copyOf(ExecContext& ctx, const Tensor& x) {
  Tensor y = ctx.alloc(x.dtype(), x.shape());
  if (x.nbytes()) std::memcpy(outData<uint8_t>(y), x.data(), x.nbytes());
  return y;
}
}  // namespace

Kernel makeCumSum(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 2);
  info.requireType(0, kArith);
  info.requireType(1, {DType::kInt32, DType::kInt64});
  const bool exclusive = info.attrInt("exclusive", 0) != 0, reverse = info.attrInt("reverse", 0) != 0;
  out_types = {info.inType(0)};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t axis = normAxis(scalarInt(in[1], "axis"), x.rank());
    const int64_t outer = dimProduct(x.shape(), 0, axis), len = x.shape()[axis], inner = dimProduct(x.shape(), axis + 1, x.rank());
    Tensor y = ctx.alloc(x.dtype(), x.shape());
    dispatchNumeric(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* px = x.data<T>();
      T* py = outData<T>(y);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < inner; ++i) {
          T acc = T(0);
          for (int64_t s = 0; s < len; ++s) {
            const int64_t k = reverse ? len - 1 - s : s;
            const int64_t at = (o * len + k) * inner + i;
            if (exclusive) { py[at] = acc; acc = static_cast<T>(acc + px[at]); }
            else { acc = static_cast<T>(acc + px[at]); py[at] = acc; }
          }
        }
    });
    out[0] = std::move(y);
  };
}

Kernel makeTopK(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 2);
  info.requireType(0, kArith);
  info.requireType(1, {DType::kInt64});
  const int64_t axis_attr = info.attrInt("axis", -1);
  const bool largest = info.attrInt("largest", 1) != 0;
  out_types = {info.inType(0), DType::kInt64};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t axis = normAxis(axis_attr, x.rank());
    const int64_t k = scalarInt(in[1], "K");
    const int64_t outer = dimProduct(x.shape(), 0, axis), len = x.shape()[axis], inner = dimProduct(x.shape(), axis + 1, x.rank());
    if (k < 0 || k > len) runError("K=" + std::to_string(k) + " is out of range for an axis of " + std::to_string(len));
    Shape so = x.shape();
    so[axis] = k;
    Tensor vals = ctx.alloc(x.dtype(), so), idx = ctx.alloc(DType::kInt64, so);
    dispatchNumeric(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* px = x.data<T>();
      std::vector<int64_t> order(len);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < inner; ++i) {
          auto at = [&](int64_t j) { return px[(o * len + j) * inner + i]; };
          std::iota(order.begin(), order.end(), 0);
          // Ties: the lower index first (ONNX).
          std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return largest ? at(a) > at(b) : at(a) < at(b); });
          for (int64_t j = 0; j < k; ++j) {
            outData<T>(vals)[(o * k + j) * inner + i] = at(order[j]);
            outData<int64_t>(idx)[(o * k + j) * inner + i] = order[j];
          }
        }
    });
    out[0] = std::move(vals);
    if (out.size() > 1) out[1] = std::move(idx);
  };
}

Kernel makeNonZero(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1);
  requireMovable(info, 0);
  out_types = {DType::kInt64};
  return [](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t r = x.rank(), n = x.numel();
    std::vector<int64_t> hits;
    const size_t eb = static_cast<size_t>(ir::dtypeBits(x.dtype()) / 8);
    const uint8_t* p = static_cast<const uint8_t*>(x.data());
    const std::vector<float> f = ir::dtypeIsFloat(x.dtype()) ? x.toFloats() : std::vector<float>();
    for (int64_t i = 0; i < n; ++i) {
      bool nz = false;
      if (!f.empty()) nz = f[i] != 0.0f;
      else for (size_t b = 0; b < eb && !nz; ++b) nz = p[i * eb + b] != 0;
      if (nz) hits.push_back(i);
    }
    const int64_t m = static_cast<int64_t>(hits.size());
    Tensor y = ctx.alloc(DType::kInt64, {std::max<int64_t>(r, 1), m});
    const std::vector<int64_t> st = rowMajorStrides(x.shape());
    for (int64_t j = 0; j < m; ++j)
      for (int64_t d = 0; d < std::max<int64_t>(r, 1); ++d)
        outData<int64_t>(y)[d * m + j] = r == 0 ? 0 : (hits[j] / st[d]) % x.shape()[d];
    out[0] = std::move(y);
  };
}

Kernel makeOneHot(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(3, 3);
  info.requireType(0, kArith);
  requireMovable(info, 2);
  const int64_t axis_attr = info.attrInt("axis", -1);
  out_types = {info.inType(2)};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& ind = in[0];
    const int64_t depth = static_cast<int64_t>(scalarDouble(in[1]));
    if (in[2].numel() != 2) runError("values must hold [off, on]");
    const int64_t r = ind.rank() + 1, axis = normAxis(axis_attr, r);
    Shape so = ind.shape();
    so.insert(so.begin() + axis, depth);
    const std::vector<float> iv = ind.toFloats();
    Tensor y = ctx.alloc(in[2].dtype(), so);
    const int64_t outer = dimProduct(ind.shape(), 0, axis), inner = dimProduct(ind.shape(), axis, ind.rank());
    dispatchBytes(y.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T off = in[2].data<T>()[0], on = in[2].data<T>()[1];
      T* py = outData<T>(y);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t d = 0; d < depth; ++d)
          for (int64_t i = 0; i < inner; ++i) {
            int64_t v = static_cast<int64_t>(iv[o * inner + i]);
            if (v < 0) v += depth;
            py[(o * depth + d) * inner + i] = v == d ? on : off;
          }
    });
    out[0] = std::move(y);
  };
}

Kernel makeEyeLike(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1);
  const DType t = info.node.hasAttr("dtype") ? static_cast<DType>(info.attrInt("dtype", 1)) : info.inType(0);
  if (t == DType::kUndefined || !isMovableType(t) || t == DType::kFloat16 || t == DType::kBFloat16)
    info.unsupported("dtype " + ir::dtypeName(t));
  const int64_t k = info.attrInt("k", 0);
  out_types = {t};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    if (in[0].rank() != 2) runError("input must be 2-D");
    const int64_t R = in[0].shape()[0], C = in[0].shape()[1];
    Tensor y = ctx.allocZeroed(t, {R, C});
    dispatchNumeric(t, [&](auto tag) {
      using T = decltype(tag);
      for (int64_t i = 0; i < R; ++i)
        if (i + k >= 0 && i + k < C) outData<T>(y)[i * C + i + k] = T(1);
    });
    if (t == DType::kBool)
      for (int64_t i = 0; i < R; ++i)
        if (i + k >= 0 && i + k < C) outData<uint8_t>(y)[i * C + i + k] = 1;
    out[0] = std::move(y);
  };
}

Kernel makeGatherND(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 2);
  requireMovable(info, 0);
  info.requireType(1, {DType::kInt64});
  if (info.attrInt("batch_dims", 0) != 0) info.unsupported("batch_dims != 0");
  out_types = {info.inType(0)};
  return [](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const Tensor& ind = in[1];
    if (ind.rank() < 1) runError("indices must have rank >= 1");
    const int64_t q = ind.shape().back();
    if (q > x.rank()) runError("indices' last dim exceeds the data rank");
    Shape so(ind.shape().begin(), ind.shape().end() - 1);
    so.insert(so.end(), x.shape().begin() + q, x.shape().end());
    Tensor y = ctx.alloc(x.dtype(), so);
    const int64_t slice = dimProduct(x.shape(), q, x.rank()) * (ir::dtypeBits(x.dtype()) / 8);
    const std::vector<int64_t> st = rowMajorStrides(x.shape());
    const int64_t n = ind.numel() / std::max<int64_t>(q, 1);
    const int64_t* pi = ind.data<int64_t>();
    const size_t eb = static_cast<size_t>(ir::dtypeBits(x.dtype()) / 8);
    for (int64_t j = 0; j < n; ++j) {
      int64_t off = 0;
      for (int64_t d = 0; d < q; ++d) {
        int64_t v = pi[j * q + d];
        if (v < 0) v += x.shape()[d];
        if (v < 0 || v >= x.shape()[d]) runError("index out of range");
        off += v * st[d];
      }
      std::memcpy(outData<uint8_t>(y) + j * slice, static_cast<const uint8_t*>(x.data()) + off * static_cast<int64_t>(eb),
                  static_cast<size_t>(slice));
    }
    out[0] = std::move(y);
  };
}

Kernel makeScatter(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool nd = info.node.opType() == "ScatterND";
  info.requireInputs(3, 3);
  requireMovable(info, 0);
  info.requireType(1, {DType::kInt64, DType::kInt32});
  const std::string how = info.attrString("reduction", "none");
  if (how != "none" && how != "add" && how != "mul" && how != "max" && how != "min") info.unsupported("reduction '" + how + "'");
  if (how != "none") info.requireType(0, kArith);
  const int64_t axis_attr = info.attrInt("axis", 0);
  out_types = {info.inType(0)};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const std::vector<int64_t> ind = toInts(in[1], "indices");
    const Tensor& upd = in[2];
    Tensor y = copyOf(ctx, x);
    const std::vector<int64_t> st = rowMajorStrides(x.shape());
    auto apply = [&](auto tag) {
      using T = decltype(tag);
      T* py = outData<T>(y);
      const T* pu = upd.data<T>();
      if (nd) {
        const int64_t q = in[1].shape().back();
        const int64_t slice = dimProduct(x.shape(), q, x.rank());
        const int64_t n = static_cast<int64_t>(ind.size()) / std::max<int64_t>(q, 1);
        for (int64_t j = 0; j < n; ++j) {
          int64_t off = 0;
          for (int64_t d = 0; d < q; ++d) {
            int64_t v = ind[j * q + d];
            if (v < 0) v += x.shape()[d];
            if (v < 0 || v >= x.shape()[d]) runError("index out of range");
            off += v * st[d];
          }
          for (int64_t e = 0; e < slice; ++e) py[off + e] = reduce<T>(how, py[off + e], pu[j * slice + e]);
        }
      } else {
        const int64_t axis = normAxis(axis_attr, x.rank());
        const Shape& si = in[1].shape();
        std::vector<int64_t> pos(si.size(), 0);
        for (size_t j = 0; j < ind.size(); ++j) {
          int64_t v = ind[j];
          if (v < 0) v += x.shape()[axis];
          if (v < 0 || v >= x.shape()[axis]) runError("index out of range");
          int64_t off = 0;
          for (size_t d = 0; d < si.size(); ++d) off += (static_cast<int64_t>(d) == axis ? v : pos[d]) * st[d];
          py[off] = reduce<T>(how, py[off], pu[j]);
          for (int64_t d = static_cast<int64_t>(si.size()) - 1; d >= 0; --d) {
            if (++pos[d] < si[d]) break;
            pos[d] = 0;
          }
        }
      }
    };
    if (how == "none") dispatchBytes(x.dtype(), apply);
    else if (!dispatchNumeric(x.dtype(), apply)) runError("dtype " + ir::dtypeName(x.dtype()));
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
