#include "lib/runtime/simulate_quant.h"

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

Kernel makeFakeQuantKernel(const ir::ActivationQuant& aq) {
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
