// int32 biases for quantized Conv/Gemm layers: where the layer's input activation and its weight are
// both quantized (per tensor or per channel), the float bias b becomes codes round(b / (s_x * s_w[c]))
// with scale s_x * s_w[c] — the QDQ pattern ONNX Runtime fuses into QLinearConv / QGemm. Decided as an
// annotation (Value::quant with bits = 32) so that the executor's simulated run, the ONNX writer and
// the report all see the same bias. Idempotent: biases already annotated are left alone.
#pragma once
#include <cstdint>

#include "lib/ir/graph.h"

namespace ptq::passes {

// Annotates every eligible bias of the main graph; returns how many.
int64_t annotateBiases(ir::Graph& graph);

}  // namespace ptq::passes
