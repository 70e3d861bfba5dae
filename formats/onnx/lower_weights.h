// Lowers QuantizedWeight annotations into runnable ONNX, in one of two forms:
//
//   qdq:          W (float initializer)  ->  DequantizeLinear(W_quantized, W_scale[, W_zero_point])
//                 int8/uint8 per-channel at opset 13; int4/uint4 or block-wise at opset 21 (the
//                 model's opset is raised when needed, see opset_upgrade.h).
//   matmulnbits:  MatMul(A, W)  ->  com.microsoft.MatMulNBits(A, B_packed, scales[, zero_points])
//                 for MatMul weights with 2/4/8 bits whose blocks run along K with a power-of-two
//                 block size (per-channel and per-tensor scales are replicated over K blocks, which
//                 is exact); every other weight falls back to the qdq form.
//
// Fills one LayerRecord per quantized weight (bits, error figures, bytes, form) in the report.
#pragma once
#include "lib/ir/graph.h"
#include "lib/pipeline/report.h"

namespace ptq::onnx_io {

struct LoweringOptions {
  bool prefer_matmulnbits = false;
  int64_t matmulnbits_accuracy_level = 0;  // MatMulNBits accuracy_level attribute (0 = unset)
};

void lowerQuantizedWeights(ir::Model& model, const LoweringOptions& opts, pipeline::Report& report);

// Puts the report record of a quantized (not yet lowered) weight into `report`, replacing an earlier
// one for the same weight: its first reader, bits, granularity, error figures, bytes, and `form`.
void recordQuantizedLayer(const ir::Value& w, const std::string& form, int64_t bytes_after, pipeline::Report& report);

}  // namespace ptq::onnx_io
