// rtn: round-to-nearest weight quantization, the baseline every other method is measured against.
//
// Before:  y = MatMul(x, W)                       W: float32 [K, N] initializer
// After:   y = MatMul(x, W)                       W.quant = {codes int8 [K, N], scales, zero points}
//
// The graph's structure is unchanged: the pass attaches a QuantizedWeight to the weight of every
// layer the plan does not skip, with the plan's settings (lib/pipeline/quant_plan.h), in the main
// graph and in subgraphs; legalize lowers it to DequantizeLinear, MatMulNBits or the packed file. Per
// layer: codes = clamp(round_half_even(W / s) + z), s and z from the group's range (lib/quant/grid.h),
// optionally with an MSE clip search over ratios 1 ... clip_min_ratio in clip_steps steps.
#pragma once
#include <memory>

#include "lib/pipeline/pass.h"
#include "lib/pipeline/pass_registry.h"

namespace ptq::passes {

pipeline::PassInfo rtnPassInfo();

}  // namespace ptq::passes
