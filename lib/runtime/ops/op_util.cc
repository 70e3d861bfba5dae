#include "lib/runtime/ops/op_util.h"

#include "lib/util/error.h"

namespace ptq::runtime::ops {

int64_t normAxis(int64_t axis, int64_t rank, const char* what) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= std::max<int64_t>(rank, 1))
    runError(std::string(what) + " " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return a;
}

Shape broadcastShapes(const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da == db || db == 1) out[i] = da;
    else if (da == 1) out[i] = db;
    else runError("shapes " + ir::shapeToString(a) + " and " + ir::shapeToString(b) + " do not broadcast");
  }
  return out;
}

std::vector<int64_t> rowMajorStrides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int64_t i = static_cast<int64_t>(s.size()) - 2; i >= 0; --i) st[i] = st[i + 1] * s[i + 1];
  return st;
}

std::vector<int64_t> broadcastStrides(const Shape& in, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  const std::vector<int64_t> dense = rowMajorStrides(in);
  const size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) st[off + i] = in[i] == 1 ? 0 : dense[i];
  return st;
}

std::vector<int64_t> toInts(const Tensor& t, const char* what) {
  if (!ir::dtypeIsInteger(t.dtype()) && t.dtype() != DType::kBool)
    runError(std::string(what) + " must be an integer tensor, got " + ir::dtypeName(t.dtype()));
  if (t.dtype() == DType::kInt64) {
    const int64_t* p = t.data<int64_t>();
    return std::vector<int64_t>(p, p + t.numel());
  }
  return t.toInt64s();
}

int64_t scalarInt(const Tensor& t, const char* what) {
  if (t.numel() != 1) runError(std::string(what) + " must hold one value, got shape " + ir::shapeToString(t.shape()));
  return toInts(t, what)[0];
}

double scalarDouble(const Tensor& t) {
  if (t.numel() < 1) runError("expected a scalar, got an empty tensor");
  if (t.dtype() == DType::kFloat64) return t.data<double>()[0];
  if (t.dtype() == DType::kInt64) return static_cast<double>(t.data<int64_t>()[0]);
  return t.toFloats()[0];
}

std::string typeShape(const Tensor& t) { return ir::dtypeName(t.dtype()) + ir::shapeToString(t.shape()); }

void expectType(const Tensor& t, DType d, const char* what) {
  if (t.dtype() != d) runError(std::string(what) + " must be " + ir::dtypeName(d) + ", got " + typeShape(t));
}

bool isMovableType(DType t) {
  const int bits = ir::dtypeBits(t);
  return t != DType::kString && t != DType::kUndefined && (bits == 8 || bits == 16 || bits == 32 || bits == 64);
}

void requireMovable(const NodeInfo& info, size_t input) {
  const DType t = info.inType(input);
  if (t != DType::kUndefined && !isMovableType(t))
    info.unsupported("input " + std::to_string(input) + " has dtype " + ir::dtypeName(t));
}

namespace {
// ONNX requires pads >= 0 and strides, dilations and kernel sizes >= 1; the kernels index with them
// (a negative pad would make a padded row shorter than the input row copied into it).
const char* badWindowValue(const Window& w) {
  for (int64_t v : w.pads)
    if (v < 0) return "negative pads";
  for (int64_t v : w.strides)
    if (v < 1) return "strides < 1";
  for (int64_t v : w.dilations)
    if (v < 1) return "dilations < 1";
  for (int64_t v : w.kernel)
    if (v < 1) return "kernel_shape < 1";
  return nullptr;
}
}  // namespace

Window readWindow(const NodeInfo& info, int64_t spatial) {
  Window w;
  w.kernel = info.attrInts("kernel_shape");
  w.auto_pad = info.attrString("auto_pad", "NOTSET");
  w.ceil_mode = info.attrInt("ceil_mode", 0) != 0;
  w.strides = info.attrInts("strides");
  w.dilations = info.attrInts("dilations");
  w.pads = info.attrInts("pads");
  if (spatial == 0) spatial = static_cast<int64_t>(w.kernel.size());
  if (spatial == 0) {  // rank known only at run time (weights not constant, no kernel_shape)
    if (w.auto_pad != "NOTSET" && w.auto_pad != "SAME_UPPER" && w.auto_pad != "SAME_LOWER" && w.auto_pad != "VALID")
      info.unsupported("auto_pad='" + w.auto_pad + "'");
    return w;
  }
  if (w.strides.empty()) w.strides.assign(spatial, 1);
  if (w.dilations.empty()) w.dilations.assign(spatial, 1);
  if (w.pads.empty()) w.pads.assign(2 * spatial, 0);
  if (w.auto_pad != "NOTSET" && w.auto_pad != "SAME_UPPER" && w.auto_pad != "SAME_LOWER" && w.auto_pad != "VALID")
    info.unsupported("auto_pad='" + w.auto_pad + "'");
  if (!w.kernel.empty() && static_cast<int64_t>(w.kernel.size()) != spatial) info.unsupported("kernel_shape rank mismatch");
  if (static_cast<int64_t>(w.strides.size()) != spatial || static_cast<int64_t>(w.dilations.size()) != spatial ||
      static_cast<int64_t>(w.pads.size()) != 2 * spatial)
    info.unsupported("strides/dilations/pads do not match " + std::to_string(spatial) + " spatial dims");
  if (const char* why = badWindowValue(w)) info.unsupported(why);
  return w;
}

