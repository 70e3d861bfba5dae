// Resize (nearest / linear / cubic, any rank, separable: one axis at a time, which is exactly the
// tensor-product interpolation ONNX defines) and Pad (constant / reflect / edge / wrap).
// Not supported (rejected at planning): tf_crop_and_resize, half_pixel_symmetric, antialias,
// keep_aspect_ratio_policy other than stretch.
#include <cmath>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {

struct ResizeAttrs {
  std::string mode, ctm, nearest_mode;
  float cubic_a = -0.75f;
  bool exclude_outside = false;
  std::vector<int64_t> axes;
  int64_t opset = 0;
};

// Taps (input index, weight) for each output position along one axis.
struct AxisTaps {
  int64_t taps = 1;
  std::vector<int64_t> idx;
  std::vector<float> w;
};

// `resized_len`: the output length the coordinate transform uses (in * scale when scales were given).
AxisTaps axisTaps(const ResizeAttrs& a, int64_t in, int64_t out, double scale, double resized_len) {
  AxisTaps t;
  t.taps = a.mode == "nearest" ? 1 : (a.mode == "linear" ? 2 : 4);
  t.idx.resize(static_cast<size_t>(out * t.taps));
  t.w.resize(static_cast<size_t>(out * t.taps));
  for (int64_t o = 0; o < out; ++o) {
    double x;
    if (a.ctm == "half_pixel") x = (o + 0.5) / scale - 0.5;
    else if (a.ctm == "pytorch_half_pixel") x = out > 1 ? (o + 0.5) / scale - 0.5 : 0.0;
    else if (a.ctm == "align_corners") x = resized_len <= 1 ? 0.0 : o * static_cast<double>(in - 1) / (resized_len - 1);
    else x = o / scale;  // asymmetric
    int64_t* ix = &t.idx[o * t.taps];
    float* wx = &t.w[o * t.taps];
    if (a.mode == "nearest") {
      double r;
      if (a.nearest_mode == "floor") r = std::floor(x);
      else if (a.nearest_mode == "ceil") r = std::ceil(x);
      else if (a.nearest_mode == "round_prefer_ceil") r = std::floor(x + 0.5);
      else r = (x == std::floor(x) + 0.5) ? std::floor(x) : std::round(x);  // round_prefer_floor
      ix[0] = std::clamp<int64_t>(static_cast<int64_t>(r), 0, in - 1);
      wx[0] = 1.0f;
    } else if (a.mode == "linear") {
      x = std::clamp(x, 0.0, static_cast<double>(in - 1));
      const int64_t x0 = static_cast<int64_t>(std::floor(x));
      const double f = x - x0;
      ix[0] = x0;
      ix[1] = std::min(x0 + 1, in - 1);
      wx[0] = static_cast<float>(1.0 - f);
      wx[1] = static_cast<float>(f);
    } else {  // cubic
      const int64_t x0 = static_cast<int64_t>(std::floor(x));
      const double f = x - x0, A = a.cubic_a;
      const double d[4] = {1 + f, f, 1 - f, 2 - f};
      double ws[4], sum = 0;
      for (int k = 0; k < 4; ++k) {
        const double s = d[k];
        ws[k] = s <= 1 ? ((A + 2) * s - (A + 3)) * s * s + 1 : ((A * s - 5 * A) * s + 8 * A) * s - 4 * A;
        const int64_t src = x0 - 1 + k;
        if (a.exclude_outside && (src < 0 || src >= in)) ws[k] = 0;
        sum += ws[k];
      }
      for (int k = 0; k < 4; ++k) {
        ix[k] = std::clamp<int64_t>(x0 - 1 + k, 0, in - 1);
        wx[k] = static_cast<float>(a.exclude_outside && sum != 0 ? ws[k] / sum : ws[k]);
      }
    }
  }
  return t;
}

// Resizes axis `d` of x (float32) to `out` using taps.
Tensor resizeAxis(ExecContext& ctx, const Tensor& x, int64_t d, int64_t out, const AxisTaps& t) {
  Shape so = x.shape();
  so[d] = out;
  Tensor y = ctx.alloc(DType::kFloat32, so);
  const int64_t outer = dimProduct(x.shape(), 0, d), in = x.shape()[d], inner = dimProduct(x.shape(), d + 1, x.rank());
  const float* px = x.data<float>();
  float* py = outData<float>(y);
  parallelFor(ctx.threads(), outer * out, grainFor(inner * t.taps), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      const int64_t o = r / out, j = r % out;
      float* dst = py + r * inner;
      const float* src = px + o * in * inner;
      const int64_t* ix = &t.idx[j * t.taps];
      const float* wx = &t.w[j * t.taps];
      for (int64_t i = 0; i < inner; ++i) dst[i] = wx[0] * src[ix[0] * inner + i];
      for (int64_t k = 1; k < t.taps; ++k)
        for (int64_t i = 0; i < inner; ++i) dst[i] += wx[k] * src[ix[k] * inner + i];
    }
  });
  return y;
}

}  // namespace

