// rtn: round-to-nearest weight quantization, the baseline every other method is measured against.
//
// Before:  y = MatMul(x, W)                       W: float32 [K, N] initializer
// After:   y = MatMul(x, W)                       W.quant = {codes int8 [K, N], scales, zero points}
//
// The graph's structure is unchanged: the pass attaches a QuantizedWeight to each selected weight
// (see lib/pipeline/layer_policy.h); the writer lowers it to DequantizeLinear, MatMulNBits or the
// packed file. Per layer: codes = clamp(round_half_even(W / s) + z), s and z from the group's range
// (lib/quant/grid.h), optionally with an MSE clip search.
#pragma once
#include <memory>
#include <string>

#include "lib/pipeline/pass.h"

namespace ptq::passes {

std::unique_ptr<pipeline::Pass> createRtnPass(const std::string& options_json);

}  // namespace ptq::passes
