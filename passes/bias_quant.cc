#include "passes/bias_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ptq::passes {

using ir::DType;
using ir::Tensor;
using ir::Value;
using QW = ir::QuantizedWeight;

int64_t annotateBiases(ir::Graph& g) {
  int64_t count = 0;
  for (ir::Node* n : g.nodes()) {
    if (n->opType() != "Conv" && n->opType() != "Gemm") continue;
    Value* x = n->input(0);
    Value* w = n->input(1);
    Value* b = n->input(2);
    if (!x || !x->act_quant || !w || !w->quant || !b || !b->isConstant() || b->quant) continue;
    if (x->act_quant->dynamic) continue;  // s_x is known only at run time: the bias stays float
    if (b->initializer.dtype() != DType::kFloat32 || b->initializer.rank() != 1 || b->uses().size() != 1) continue;
    if (g.isGraphOutput(b)) continue;
    const QW& q = *w->quant;
    if (q.granularity == quant::Granularity::kGroup || q.bits > 8) continue;  // no integer kernel takes blocked weights
    if (n->opType() == "Gemm" && (n->attrFloat("alpha", 1.f) != 1.f || n->attrFloat("beta", 1.f) != 1.f)) continue;
    const int64_t channels = b->initializer.numel();
    const bool per_channel = q.granularity == quant::Granularity::kChannel;
    if (per_channel && q.scales.numel() != channels) continue;
    const float sx = x->act_quant->scale.data<float>()[0];
    const float* sw = q.scales.data<float>();
    // Per-tensor weights give one bias scale (a scalar DequantizeLinear, valid at opset 10);
    // per-channel ones a vector along axis 0 (opset 13, which their own DequantizeLinear needs too).
    auto bq = std::make_shared<QW>();
    bq->bits = 32;
    bq->is_signed = true;
    bq->symmetric = true;
    bq->granularity = per_channel ? quant::Granularity::kChannel : quant::Granularity::kTensor;
    bq->axis = 0;
    bq->method = "int32 bias";
    bq->codes = Tensor(DType::kInt32, {channels});
    bq->scales = Tensor(DType::kFloat32, per_channel ? ir::Shape{channels} : ir::Shape{});
    const float* bf = b->initializer.data<float>();
    int32_t* codes = bq->codes.mutableData<int32_t>();
    float* scales = bq->scales.mutableData<float>();
    const double lim = static_cast<double>(std::numeric_limits<int32_t>::max());
    double err = 0, sig = 0;
    for (int64_t c = 0; c < channels; ++c) {
      const float s = sx * sw[per_channel ? c : 0];
      scales[per_channel ? c : 0] = s;
      const double v = s > 0 ? std::nearbyint(static_cast<double>(bf[c]) / s) : 0.0;
      codes[c] = static_cast<int32_t>(std::max(-lim, std::min(lim, v)));
      const double back = static_cast<double>(static_cast<float>(codes[c]) * s);
      err += (back - bf[c]) * (back - bf[c]);
      sig += static_cast<double>(bf[c]) * bf[c];
    }
    bq->mse = channels ? err / static_cast<double>(channels) : 0.0;
    bq->sqnr_db = err > 0 ? 10.0 * std::log10(sig / err) : 200.0;
    b->quant = bq;
    ++count;
  }
  return count;
}

}  // namespace ptq::passes
