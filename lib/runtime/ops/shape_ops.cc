// Ops that compute shapes or only re-label one: Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze,
// Identity/Dropout, Expand, ConstantOfShape, Constant, Range. Reshape-like ops return an alias of
// their input (no copy). Squeeze/Unsqueeze take axes as an attribute before opset 13, Reshape its
// shape as an attribute before opset 5.
#include <cmath>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {
Tensor int64Tensor(ExecContext& ctx, const std::vector<int64_t>& v, Shape shape) {
  Tensor t = ctx.alloc(DType::kInt64, std::move(shape));
  std::copy(v.begin(), v.end(), outData<int64_t>(t));
  return t;
}

void requireAnyTensor(const NodeInfo& info, size_t i) {
  const DType t = info.inType(i);
  if (t == DType::kString) info.unsupported("string tensors");
  if (t == DType::kUndefined && info.hasInput(i) && !info.node.input(i)->type_opaque.empty())
    info.unsupported("non-tensor (sequence/optional) values");
}
}  // namespace

Kernel makeShape(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1);
  requireAnyTensor(info, 0);
  const int64_t start_attr = info.attrInt("start", 0);
  const bool has_end = info.node.hasAttr("end");
  const int64_t end_attr = info.attrInt("end", 0);
  out_types = {DType::kInt64};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Shape& s = in[0].shape();
    const int64_t r = static_cast<int64_t>(s.size());
    auto clampAxis = [r](int64_t a) { return std::min(std::max<int64_t>(a < 0 ? a + r : a, 0), r); };
    const int64_t b = clampAxis(start_attr), e = has_end ? clampAxis(end_attr) : r;
    std::vector<int64_t> v;
    for (int64_t i = b; i < e; ++i) v.push_back(s[i]);
    out[0] = int64Tensor(ctx, v, {static_cast<int64_t>(v.size())});
  };
}

Kernel makeSize(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1);
  requireAnyTensor(info, 0);
  out_types = {DType::kInt64};
  return [](ExecContext& ctx, TensorList& in, TensorList& out) { out[0] = int64Tensor(ctx, {in[0].numel()}, {}); };
}

Kernel makeReshape(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool attr = info.opset < 5;
  info.requireInputs(attr ? 1 : 2, attr ? 1 : 2);
  requireAnyTensor(info, 0);
  if (!attr) info.requireType(1, {DType::kInt64});
  const bool allowzero = info.attrInt("allowzero", 0) != 0;
  const std::vector<int64_t> attr_shape = info.attrInts("shape");
  out_types = {info.inType(0)};
  return [=](ExecContext&, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    std::vector<int64_t> s = attr ? attr_shape : toInts(in[1], "shape");
    int64_t infer = -1, known = 1;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == 0 && !allowzero) {
        if (i >= x.shape().size()) runError("shape has 0 at position " + std::to_string(i) + " beyond the input rank");
        s[i] = x.shape()[i];
      }
      if (s[i] == -1) {
        if (infer >= 0) runError("shape has more than one -1");
        infer = static_cast<int64_t>(i);
      } else if (s[i] < 0) {
        runError("shape has a negative dimension");
      } else {
        known *= s[i];
      }
    }
    if (infer >= 0) {
      if (known == 0 || x.numel() % known) runError("cannot reshape " + typeShape(x) + " to " + ir::shapeToString(s));
      s[infer] = x.numel() / known;
    }
    if (ir::shapeNumel(s) != x.numel()) runError("cannot reshape " + typeShape(x) + " to " + ir::shapeToString(s));
    out[0] = x.reshaped(s);
  };
}

Kernel makeFlatten(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1);
  requireAnyTensor(info, 0);
  const int64_t axis_attr = info.attrInt("axis", 1);
  out_types = {info.inType(0)};
  return [=](ExecContext&, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t r = x.rank();
    const int64_t axis = axis_attr < 0 ? axis_attr + r : axis_attr;
    if (axis < 0 || axis > r) runError("axis " + std::to_string(axis_attr) + " out of range for rank " + std::to_string(r));
    out[0] = x.reshaped({dimProduct(x.shape(), 0, axis), dimProduct(x.shape(), axis, r)});
  };
}

Kernel makeSqueeze(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool attr = info.opset < 13;
  info.requireInputs(1, attr ? 1 : 2);
  requireAnyTensor(info, 0);
  const std::vector<int64_t> attr_axes = info.attrInts("axes");
  out_types = {info.inType(0)};
  return [=](ExecContext&, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    std::vector<int64_t> axes = attr_axes;
    if (!attr && in.size() > 1 && !in[1].empty()) axes = toInts(in[1], "axes");
    const int64_t r = x.rank();
    std::vector<bool> drop(r, false);
    if (axes.empty())
      for (int64_t d = 0; d < r; ++d) drop[d] = x.shape()[d] == 1;
    for (int64_t a : axes) {
      const int64_t d = normAxis(a, r);
      if (x.shape()[d] != 1) runError("cannot squeeze axis " + std::to_string(a) + " of " + typeShape(x));
      drop[d] = true;
    }
    Shape s;
    for (int64_t d = 0; d < r; ++d)
      if (!drop[d]) s.push_back(x.shape()[d]);
    out[0] = x.reshaped(s);
  };
}

