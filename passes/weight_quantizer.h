// Turns a layer's WeightSettings into a QuantizedWeight for a float weight, shared by rtn and (later)
// gptq: maps channel/group/tensor granularity onto ONNX DequantizeLinear's forms and fills the error
// figures.
#pragma once
#include <memory>

#include "lib/ir/graph.h"
#include "lib/pipeline/config.h"

namespace ptq::passes {

// Signed codes for symmetric grids, unsigned (with a zero point) for asymmetric ones; writers convert
// (MatMulNBits wants unsigned codes: code + 2^(b-1) with its default zero point).
// `clip_steps` / `clip_min_ratio`: the MSE clip search's grid (quant::QuantOptions), used when
// s.clip_search is kMse.
std::shared_ptr<ir::QuantizedWeight> quantizeWeight(const ir::Tensor& w, int64_t reduce_axis, int64_t channel_axis,
                                                     const pipeline::WeightSettings& s, int clip_steps = 20,
                                                     float clip_min_ratio = 0.5f);

}  // namespace ptq::passes