Kernel makeResize(const NodeInfo& info, std::vector<DType>& out_types) {
  ResizeAttrs a;
  a.opset = info.opset;
  info.requireInputs(info.opset < 11 ? 2 : 1, info.opset < 11 ? 2 : 4);
  requireMovable(info, 0);
  a.mode = info.attrString("mode", "nearest");
  a.ctm = info.attrString("coordinate_transformation_mode", info.opset < 11 ? "asymmetric" : "half_pixel");
  a.nearest_mode = info.attrString("nearest_mode", "round_prefer_floor");
  a.cubic_a = info.attrFloat("cubic_coeff_a", -0.75f);
  a.exclude_outside = info.attrInt("exclude_outside", 0) != 0;
  a.axes = info.attrInts("axes");
  if (a.mode != "nearest" && a.mode != "linear" && a.mode != "cubic") info.unsupported("mode '" + a.mode + "'");
  if (a.ctm != "half_pixel" && a.ctm != "pytorch_half_pixel" && a.ctm != "align_corners" && a.ctm != "asymmetric")
    info.unsupported("coordinate_transformation_mode '" + a.ctm + "'");
  if (a.nearest_mode != "round_prefer_floor" && a.nearest_mode != "round_prefer_ceil" && a.nearest_mode != "floor" &&
      a.nearest_mode != "ceil")
    info.unsupported("nearest_mode '" + a.nearest_mode + "'");
  if (info.attrInt("antialias", 0) != 0) info.unsupported("antialias");
  if (info.attrString("keep_aspect_ratio_policy", "stretch") != "stretch") info.unsupported("keep_aspect_ratio_policy");
  if (a.mode != "nearest") info.requireType(0, {DType::kFloat32});
  out_types = {info.inType(0)};
  return [a](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t r = x.rank();
    const size_t scales_i = a.opset < 11 ? 1 : 2, sizes_i = 3;
    std::vector<int64_t> axes = a.axes;
    if (axes.empty())
      for (int64_t d = 0; d < r; ++d) axes.push_back(d);
    for (int64_t& d : axes) d = normAxis(d, r);
    std::vector<double> scale(r, 1.0), resized(r);
    for (int64_t d = 0; d < r; ++d) resized[d] = static_cast<double>(x.shape()[d]);
    std::vector<int64_t> outs(x.shape().begin(), x.shape().end());
    if (in.size() > sizes_i && !in[sizes_i].empty() && in[sizes_i].numel() > 0) {
      const std::vector<int64_t> sz = toInts(in[sizes_i], "sizes");
      if (sz.size() != axes.size()) runError("sizes has " + std::to_string(sz.size()) + " entries for " + std::to_string(axes.size()) + " axes");
      for (size_t i = 0; i < axes.size(); ++i) {
        outs[axes[i]] = sz[i];
        scale[axes[i]] = static_cast<double>(sz[i]) / static_cast<double>(x.shape()[axes[i]]);
        resized[axes[i]] = static_cast<double>(sz[i]);
      }
    } else if (in.size() > scales_i && !in[scales_i].empty() && in[scales_i].numel() > 0) {
      const std::vector<float> sc = in[scales_i].toFloats();
      if (sc.size() != axes.size()) runError("scales has " + std::to_string(sc.size()) + " entries for " + std::to_string(axes.size()) + " axes");
      for (size_t i = 0; i < axes.size(); ++i) {
        if (sc[i] <= 0) runError("scales must be positive");
        scale[axes[i]] = sc[i];
        resized[axes[i]] = x.shape()[axes[i]] * static_cast<double>(sc[i]);
        outs[axes[i]] = static_cast<int64_t>(std::floor(resized[axes[i]]));
      }
    } else {
      runError("neither scales nor sizes given");
    }
    if (a.mode == "nearest" && x.dtype() != DType::kFloat32) {  // any dtype: pure gathering
      Tensor cur = x;
      for (int64_t d = 0; d < r; ++d) {
        if (outs[d] == cur.shape()[d] && scale[d] == 1.0) continue;
        const AxisTaps t = axisTaps(a, cur.shape()[d], outs[d], scale[d], resized[d]);
        Shape so = cur.shape();
        so[d] = outs[d];
        Tensor y = ctx.alloc(cur.dtype(), so);
        const int64_t outer = dimProduct(cur.shape(), 0, d), n_in = cur.shape()[d], inner = dimProduct(cur.shape(), d + 1, r);
        const size_t eb = static_cast<size_t>(ir::dtypeBits(cur.dtype()) / 8);
        const uint8_t* px = static_cast<const uint8_t*>(cur.data());
        uint8_t* py = outData<uint8_t>(y);
        for (int64_t o = 0; o < outer; ++o)
          for (int64_t j = 0; j < outs[d]; ++j)
            std::memcpy(py + (o * outs[d] + j) * inner * eb, px + (o * n_in + t.idx[j]) * inner * eb, inner * eb);
        cur = std::move(y);
      }
      out[0] = std::move(cur);
      return;
    }
    expectType(x, DType::kFloat32, "X");
    Tensor cur = x;
    for (int64_t d = 0; d < r; ++d) {
      if (outs[d] == cur.shape()[d] && scale[d] == 1.0) continue;
      cur = resizeAxis(ctx, cur, d, outs[d], axisTaps(a, cur.shape()[d], outs[d], scale[d], resized[d]));
    }
    out[0] = std::move(cur);
  };
}