Kernel makeUnsqueeze(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool attr = info.opset < 13;
  info.requireInputs(attr ? 1 : 2, attr ? 1 : 2);
  requireAnyTensor(info, 0);
  const std::vector<int64_t> attr_axes = info.attrInts("axes");
  out_types = {info.inType(0)};
  return [=](ExecContext&, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const std::vector<int64_t> axes = attr ? attr_axes : toInts(in[1], "axes");
    const int64_t r = x.rank() + static_cast<int64_t>(axes.size());
    std::vector<bool> ins(r, false);
    for (int64_t a : axes) {
      const int64_t d = normAxis(a, r);
      if (ins[d]) runError("axes repeat " + std::to_string(a));
      ins[d] = true;
    }
    Shape s;
    size_t k = 0;
    for (int64_t d = 0; d < r; ++d) s.push_back(ins[d] ? 1 : x.shape()[k++]);
    out[0] = x.reshaped(s);
  };
}

Kernel makeIdentity(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool dropout = info.node.opType() == "Dropout";
  info.requireInputs(1, dropout ? 3 : 1);
  requireAnyTensor(info, 0);
  if (dropout && info.hasInput(2) && !info.constInput(2)) info.unsupported("training_mode given at run time");
  if (dropout && info.constInput(2) && info.constInput(2)->numel() == 1 && info.constInput(2)->data<uint8_t>()[0])
    info.unsupported("training_mode=true");
  out_types = {info.inType(0)};
  const bool mask = dropout && info.node.numOutputs() > 1 && info.node.output(1);
  if (mask) out_types.push_back(DType::kBool);
  return [mask](ExecContext& ctx, TensorList& in, TensorList& out) {
    if (mask) {
      Tensor m = ctx.alloc(DType::kBool, in[0].shape());
      std::fill_n(outData<uint8_t>(m), m.nbytes(), uint8_t{1});
      out[1] = std::move(m);
    }
    out[0] = std::move(in[0]);
  };
}

Kernel makeExpand(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 2);
  requireMovable(info, 0);
  info.requireType(1, {DType::kInt64});
  out_types = {info.inType(0)};
  return [](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const Shape so = broadcastShapes(x.shape(), toInts(in[1], "shape"));
    if (so == x.shape()) { out[0] = x; return; }
    Tensor y = ctx.alloc(x.dtype(), so);
    stridedCopy(x.data(), outData<uint8_t>(y), ir::dtypeBits(x.dtype()) / 8, so, broadcastStrides(x.shape(), so),
                ctx.threads());
    out[0] = std::move(y);
  };
}

Kernel makeConstantOfShape(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1);
  info.requireType(0, {DType::kInt64});
  Tensor value = Tensor::fromFloats({1}, {0.0f});
  auto it = info.node.attrs.find("value");
  if (it != info.node.attrs.end()) {
    value = it->second.t;
    if (value.numel() != 1) info.unsupported("value must hold one element");
    if (!isMovableType(value.dtype())) info.unsupported("value of dtype " + ir::dtypeName(value.dtype()));
  }
  out_types = {value.dtype()};
  return [value](ExecContext& ctx, TensorList& in, TensorList& out) {
    const std::vector<int64_t> s = toInts(in[0], "shape");
    for (int64_t d : s)
      if (d < 0) runError("negative dimension in shape " + ir::shapeToString(s));
    Tensor y = ctx.alloc(value.dtype(), s);
    dispatchBytes(value.dtype(), [&](auto tag) {
      using T = decltype(tag);
      std::fill_n(outData<T>(y), y.numel(), value.data<T>()[0]);
    });
    out[0] = std::move(y);
  };
}

Kernel makeConstant(const NodeInfo& info, std::vector<DType>& out_types) {
  Tensor value;
  const auto& a = info.node.attrs;
  if (a.count("value")) value = a.at("value").t;
  else if (a.count("value_float")) value = Tensor::fromFloats({}, {a.at("value_float").f});
  else if (a.count("value_floats")) value = Tensor::fromFloats({static_cast<int64_t>(a.at("value_floats").floats.size())}, a.at("value_floats").floats);
  else if (a.count("value_int")) value = Tensor::fromInt64s({}, {a.at("value_int").i});
  else if (a.count("value_ints")) value = Tensor::fromInt64s({static_cast<int64_t>(a.at("value_ints").ints.size())}, a.at("value_ints").ints);
  else info.unsupported("Constant without a dense value attribute");
  if (value.dtype() == DType::kString) info.unsupported("string constants");
  out_types = {value.dtype()};
  return [value](ExecContext&, TensorList&, TensorList& out) { out[0] = value; };
}

Kernel makeRange(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(3, 3);
  info.requireType(0, {DType::kFloat32, DType::kFloat64, DType::kInt16, DType::kInt32, DType::kInt64});
  info.requireSameType(0, 2);
  out_types = {info.inType(0)};
  return [](ExecContext& ctx, TensorList& in, TensorList& out) {
    const DType t = in[0].dtype();
    if (in[1].dtype() != t || in[2].dtype() != t) runError("start, limit and delta must share a dtype");
    Tensor y;
    dispatchNumeric(t, [&](auto tag) {
      using T = decltype(tag);
      const T start = in[0].data<T>()[0], limit = in[1].data<T>()[0], delta = in[2].data<T>()[0];
      if (delta == T(0)) runError("delta is zero");
      const double n = std::ceil((static_cast<double>(limit) - static_cast<double>(start)) / static_cast<double>(delta));
      const int64_t count = std::max<int64_t>(0, static_cast<int64_t>(n));
      y = ctx.alloc(t, {count});
      T* p = outData<T>(y);
      for (int64_t i = 0; i < count; ++i) p[i] = static_cast<T>(start + static_cast<T>(i) * delta);
    });
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
