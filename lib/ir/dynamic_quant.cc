#include "lib/ir/dynamic_quant.h"

namespace ptq::ir {

bool usesDynamicQuantizeLinear(const ActivationQuant& aq) {
  return aq.dynamic && !aq.per_token && aq.dtype == DType::kUInt8;
}

void dynamicRange(DType t, int32_t* qmin, int32_t* qmax) {
  const int bits = t == DType::kInt4 || t == DType::kUInt4 ? 4 : t == DType::kInt16 || t == DType::kUInt16 ? 16 : 8;
  const bool is_signed = t == DType::kInt4 || t == DType::kInt8 || t == DType::kInt16;
  *qmin = is_signed ? -(1 << (bits - 1)) : 0;
  *qmax = is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
}

namespace {

// All zero points of the weight equal (none stored counts as all equal).
bool uniformZeroPoint(const QuantizedWeight& q) {
  const Tensor& z = q.zero_points;
  if (z.empty() || z.numel() <= 1) return true;
  const uint8_t* p = static_cast<const uint8_t*>(z.data());
  for (int64_t i = 1; i < z.numel(); ++i)
    if (p[i] != p[0]) return false;
  return true;
}

}  // namespace

IntegerLayerForm integerLayerForm(const Node& n) {
  // Activations are quantized in the main graph only (the qdq pass, legalize).
  if (!n.domain().empty() || (n.graph() && n.graph()->parent)) return IntegerLayerForm::kNone;
  const std::string& op = n.opType();
  if (op != "MatMul" && op != "Gemm" && op != "Conv") return IntegerLayerForm::kNone;
  const Value* x = n.input(0);
  const Value* w = n.input(1);
  if (!x || !x->act_quant || !usesDynamicQuantizeLinear(*x->act_quant)) return IntegerLayerForm::kNone;
  if (!w || !w->isConstant() || !w->quant || w->uses().size() != 1) return IntegerLayerForm::kNone;
  if (n.graph() && n.graph()->isGraphOutput(w)) return IntegerLayerForm::kNone;
  const QuantizedWeight& q = *w->quant;
  if (q.bits != 8) return IntegerLayerForm::kNone;
  if (q.granularity == quant::Granularity::kGroup) return IntegerLayerForm::kNone;
  const int64_t rank = q.codes.rank();
  int64_t out_axis = 0;
  if (op == "MatMul") {
    if (rank != 2) return IntegerLayerForm::kNone;
    out_axis = 1;
  } else if (op == "Gemm") {
    if (rank != 2 || n.attrInt("transA", 0) != 0 || n.attrFloat("alpha", 1.0f) != 1.0f) return IntegerLayerForm::kNone;
    if (const Value* c = n.input(2)) {
      // The bias is added after the scale product: beta 1 and one value per output column.
      if (n.attrFloat("beta", 1.0f) != 1.0f || !c->isConstant() || c->initializer.dtype() != DType::kFloat32)
        return IntegerLayerForm::kNone;
      const int64_t cols = n.attrInt("transB", 0) ? q.codes.shape()[0] : q.codes.shape()[1];
      const Shape& cs = c->initializer.shape();
      const bool row = (cs.size() == 1 && cs[0] == cols) || (cs.size() == 2 && cs[0] == 1 && cs[1] == cols);
      if (!row && c->initializer.numel() != 1) return IntegerLayerForm::kNone;
    }
    out_axis = n.attrInt("transB", 0) ? 0 : 1;
  } else {
    if (rank != 3 && rank != 4) return IntegerLayerForm::kNone;
    if (!uniformZeroPoint(q)) return IntegerLayerForm::kNone;
    if (const Value* b = n.input(2))
      if (!b->isConstant() || b->initializer.dtype() != DType::kFloat32 || b->initializer.numel() != q.codes.shape()[0])
        return IntegerLayerForm::kNone;
    out_axis = 0;
  }
  if (q.granularity == quant::Granularity::kChannel && q.axis != out_axis) return IntegerLayerForm::kNone;
  return op == "Conv" ? IntegerLayerForm::kConvInteger : IntegerLayerForm::kMatMulInteger;
}

IntegerLayerWeight integerLayerWeight(const Node& n) {
  const QuantizedWeight& q = *n.input(1)->quant;
  const bool per_channel = q.granularity == quant::Granularity::kChannel;
  const bool transpose = n.opType() == "Gemm" && n.attrInt("transB", 0) != 0;
  IntegerLayerWeight r;
  r.codes = q.codes;
  if (transpose) {
    const int64_t rows = q.codes.shape()[0], cols = q.codes.shape()[1];
    r.codes = Tensor(q.codes.dtype(), {cols, rows});
    const uint8_t* src = static_cast<const uint8_t*>(q.codes.data());
    uint8_t* dst = r.codes.mutableData<uint8_t>();
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) dst[j * rows + i] = src[i * cols + j];
  }
  if (!q.zero_points.empty())
    r.zero_point = uniformZeroPoint(q) ? Tensor::fromBytes(q.zero_points.dtype(), {}, q.zero_points.data(), 1)
                                       : q.zero_points.reshaped({q.zero_points.numel()});
  if (!per_channel) {
    r.scale = q.scales.reshaped({});
  } else if (n.opType() == "Conv") {
    Shape s(static_cast<size_t>(q.codes.rank() - 1), 1);
    s[0] = q.scales.numel();
    r.scale = q.scales.reshaped(s);
  } else {
    r.scale = q.scales.reshaped({q.scales.numel()});
  }
  return r;
}

}  // namespace ptq::ir
