// Lowers ActivationQuant annotations (set by the qdq pass) into QDQ ONNX:
//
//   x -> Conv            becomes   x -> QuantizeLinear -> DequantizeLinear -> Conv
//
// one Q/DQ pair per tensor, shared by all its readers (a graph output keeps its float value), and,
// for Conv/Gemm whose input and weight are both quantized, the float bias becomes int32 codes with
// scale s_x * s_w[c] behind its own DequantizeLinear: the pattern ONNX Runtime's QDQ fusions turn
// into QLinearConv / QGemm / QLinearMatMul.
//
// quantizeBiases must run before the weights are lowered (it reads their QuantizedWeight scales);
// lowerActivations after (it raises the opset for int4/int16 activations when needed).
#pragma once
#include "lib/ir/graph.h"
#include "lib/pipeline/report.h"

namespace ptq::onnx_io {

void quantizeBiases(ir::Model& model, pipeline::Report& report);
void lowerActivations(ir::Model& model, pipeline::Report& report);

}  // namespace ptq::onnx_io
