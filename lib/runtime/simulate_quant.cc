#include "lib/runtime/simulate_quant.h"

#include <cmath>

#include "lib/ir/dynamic_quant.h"
#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"
#include "lib/util/error.h"

namespace ptq::runtime {

namespace {
std::vector<int32_t> codeValues(const Tensor& t, const char* what) {
  const int64_t n = t.numel();
  std::vector<int32_t> v(static_cast<size_t>(n));
  switch (t.dtype()) {
    case DType::kInt8: for (int64_t i = 0; i < n; ++i) v[i] = t.data<int8_t>()[i]; break;
    case DType::kUInt8: for (int64_t i = 0; i < n; ++i) v[i] = t.data<uint8_t>()[i]; break;
    case DType::kInt32: for (int64_t i = 0; i < n; ++i) v[i] = t.data<int32_t>()[i]; break;
    default: throwInput(std::string("quantized weight: ") + what + " are " + ir::dtypeName(t.dtype()) +
                        " (expected int8, uint8 or int32)");
  }
  return v;
}
}  // namespace

ir::Tensor dequantizeWeight(const ir::QuantizedWeight& q) {
  using G = ir::QuantizedWeight::Granularity;
  const Tensor& c = q.codes;
  if (c.dtype() == DType::kInt32 && q.bits != 32) throwInput("quantized weight: int32 codes need bits = 32");
  if (q.scales.dtype() != DType::kFloat32) throwInput("quantized weight: scales must be float32");
  const bool has_zp = !q.zero_points.empty();
  if (has_zp && (q.zero_points.dtype() != c.dtype() || q.zero_points.shape() != q.scales.shape()))
    throwInput("quantized weight: zero points " + ir::dtypeName(q.zero_points.dtype()) +
               ir::shapeToString(q.zero_points.shape()) + " do not match codes/scales");
  const std::vector<int32_t> codes = codeValues(c, "codes");
  const std::vector<int32_t> zp = has_zp ? codeValues(q.zero_points, "zero points")
                                         : std::vector<int32_t>(static_cast<size_t>(q.scales.numel()), 0);
  const float* s = q.scales.data<float>();
  // Element (o, a, i) of the codes viewed as [outer, len, inner] around the axis -> parameter index.
  const int64_t r = c.rank();
  int64_t outer = 1, len = c.numel(), inner = 1, nblocks = 1, block = 0;
  if (q.granularity == G::kTensor) {
    if (q.scales.numel() != 1) throwInput("quantized weight: per-tensor scale must hold one value");
  } else {
    if (q.axis < 0 || q.axis >= r) throwInput("quantized weight: axis " + std::to_string(q.axis) + " out of range");
    outer = 1;
    for (int64_t d = 0; d < q.axis; ++d) outer *= c.shape()[d];
    len = c.shape()[q.axis];
    inner = 1;
    for (int64_t d = q.axis + 1; d < r; ++d) inner *= c.shape()[d];
    if (q.granularity == G::kChannel) {
      if (q.scales.numel() != len) throwInput("quantized weight: per-channel scales " +
                                              ir::shapeToString(q.scales.shape()) + " do not match axis " +
                                              std::to_string(q.axis) + " of " + ir::shapeToString(c.shape()));
    } else {
      block = q.block_size;
      if (block <= 0) throwInput("quantized weight: blocked without a positive block_size");
      nblocks = (len + block - 1) / block;
      ir::Shape want = c.shape();
      want[q.axis] = nblocks;
      if (q.scales.shape() != want) throwInput("quantized weight: blocked scales " + ir::shapeToString(q.scales.shape()) +
                                               " should be " + ir::shapeToString(want));
    }
  }
  Tensor y(DType::kFloat32, c.shape());
  float* py = y.mutableData<float>();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t a = 0; a < len; ++a)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t e = (o * len + a) * inner + i;
        int64_t k = 0;
        if (q.granularity == G::kChannel) k = a;
        else if (q.granularity == G::kGroup) k = (o * nblocks + a / block) * inner + i;
        // int32 subtraction, then one float32 product: DequantizeLinear's arithmetic.
        py[e] = static_cast<float>(codes[e] - zp[k]) * s[k];
      }
  return y;
}

