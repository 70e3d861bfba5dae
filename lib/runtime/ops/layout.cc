// Data movement: Transpose, Concat, Split (split sizes as attribute before opset 13, input after,
// num_outputs from 18), Tile, DepthToSpace/SpaceToDepth. All byte-typed: any fixed-width dtype.
#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {
size_t elemBytes(const Tensor& t) { return static_cast<size_t>(ir::dtypeBits(t.dtype()) / 8); }

Tensor permute(ExecContext& ctx, const Tensor& x, const std::vector<int64_t>& perm) {
  const int64_t r = x.rank();
  const std::vector<int64_t> dense = rowMajorStrides(x.shape());
  Shape so(r);
  std::vector<int64_t> st(r);
  for (int64_t d = 0; d < r; ++d) { so[d] = x.shape()[perm[d]]; st[d] = dense[perm[d]]; }
  Tensor y = ctx.alloc(x.dtype(), so);
  stridedCopy(x.data(), outData<uint8_t>(y), elemBytes(x), so, st, ctx.threads());
  return y;
}
}  // namespace

Kernel makeTranspose(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1);
  requireMovable(info, 0);
  const std::vector<int64_t> perm_attr = info.attrInts("perm");
  out_types = {info.inType(0)};
  return [perm_attr](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t r = x.rank();
    std::vector<int64_t> perm = perm_attr;
    if (perm.empty())
      for (int64_t d = r - 1; d >= 0; --d) perm.push_back(d);
    if (static_cast<int64_t>(perm.size()) != r) runError("perm has " + std::to_string(perm.size()) + " entries for " + typeShape(x));
    std::vector<bool> seen(r, false);
    bool identity = true;
    for (int64_t d = 0; d < r; ++d) {
      const int64_t p = normAxis(perm[d], r, "perm entry");
      if (seen[p]) runError("perm repeats an axis");
      seen[p] = true;
      perm[d] = p;
      identity = identity && p == d;
    }
    // Moving only size-1 dims is a reshape.
    std::vector<int64_t> order;
    for (int64_t d = 0; d < r; ++d)
      if (x.shape()[perm[d]] != 1) order.push_back(perm[d]);
    const bool relabel = std::is_sorted(order.begin(), order.end());
    if (identity || relabel) {
      Shape so(r);
      for (int64_t d = 0; d < r; ++d) so[d] = x.shape()[perm[d]];
      out[0] = x.reshaped(so);
      return;
    }
    out[0] = permute(ctx, x, perm);
  };
}

Kernel makeConcat(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1u << 20);
  if (!info.node.hasAttr("axis")) info.unsupported("missing attribute 'axis'");
  for (size_t i = 0; i < info.numInputs(); ++i) requireMovable(info, i);
  info.requireSameType(0, info.numInputs() - 1);
  const int64_t axis_attr = info.attrInt("axis", 0);
  out_types = {info.inType(0)};
  return [axis_attr](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& first = in[0];
    const int64_t r = first.rank(), axis = normAxis(axis_attr, r);
    Shape so = first.shape();
    so[axis] = 0;
    for (const Tensor& t : in) {
      if (t.dtype() != first.dtype() || t.rank() != r) runError("inputs differ in dtype or rank: " + typeShape(first) + " vs " + typeShape(t));
      for (int64_t d = 0; d < r; ++d)
        if (d != axis && t.shape()[d] != first.shape()[d]) runError("inputs differ outside the axis: " + typeShape(first) + " vs " + typeShape(t));
      so[axis] += t.shape()[axis];
    }
    Tensor y = ctx.alloc(first.dtype(), so);
    const size_t eb = elemBytes(first);
    const int64_t outer = dimProduct(so, 0, axis), inner = dimProduct(so, axis + 1, r);
    const int64_t out_row = so[axis] * inner * static_cast<int64_t>(eb);
    uint8_t* py = outData<uint8_t>(y);
    int64_t off = 0;
    for (const Tensor& t : in) {
      const int64_t row = t.shape()[axis] * inner * static_cast<int64_t>(eb);
      const uint8_t* px = static_cast<const uint8_t*>(t.data());
      if (row > 0)
        parallelFor(ctx.threads(), outer, grainFor(row / 4 + 1), [&](int64_t s, int64_t e) {
          for (int64_t o = s; o < e; ++o) std::memcpy(py + o * out_row + off, px + o * row, static_cast<size_t>(row));
        });
      off += row;
    }
    out[0] = std::move(y);
  };
}

