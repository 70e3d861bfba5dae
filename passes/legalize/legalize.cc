#include "passes/legalize/legalize.h"

#include "passes/bias_quant.h"

namespace ptq::legalize {

LegalizeResult legalize(ir::Model& model, const LegalizeOptions& opts) {
  LegalizeResult r;
  r.opset_before = model.opsetVersion();
  // Biases are decided by the qdq pass; a model read back from a .ptq file carries only the weights'
  // and activations' parameters, so the same rule decides them again here (idempotent).
  passes::annotateBiases(*model.graph);
  lowerIntegerLayers(model, r);  // first: it writes its weights' codes itself
  lowerQuantizedWeights(model, opts, r);
  lowerActivations(model, r);
  lowerDynamicActivations(model, r);
  if (r.int32_biases)
    r.warnings.push_back(std::to_string(r.int32_biases) + " Conv/Gemm biases stored as int32 with scale s_x * s_w");
  r.opset_after = model.opsetVersion();
  return r;
}

}  // namespace ptq::legalize