namespace {

// The float decomposition of lib/ir/dynamic_quant.h, one ONNX op at a time: every line is the float32
// operation of one written node (ReduceMin/ReduceMax exact, Div/Sub/Add/Mul IEEE, Round half-to-even,
// Clip = min(max(v, lo), hi), Max(a, b) = a >= b ? a : b), so the result is bit-identical.
void fakeQuantRows(const float* x, float* y, int64_t rows, int64_t len, DType t) {
  int32_t qmin_i, qmax_i;
  ir::dynamicRange(t, &qmin_i, &qmax_i);
  const float qmin = static_cast<float>(qmin_i), qmax = static_cast<float>(qmax_i), floor = ir::kDynamicScaleFloor;
  auto maxOp = [](float a, float b) { return a >= b || std::isnan(a) ? a : b; };
  auto clip = [](float v, float lo, float hi) { return std::min(std::max(v, lo), hi); };
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * len;
    float* yr = y + r * len;
    if (qmin < 0) {  // symmetric
      float amax = len ? std::fabs(xr[0]) : 0.0f;
      for (int64_t i = 1; i < len; ++i) amax = std::max(amax, std::fabs(xr[i]));
      const float s = maxOp(amax / qmax, floor);
      for (int64_t i = 0; i < len; ++i) yr[i] = clip(std::nearbyint(xr[i] / s), qmin, qmax) * s;
    } else {
      float mn = len ? xr[0] : 0.0f, mx = mn;
      for (int64_t i = 1; i < len; ++i) { mn = std::min(mn, xr[i]); mx = std::max(mx, xr[i]); }
      const float lo = mn <= 0.0f || std::isnan(mn) ? mn : 0.0f;  // Min(mn, 0)
      const float hi = maxOp(mx, 0.0f);
      const float s = maxOp((hi - lo) / qmax, floor);
      const float z = std::nearbyint(clip(-lo / s, 0.0f, qmax));
      for (int64_t i = 0; i < len; ++i) yr[i] = (clip(std::nearbyint(xr[i] / s) + z, qmin, qmax) - z) * s;
    }
  }
}

Kernel makeDynamicFakeQuantKernel(const ir::ActivationQuant& aq) {
  const DType t = aq.dtype;
  if (t != DType::kInt8 && t != DType::kUInt8 && t != DType::kInt16 && t != DType::kUInt16 && t != DType::kInt4 &&
      t != DType::kUInt4)
    throwInput("act_quant: unsupported dtype " + ir::dtypeName(t));
  if (ir::usesDynamicQuantizeLinear(aq))
    return [](ExecContext& ctx, TensorList& in, TensorList& out) {
      if (in[0].dtype() != DType::kFloat32) runError("fake quantization of a " + ir::dtypeName(in[0].dtype()) + " value");
      const TensorList q = ops::dynamicQuantizeLinear(ctx, in[0]);
      out[0] = ops::dequantizeLinear(ctx, q, 1, 0);
    };
  const bool per_token = aq.per_token;
  return [t, per_token](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    if (x.dtype() != DType::kFloat32) runError("fake quantization of a " + ir::dtypeName(x.dtype()) + " value");
    const int64_t len = per_token ? (x.rank() ? x.shape().back() : 1) : x.numel();
    const int64_t rows = len ? x.numel() / len : 0;
    Tensor y = ctx.alloc(DType::kFloat32, x.shape());
    ops::parallelFor(ctx.threads(), rows, ops::grainFor(4 * len), [&](int64_t b, int64_t e) {
      fakeQuantRows(x.data<float>() + b * len, outData<float>(y) + b * len, e - b, len, t);
    });
    out[0] = std::move(y);
  };
}

}  // namespace