void completeWindow(Window& w, int64_t spatial) {
  if (w.strides.empty()) w.strides.assign(spatial, 1);
  if (w.dilations.empty()) w.dilations.assign(spatial, 1);
  if (w.pads.empty()) w.pads.assign(2 * spatial, 0);
  if ((!w.kernel.empty() && static_cast<int64_t>(w.kernel.size()) != spatial) ||
      static_cast<int64_t>(w.strides.size()) != spatial || static_cast<int64_t>(w.dilations.size()) != spatial ||
      static_cast<int64_t>(w.pads.size()) != 2 * spatial)
    runError("kernel_shape/strides/dilations/pads do not match " + std::to_string(spatial) + " spatial dims");
  if (const char* why = badWindowValue(w)) runError(why);
}

std::vector<int64_t> windowOutput(Window& w, const std::vector<int64_t>& in) {
  const size_t r = in.size();
  completeWindow(w, static_cast<int64_t>(r));
  std::vector<int64_t> out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t ext = (w.kernel[i] - 1) * w.dilations[i] + 1;
    if (w.auto_pad == "SAME_UPPER" || w.auto_pad == "SAME_LOWER") {
      out[i] = (in[i] + w.strides[i] - 1) / w.strides[i];
      const int64_t total = std::max<int64_t>(0, (out[i] - 1) * w.strides[i] + ext - in[i]);
      const int64_t small = total / 2;
      w.pads[i] = w.auto_pad == "SAME_UPPER" ? small : total - small;
      w.pads[i + r] = total - w.pads[i];
      continue;
    }
    if (w.auto_pad == "VALID") w.pads[i] = w.pads[i + r] = 0;
    const int64_t span = in[i] + w.pads[i] + w.pads[i + r] - ext;
    if (span < 0) runError("window " + std::to_string(ext) + " is larger than the padded input " +
                           std::to_string(in[i] + w.pads[i] + w.pads[i + r]));
    out[i] = (w.ceil_mode ? (span + w.strides[i] - 1) / w.strides[i] : span / w.strides[i]) + 1;
    // ceil mode: the last window must start inside the input or left padding.
    if (w.ceil_mode && (out[i] - 1) * w.strides[i] >= in[i] + w.pads[i]) --out[i];
  }
  return out;
}

namespace {
template <typename T>
void stridedCopyT(const T* in, T* out, const Shape& shape, const std::vector<int64_t>& strides, int threads) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  const int64_t total = ir::shapeNumel(shape);
  if (total == 0) return;
  if (rank == 0) { out[0] = in[0]; return; }
  const int64_t inner = shape[rank - 1];
  const int64_t inner_stride = strides[rank - 1];
  const int64_t rows = total / inner;
  parallelFor(threads, rows, grainFor(inner), [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> idx(rank, 0);
    int64_t rem = r0;
    for (int64_t d = rank - 2; d >= 0; --d) { idx[d] = rem % shape[d]; rem /= shape[d]; }
    for (int64_t r = r0; r < r1; ++r) {
      int64_t off = 0;
      for (int64_t d = 0; d < rank - 1; ++d) off += idx[d] * strides[d];
      T* o = out + r * inner;
      const T* src = in + off;
      if (inner_stride == 1) std::memcpy(o, src, sizeof(T) * inner);
      else if (inner_stride == 0) std::fill(o, o + inner, src[0]);
      else for (int64_t j = 0; j < inner; ++j) o[j] = src[j * inner_stride];
      for (int64_t d = rank - 2; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  });
}
}  // namespace

void stridedCopy(const void* in, void* out, size_t elem_bytes, const Shape& out_shape,
                 const std::vector<int64_t>& in_strides, int threads) {
  switch (elem_bytes) {
    case 1: stridedCopyT(static_cast<const uint8_t*>(in), static_cast<uint8_t*>(out), out_shape, in_strides, threads); break;
    case 2: stridedCopyT(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out), out_shape, in_strides, threads); break;
    case 4: stridedCopyT(static_cast<const uint32_t*>(in), static_cast<uint32_t*>(out), out_shape, in_strides, threads); break;
    case 8: stridedCopyT(static_cast<const uint64_t*>(in), static_cast<uint64_t*>(out), out_shape, in_strides, threads); break;
    default: throwInternal("stridedCopy: element size " + std::to_string(elem_bytes));
  }
}

}  // namespace ptq::runtime::ops
