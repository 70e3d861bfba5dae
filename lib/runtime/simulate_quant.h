// Simulated quantization (SessionOptions::simulate_quantization): the executor runs the model as the
// writer will lower it, without the graph being rewritten.
//   - a weight with Value::quant is replaced at planning by dequantizeWeight(quant), the float32
//     tensor an ONNX DequantizeLinear of those codes computes;
//   - a value with Value::act_quant is seen by its readers through makeFakeQuantKernel, which is
//     DequantizeLinear(QuantizeLinear(x)) computed by the executor's own Q/DQ kernel code, so the
//     result is bit-identical to a graph with explicit QuantizeLinear -> DequantizeLinear nodes;
//     a dynamic one (ActivationQuant::dynamic) computes its parameters from each tensor the way the
//     written graph does (lib/ir/dynamic_quant.h: DynamicQuantizeLinear -> DequantizeLinear, or the
//     float decomposition, op by op in the same float arithmetic);
//   - a layer with an integer form (ir::integerLayerForm: MatMulInteger / ConvInteger) reads the float
//     activation and runs makeIntegerLayerKernel: DynamicQuantizeLinear, the integer kernel, Cast, the
//     scale product and the bias, with the executor's own kernels' arithmetic.
#pragma once
#include "lib/ir/graph.h"
#include "lib/runtime/kernel.h"

namespace ptq::runtime {

// y = float(code - zero_point) * scale in float32 (zero point 0 when absent), per tensor, per
// channel (along `axis`) or blocked (along `axis`, `block_size`). Codes are int8/uint8 (one per
// byte, any bits) or int32 with bits = 32 (biases: per-tensor or per-channel, no zero point).
// Throws ptq::Error(kInput) when the parts do not fit together.
ir::Tensor dequantizeWeight(const ir::QuantizedWeight& q);

// Kernel with in = {x (float32)}, out = {DQ(Q(x))} for the parameters of `aq`. Throws kInput when
// they are not a valid activation quantization (dtype, scale, zero point).
Kernel makeFakeQuantKernel(const ir::ActivationQuant& aq);

// Kernel for layer info.node (integerLayerForm != kNone) with in = the node's inputs (x float32, the
// weight slot unread: the codes come from its annotation, the bias float32), out = {y float32}.
Kernel makeIntegerLayerKernel(const NodeInfo& info);

}  // namespace ptq::runtime