Kernel makePad(const NodeInfo& info, std::vector<DType>& out_types) {
  const bool attr = info.opset < 11;
  info.requireInputs(attr ? 1 : 2, attr ? 1 : 4);
  requireMovable(info, 0);
  const std::string mode = info.attrString("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap") info.unsupported("mode '" + mode + "'");
  const std::vector<int64_t> attr_pads = info.attrInts("pads");
  const float attr_value = info.attrFloat("value", 0.0f);
  out_types = {info.inType(0)};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const int64_t r = x.rank();
    std::vector<int64_t> pads_in = attr ? attr_pads : toInts(in[1], "pads");
    std::vector<int64_t> axes;
    if (!attr && in.size() > 3 && !in[3].empty()) axes = toInts(in[3], "axes");
    if (axes.empty())
      for (int64_t d = 0; d < r; ++d) axes.push_back(d);
    const int64_t na = static_cast<int64_t>(axes.size());
    if (static_cast<int64_t>(pads_in.size()) != 2 * na) runError("pads must have 2 entries per padded axis");
    std::vector<int64_t> pb(r, 0), pe(r, 0);
    for (int64_t i = 0; i < na; ++i) {
      const int64_t d = normAxis(axes[i], r);
      pb[d] = pads_in[i];
      pe[d] = pads_in[i + na];
    }
    Shape so(r);
    for (int64_t d = 0; d < r; ++d) {
      so[d] = x.shape()[d] + pb[d] + pe[d];
      if (so[d] < 0) runError("pads make a negative dimension");
      if (mode != "constant" && x.shape()[d] == 0 && so[d] > 0) runError("cannot " + mode + "-pad an empty axis");
    }
    Tensor y = ctx.alloc(x.dtype(), so);
    if (y.numel() == 0) { out[0] = std::move(y); return; }
    const std::vector<int64_t> xs = rowMajorStrides(x.shape());
    // Source index along axis d for output index o, or -1 (constant fill).
    auto src = [&](int64_t d, int64_t o) -> int64_t {
      const int64_t n = x.shape()[d];
      int64_t i = o - pb[d];
      if (i >= 0 && i < n) return i;
      if (mode == "constant") return -1;
      if (mode == "edge") return std::clamp<int64_t>(i, 0, n - 1);
      if (mode == "wrap") return ((i % n) + n) % n;
      if (n == 1) return 0;  // reflect
      const int64_t period = 2 * (n - 1);
      i = ((i % period) + period) % period;
      return i < n ? i : period - i;
    };
    dispatchBytes(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T value{};
      if (!attr && in.size() > 2 && !in[2].empty()) value = in[2].data<T>()[0];
      else if (x.dtype() == DType::kFloat32) { float v = attr_value; std::memcpy(&value, &v, sizeof(T) < 4 ? sizeof(T) : 4); }
      else if (x.dtype() == DType::kFloat64) { double v = attr_value; std::memcpy(&value, &v, sizeof(T)); }
      else value = static_cast<T>(attr_value);
      const T* px = x.data<T>();
      T* py = outData<T>(y);
      const int64_t inner = so[r - 1], rows = y.numel() / inner;
      std::vector<int64_t> inner_src(inner);
      for (int64_t j = 0; j < inner; ++j) inner_src[j] = src(r - 1, j);
      for (int64_t row = 0; row < rows; ++row) {
        int64_t rem = row, off = 0;
        bool fill = false;
        for (int64_t d = r - 2; d >= 0; --d) {
          const int64_t o = rem % so[d];
          rem /= so[d];
          const int64_t s = src(d, o);
          if (s < 0) fill = true;
          else off += s * xs[d];
        }
        T* dst = py + row * inner;
        if (fill) { std::fill(dst, dst + inner, value); continue; }
        for (int64_t j = 0; j < inner; ++j) dst[j] = inner_src[j] < 0 ? value : px[off + inner_src[j]];
      }
    });
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
