// Kernel factories, one group per op family file. registry.cc maps op types to them.
#pragma once
#include "lib/runtime/kernel.h"

namespace ptq::runtime::ops {

#define PTQ_FACTORY(name) Kernel name(const NodeInfo& info, std::vector<DType>& out_types)

// unary.cc: Relu, Sigmoid, Tanh, Erf, Gelu, Exp, Sqrt, ... (one input, same shape)
PTQ_FACTORY(makeUnary);
PTQ_FACTORY(makeClip);
// binary.cc: Add/Sub/Mul/Div/Pow/Mod, Max/Min/Sum/Mean (variadic), comparisons, logic, Where, PRelu
PTQ_FACTORY(makeBinary);
PTQ_FACTORY(makeVariadic);
PTQ_FACTORY(makeWhere);
// cast.cc
PTQ_FACTORY(makeCast);
PTQ_FACTORY(makeCastLike);
// matmul_gemm.cc
PTQ_FACTORY(makeMatMul);
PTQ_FACTORY(makeGemm);
// conv.cc
PTQ_FACTORY(makeConv);
PTQ_FACTORY(makeConvTranspose);
// pool.cc
PTQ_FACTORY(makePool);
PTQ_FACTORY(makeGlobalPool);
// norm.cc
PTQ_FACTORY(makeBatchNorm);
PTQ_FACTORY(makeLayerNorm);
PTQ_FACTORY(makeInstanceNorm);
PTQ_FACTORY(makeSimplifiedLayerNorm);
// softmax.cc
PTQ_FACTORY(makeSoftmax);
// reduce.cc
PTQ_FACTORY(makeReduce);
PTQ_FACTORY(makeArgMinMax);
// shape_ops.cc
PTQ_FACTORY(makeShape);
PTQ_FACTORY(makeSize);
PTQ_FACTORY(makeReshape);
PTQ_FACTORY(makeFlatten);
PTQ_FACTORY(makeSqueeze);
PTQ_FACTORY(makeUnsqueeze);
PTQ_FACTORY(makeIdentity);
PTQ_FACTORY(makeExpand);
PTQ_FACTORY(makeConstantOfShape);
PTQ_FACTORY(makeConstant);
PTQ_FACTORY(makeRange);
// layout.cc
PTQ_FACTORY(makeTranspose);
PTQ_FACTORY(makeConcat);
PTQ_FACTORY(makeSplit);
PTQ_FACTORY(makeTile);
PTQ_FACTORY(makeDepthToSpace);
// gather_slice.cc
PTQ_FACTORY(makeGather);
PTQ_FACTORY(makeGatherElements);
PTQ_FACTORY(makeSlice);
PTQ_FACTORY(makeTrilu);
// resize_pad.cc
PTQ_FACTORY(makeResize);
PTQ_FACTORY(makePad);
// control_flow.cc
PTQ_FACTORY(makeIf);
PTQ_FACTORY(makeLoop);
// rnn.cc
PTQ_FACTORY(makeLSTM);
// index_ops.cc
PTQ_FACTORY(makeCumSum);
PTQ_FACTORY(makeTopK);
PTQ_FACTORY(makeNonZero);
PTQ_FACTORY(makeOneHot);
PTQ_FACTORY(makeEyeLike);
PTQ_FACTORY(makeGatherND);
PTQ_FACTORY(makeScatter);
// quant_ops.cc
PTQ_FACTORY(makeQuantizeLinear);
PTQ_FACTORY(makeDequantizeLinear);
PTQ_FACTORY(makeDynamicQuantizeLinear);
PTQ_FACTORY(makeMatMulNBits);
// integer_ops.cc
PTQ_FACTORY(makeMatMulInteger);
PTQ_FACTORY(makeConvInteger);
// The QuantizeLinear / DequantizeLinear arithmetic itself, in = {x, scale, zero point or empty}, so
// simulated quantization (simulate_quant.cc) computes bit for bit what explicit Q/DQ nodes would.
Tensor quantizeLinear(ExecContext& ctx, const TensorList& in, int64_t axis, int64_t block, DType out_t);
Tensor dequantizeLinear(ExecContext& ctx, const TensorList& in, int64_t axis, int64_t block);

// DynamicQuantizeLinear's arithmetic: x -> {x_q (uint8), scale (float32 scalar), zero point (uint8 scalar)}.
TensorList dynamicQuantizeLinear(ExecContext& ctx, const Tensor& x);
// The integer layers' arithmetic (integer_ops.cc), in = the ONNX node's inputs, so that simulated
// dynamic quantization (simulate_quant.cc) computes bit for bit what the written nodes do.
Tensor matMulInteger(ExecContext& ctx, const TensorList& in);
struct Window;  // op_util.h
Tensor convInteger(ExecContext& ctx, const TensorList& in, const Window& win, int64_t group);

#undef PTQ_FACTORY

// matmul_gemm.cc: y[..., N] = a[..., K] (float32) * b[K, N] (dense, row-major), tiled over threads.
void matmulWeights(ExecContext& ctx, const Tensor& a, const float* b, int64_t K, int64_t N, Tensor& y);

}  // namespace ptq::runtime::ops
