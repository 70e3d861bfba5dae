// Simulated quantization (SessionOptions::simulate_quantization): the executor runs the model as the
// writer will lower it, without the graph being rewritten.
//   - a weight with Value::quant is replaced at planning by dequantizeWeight(quant), the float32
//     tensor an ONNX DequantizeLinear of those codes computes;
//   - a value with Value::act_quant is seen by its readers through makeFakeQuantKernel, which is
//     DequantizeLinear(QuantizeLinear(x)) computed by the executor's own Q/DQ kernel code, so the
//     result is bit-identical to a graph with explicit QuantizeLinear -> DequantizeLinear nodes.
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

}  // namespace ptq::runtime
