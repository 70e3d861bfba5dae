// legalize: the last stage, always run by the driver after the pipeline (and by `unpack`): turns the
// plan's decisions, held as annotations on the IR (Value::quant on weights and int32 biases,
// Value::act_quant on activations), into standard runnable ONNX:
//
//   weights      W (float initializer) -> DequantizeLinear(W_quantized, W_scale[, W_zero_point]):
//                int8/uint8 per-channel at opset 13; int4/uint4 or block-wise at opset 21; int32
//                biases at opset 10/13. In the main graph and in If/Loop/Scan bodies; a weight read
//                from an enclosing scope keeps its name on the DequantizeLinear output, so the
//                subgraph's read still finds it.
//   matmulnbits  MatMul(A, W) -> com.microsoft.MatMulNBits(A, B_packed, scales[, zero_points]) for
//                MatMul weights with 2/4/8 bits whose blocks run along K with a power-of-two block size
//                (per-channel and per-tensor scales are replicated over K blocks, which is exact); every
//                other weight falls back to the DequantizeLinear form.
//   activations  x -> QuantizeLinear -> DequantizeLinear -> readers, one pair per tensor (graph
//                outputs keep their float value).
//   dynamic      (ActivationQuant::dynamic) the forms of lib/ir/dynamic_quant.h: 8-bit per-tensor
//                activations into 8-bit per-tensor/per-channel weights become ONNX Runtime's
//                quantize_dynamic form, DynamicQuantizeLinear -> MatMulInteger / ConvInteger -> Cast ->
//                Mul(x_scale * W_scale) (-> Add(bias)); other readers read DequantizeLinear of the
//                DynamicQuantizeLinear, or (4/16-bit, symmetric, per token) a float decomposition with
//                ReduceMin/ReduceMax (last axis for per token) -> Div/Round/Add/Clip/Sub/Mul.
//   opset        raised (opset_upgrade.h) when the forms need it; the result says so.
//
// formats/ then only serializes. The result lists what was written per weight (form, bytes), which
// the driver merges into the report's per-layer records.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lib/ir/graph.h"

namespace ptq::legalize {

struct LegalizeOptions {
  bool prefer_matmulnbits = false;
  int64_t matmulnbits_accuracy_level = 0;  // MatMulNBits accuracy_level attribute (0 = unset)
};

struct WrittenWeight {
  const ir::Value* weight = nullptr;  // identity only: the float value is erased by the lowering
  std::string name;
  std::string form;                   // "DequantizeLinear" | "MatMulNBits" | "MatMulInteger" | "ConvInteger"
  int64_t bytes = 0;                  // codes + scales + zero points as stored
};

struct LegalizeResult {
  std::vector<WrittenWeight> weights;  // quantized weights and int32 biases, in lowering order
  int64_t int32_biases = 0;
  int64_t activation_pairs = 0;        // QuantizeLinear/DequantizeLinear pairs inserted
  int64_t integer_layers = 0;          // layers written as MatMulInteger / ConvInteger
  int64_t dynamic_activations = 0;     // dynamic activations read by other ops (DequantizeLinear or decomposition)
  int64_t opset_before = 0, opset_after = 0;
  std::vector<std::string> warnings;
};

LegalizeResult legalize(ir::Model& model, const LegalizeOptions& opts);

// Pieces, for tests, in the order legalize runs them: integer layers, weights (and biases), static
// activations, then the remaining readers of dynamic activations.
void lowerIntegerLayers(ir::Model& model, LegalizeResult& result);
void lowerQuantizedWeights(ir::Model& model, const LegalizeOptions& opts, LegalizeResult& result);
void lowerActivations(ir::Model& model, LegalizeResult& result);
void lowerDynamicActivations(ir::Model& model, LegalizeResult& result);

}  // namespace ptq::legalize
