// qdq: activation quantization from calibration data (W8A8, W4A8).
//
// Before:  h = Conv(x, W, b)                 x, h float activations
// After:   h = Conv(x, W, b)                 x.act_quant, h.act_quant = {uint8, scale, zero point}
//
// The graph's structure is unchanged here: the pass runs the float model on the calibration
// batches (lib/runtime Session, tapping only the activations it needs), feeds each tapped tensor to
// an observer (lib/quant/observer.h), and attaches one per-tensor ActivationQuant to every input
// and output activation of the selected MatMul/Gemm/Conv layers. The writer then inserts
// QuantizeLinear -> DequantizeLinear pairs (one per tensor, shared by its readers) and an int32
// bias with scale s_x * s_w, the QDQ pattern ONNX Runtime fuses into integer kernels.
#pragma once
#include <memory>
#include <string>

#include "lib/pipeline/pass.h"

namespace ptq::passes {

std::unique_ptr<pipeline::Pass> createQdqPass(const std::string& options_json);

}  // namespace ptq::passes
