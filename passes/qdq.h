// qdq: activation quantization from calibration data (W8A8, W4A8).
//
// Before:  h = Conv(x, W, b)                 x, h float activations; W.quant set by rtn
// After:   h = Conv(x, W, b)                 x.act_quant, h.act_quant = {uint8, scale, zero point};
//                                            b.quant = int32 codes with scale s_x * s_w
//
// The graph's structure is unchanged here: the pass runs the model on the calibration batches *as it
// will be written* (the executor's simulate_quantization: weights already quantized by earlier passes
// are dequantized from their exact codes; option observe = "float" measures on the float weights
// instead), taps the input and output activations of the plan's layers marked quantize_activations
// (and of the other ops listed in activations.op_types), feeds each to an observer
// (lib/quant/observer.h) and attaches one per-tensor ActivationQuant to it. Then it decides the
// int32 biases (bias_quant.h). Legalize inserts QuantizeLinear -> DequantizeLinear pairs (one per
// tensor, shared by its readers): the QDQ pattern ONNX Runtime fuses into integer kernels.
//
// Dynamic (activations.dynamic: true, no calibration data):
// Before:  h = MatMul(x, W)                  W.quant set by rtn
// After:   h = MatMul(x, W)                  x.act_quant = {uint8|int8|..., dynamic, per_token?}, no scale
// Only the layers' inputs are marked (what they would observe as inputs); nothing runs. Legalize
// writes the forms of lib/ir/dynamic_quant.h (8-bit per tensor: DynamicQuantizeLinear -> MatMulInteger
// / ConvInteger, as ONNX Runtime's quantize_dynamic).
#pragma once
#include <memory>

#include "lib/pipeline/pass.h"
#include "lib/pipeline/pass_registry.h"
#include "lib/quant/grid.h"

namespace ptq::passes {

pipeline::PassInfo qdqPassInfo();

// The static per-tensor annotation the qdq pass attaches for a range on a grid of `bits` (4, 8, 16):
// uint/int dtype of that width, scalar scale and zero point (shared with bit-allocation's trials).
std::shared_ptr<ir::ActivationQuant> staticActivationQuant(const quant::GroupParams& params, int bits, bool symmetric);

}  // namespace ptq::passes
