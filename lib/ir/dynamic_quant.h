// Dynamic activation quantization (ActivationQuant::dynamic): the rules that decide how each case is
// written, shared by legalize (which writes the forms) and the executor's simulate_quantization (which
// must compute bit for bit what the executor computes on the written graph).
//
// The activation x itself:
//   uint8, per tensor        DynamicQuantizeLinear(x) -> (x_q, x_scale, x_zero_point): ONNX's own op.
//   everything else          float ops over the whole tensor, or per token over the last axis (keepdims):
//     (int4/int8/int16 symmetric, uint4/uint16, or per token)
//     asymmetric (unsigned): lo = Min(ReduceMin(x), 0), hi = Max(ReduceMax(x), 0)
//                            s  = Max((hi - lo) / qmax, floor),  z = Round(Clip(-lo / s, 0, qmax))
//                            y  = (Clip(Round(x / s) + z, 0, qmax) - z) * s
//     symmetric (signed):    s  = Max(ReduceMax(Abs(x)) / qmax, floor)
//                            y  = Clip(Round(x / s), -qmax - 1, qmax) * s
//     (Round is round-half-to-even; `floor` keeps an all-zero row at 0 instead of 0/0.)
// A reader of x is either an integer layer (below), which takes x_q, x_scale, x_zero_point, or any
// other op, which reads the float value DequantizeLinear(x_q, x_scale, x_zero_point), resp. y.
//
// Integer layers — ONNX Runtime's quantize_dynamic form, run by its integer kernels:
//   MatMul(x, W)        -> Mul(Cast(MatMulInteger(x_q, W_q, x_zp[, W_zp])), x_scale * W_scale)
//   Gemm(x, W, C)       -> the same with W transposed offline when transB, then Add(C)
//   Conv(x, W, B)       -> Mul(Cast(ConvInteger(x_q, W_q, x_zp[, W_zp])), x_scale * W_scale[M,1..]) + B[M,1..]
// when x is uint8 per-tensor dynamic, W is an 8-bit weight quantized per tensor or per output channel
// read by this layer only, and (Gemm) alpha = beta = 1, transA = 0; (Conv) W's zero points are all
// equal (ONNX Runtime's ConvInteger takes a scalar weight zero point only). Otherwise the layer keeps
// its float op on the dequantized activation and its weight's own form (DequantizeLinear, MatMulNBits).
#pragma once
#include <cstdint>

#include "lib/ir/graph.h"

namespace ptq::ir {

// Smallest scale a dynamic decomposition uses (2^-100): an all-zero row quantizes to 0, not NaN.
constexpr float kDynamicScaleFloor = 7.88860905e-31f;

enum class IntegerLayerForm { kNone, kMatMulInteger, kConvInteger };

// Whether `aq` is dynamic and written as DynamicQuantizeLinear (uint8, per tensor).
bool usesDynamicQuantizeLinear(const ActivationQuant& aq);
// The integer form of layer `n` (MatMul, Gemm or Conv), or kNone. Reads only the node, its inputs'
// annotations and its attributes.
IntegerLayerForm integerLayerForm(const Node& n);
// The weight operands of an integer layer as written (and simulated): codes int8/uint8 ([K, N] for
// MatMulInteger, W transposed for Gemm with transB; W's shape for ConvInteger), zero point (empty when
// W has none stored, a scalar when all are equal, else [N]) and scale (float32: a scalar, [N], or
// [M, 1(, 1)] for ConvInteger so that it broadcasts over the output channels).
struct IntegerLayerWeight {
  Tensor codes;
  Tensor zero_point;
  Tensor scale;
};
// Requires integerLayerForm(n) != kNone.
IntegerLayerWeight integerLayerWeight(const Node& n);
// The code range of a dynamic activation's dtype: [qmin, qmax] (int4: -8..7, uint8: 0..255, ...).
void dynamicRange(DType t, int32_t* qmin, int32_t* qmax);

}  // namespace ptq::ir