Kernel makeIntegerLayerKernel(const NodeInfo& info) {
  const ir::Node& n = info.node;
  const ir::IntegerLayerForm form = ir::integerLayerForm(n);
  if (form == ir::IntegerLayerForm::kNone) throwInternal(describeNode(n) + ": has no integer form");
  const ir::IntegerLayerWeight w = ir::integerLayerWeight(n);
  const bool conv = form == ir::IntegerLayerForm::kConvInteger;
  const Tensor* wt = info.constInput(1);
  const ops::Window win = conv ? ops::readWindow(info, wt ? wt->rank() - 2 : 0) : ops::Window{};
  const int64_t group = info.attrInt("group", 1);
  return [w, conv, win, group](ExecContext& ctx, TensorList& in, TensorList& out) {
    if (in[0].dtype() != DType::kFloat32) runError("integer layer input is " + ir::dtypeName(in[0].dtype()));
    const TensorList xq = ops::dynamicQuantizeLinear(ctx, in[0]);
    const TensorList args{xq[0], w.codes, xq[2], w.zero_point};
    const Tensor acc = conv ? ops::convInteger(ctx, args, win, group) : ops::matMulInteger(ctx, args);
    // Mul(Cast(acc), Mul(x_scale, w_scale)) [+ bias], channel c of element i: the last axis for the
    // matmul (scale [N]), axis 1 for the convolution (scale [M, 1, ...]).
    const float sx = xq[1].data<float>()[0];
    const int64_t channels = w.scale.numel();
    std::vector<float> prod(static_cast<size_t>(channels));
    for (int64_t c = 0; c < channels; ++c) prod[c] = sx * w.scale.data<float>()[c];
    const Tensor* bias = in.size() > 2 && !in[2].empty() ? &in[2] : nullptr;
    const int64_t cols = acc.shape().back();
    const int64_t inner = conv ? ops::dimProduct(acc.shape(), 2, acc.rank()) : 1;
    const int64_t nch = conv ? acc.shape()[1] : cols;
    if (bias && bias->numel() != nch && bias->numel() != 1)
      runError("bias " + ops::typeShape(*bias) + " does not match " + std::to_string(nch) + " output channels");
    Tensor y = ctx.alloc(DType::kFloat32, acc.shape());
    const int32_t* pa = acc.data<int32_t>();
    float* py = outData<float>(y);
    const int64_t total = acc.numel();
    ops::parallelFor(ctx.threads(), total, ops::grainFor(1), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t c = (conv ? i / inner : i) % nch;
        float v = static_cast<float>(pa[i]) * prod[channels == 1 ? 0 : c];
        if (bias) v = v + bias->data<float>()[bias->numel() == 1 ? 0 : c];
        py[i] = v;
      }
    });
    out[0] = std::move(y);
  };
}

Kernel makeFakeQuantKernel(const ir::ActivationQuant& aq) {
  if (aq.dynamic) return makeDynamicFakeQuantKernel(aq);
  const DType t = aq.dtype;
  const bool ok_type = t == DType::kInt8 || t == DType::kUInt8 || t == DType::kInt16 || t == DType::kUInt16 ||
                       t == DType::kInt4 || t == DType::kUInt4;
  if (!ok_type) throwInput("act_quant: unsupported dtype " + ir::dtypeName(t));
  if (aq.scale.dtype() != DType::kFloat32) throwInput("act_quant: scale must be float32");
  if (!aq.zero_point.empty() && (aq.zero_point.dtype() != t || aq.zero_point.shape() != aq.scale.shape()))
    throwInput("act_quant: zero point must be " + ir::dtypeName(t) + " shaped like the scale");
  // QuantizeLinear's default axis is 1; ActivationQuant uses -1 for "per tensor" (scale numel 1,
  // where the axis is not read).
  const int64_t axis = aq.scale.numel() == 1 ? 1 : aq.axis;
  const Tensor scale = aq.scale, zp = aq.zero_point;
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    if (in[0].dtype() != DType::kFloat32) runError("fake quantization of a " + ir::dtypeName(in[0].dtype()) + " value");
    const Tensor q = ops::quantizeLinear(ctx, {in[0], scale, zp}, axis, 0, t);
    out[0] = ops::dequantizeLinear(ctx, {q, scale, zp}, axis, 0);
  };
}

}  // namespace ptq::runtime