Kernel makeSplit(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool attr = info.opset < 13;
  info.requireInputs(1, attr ? 1 : 2);
  requireMovable(info, 0);
  const int64_t axis_attr = info.attrInt("axis", 0);
  const std::vector<int64_t> split_attr = info.attrInts("split");
  const int64_t num_outputs = info.attrInt("num_outputs", 0);
  const size_t n_out = info.node.numOutputs();
  out_types.assign(n_out, info.inType(0));
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t r = x.rank(), axis = normAxis(axis_attr, r), len = x.shape()[axis];
    std::vector<int64_t> sizes = split_attr;
    if (!attr && in.size() > 1 && !in[1].empty()) sizes = toInts(in[1], "split");
    const int64_t n = static_cast<int64_t>(n_out);
    if (sizes.empty()) {  // equal parts; with num_outputs the last may be smaller
      const int64_t parts = num_outputs > 0 ? num_outputs : n;
      const int64_t each = num_outputs > 0 ? (len + parts - 1) / parts : len / parts;
      if (num_outputs == 0 && len % parts) runError("axis length " + std::to_string(len) + " does not split into " + std::to_string(parts) + " equal parts");
      for (int64_t i = 0; i < parts; ++i) sizes.push_back(std::min(each, len - i * each));
    }
    if (static_cast<int64_t>(sizes.size()) != n) runError("split has " + std::to_string(sizes.size()) + " sizes for " + std::to_string(n) + " outputs");
    int64_t total = 0;
    for (int64_t s : sizes) total += s;
    if (total != len) runError("split sizes sum to " + std::to_string(total) + ", axis length is " + std::to_string(len));
    const size_t eb = elemBytes(x);
    const int64_t outer = dimProduct(x.shape(), 0, axis), inner = dimProduct(x.shape(), axis + 1, r);
    const int64_t in_row = len * inner * static_cast<int64_t>(eb);
    const uint8_t* px = static_cast<const uint8_t*>(x.data());
    int64_t off = 0;
    for (int64_t i = 0; i < n; ++i) {
      Shape so = x.shape();
      so[axis] = sizes[i];
      const int64_t row = sizes[i] * inner * static_cast<int64_t>(eb);
      Tensor y = ctx.alloc(x.dtype(), so);
      uint8_t* py = outData<uint8_t>(y);
      for (int64_t o = 0; o < outer && row > 0; ++o) std::memcpy(py + o * row, px + o * in_row + off, static_cast<size_t>(row));
      off += row;
      out[i] = std::move(y);
    }
  };
}

Kernel makeTile(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 2);
  requireMovable(info, 0);
  info.requireType(1, {DType::kInt64});
  out_types = {info.inType(0)};
  return [](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const std::vector<int64_t> reps = toInts(in[1], "repeats");
    const int64_t r = x.rank();
    if (static_cast<int64_t>(reps.size()) != r) runError("repeats must have one entry per input dim");
    // View output as [rep_0, d_0, rep_1, d_1, ...] reading x with stride 0 on the rep dims.
    Shape big, so;
    std::vector<int64_t> st;
    const std::vector<int64_t> dense = rowMajorStrides(x.shape());
    for (int64_t d = 0; d < r; ++d) {
      big.push_back(reps[d]);
      st.push_back(0);
      big.push_back(x.shape()[d]);
      st.push_back(dense[d]);
      so.push_back(reps[d] * x.shape()[d]);
    }
    Tensor y = ctx.alloc(x.dtype(), so);
    stridedCopy(x.data(), outData<uint8_t>(y), elemBytes(x), big, st, ctx.threads());
    out[0] = std::move(y);
  };
}

Kernel makeDepthToSpace(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool d2s = info.node.opType() == "DepthToSpace";
  info.requireInputs(1, 1);
  requireMovable(info, 0);
  const int64_t b = info.attrInt("blocksize", 0);
  if (b < 1) info.unsupported("blocksize < 1");
  const std::string mode = info.attrString("mode", "DCR");
  if (mode != "DCR" && mode != "CRD") info.unsupported("mode '" + mode + "'");
  out_types = {info.inType(0)};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    if (x.rank() != 4) runError("input must be 4-D, got " + typeShape(x));
    const int64_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
    Tensor t;
    if (d2s) {
      if (C % (b * b)) runError("channels not divisible by blocksize^2");
      const int64_t c = C / (b * b);
      Tensor v = mode == "DCR" ? x.reshaped({N, b, b, c, H, W}) : x.reshaped({N, c, b, b, H, W});
      t = permute(ctx, v, mode == "DCR" ? std::vector<int64_t>{0, 3, 4, 1, 5, 2} : std::vector<int64_t>{0, 1, 4, 2, 5, 3});
      out[0] = t.reshaped({N, c, H * b, W * b});
    } else {
      if (H % b || W % b) runError("spatial dims not divisible by blocksize");
      Tensor v = x.reshaped({N, C, H / b, b, W / b, b});
      t = permute(ctx, v, {0, 3, 5, 1, 2, 4});
      out[0] = t.reshaped({N, C * b * b, H / b, W / b});
    }
  };
}

}  // namespace ptq::runtime::ops
