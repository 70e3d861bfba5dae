// One plan layer through the GPTQ solver: the weight (MatMul [K, N], Gemm [N, K] or [K, N], Conv
// [O, C/group, kh, kw]) flattened to the solver's [output channels, reduction] matrix in the column
// order of its Hessian (hessian.h; conv columns (kh, kw, c), one solve per conv group), the plan's
// WeightSettings turned into grid parameters laid out the way passes/weight_quantizer.h lays them out
// (ONNX DequantizeLinear per-tensor / per-axis / blocked forms, the same fallbacks), and the solver's
// codes written back into the weight's shape. With an identity Hessian the result is byte-identical to
// round-to-nearest (a test holds it to that), so the writers see the same layout from both methods.
#pragma once
#include <memory>

#include "lib/ir/graph.h"
#include "lib/pipeline/quant_plan.h"

namespace ptq::passes {

struct GptqLayerOptions {
  double damp = 0.01;
  int64_t block_size = 128;
  bool act_order = false;
  bool static_groups = false;
  int clip_steps = 20;
  float clip_min_ratio = 0.5f;
  int threads = 1;
  bool measure = true;  // compute the output errors of GPTQ and of RTN (two GEMMs of rows x cols^2)
};

struct GptqLayerResult {
  std::shared_ptr<ir::QuantizedWeight> quant;
  double loss = 0;      // ||W X - W^ X||^2 / N with the GPTQ codes (measure)
  double rtn_loss = 0;  // the same with round-to-nearest codes on the same grid (measure)
  double damp = 0;      // damping fraction used (largest over conv groups)
  int damp_retries = 0;
  int64_t dead_columns = 0;
};

// Throws ptq::Error naming nothing (the caller adds the layer) for shapes that do not fit the Hessian.
GptqLayerResult gptqLayer(const ir::Tensor& w, int64_t reduce_axis, int64_t channel_axis,
                          const pipeline::WeightSettings& ws, const pipeline::LayerHessian& h, const GptqLayerOptions& o);

}  // namespace ptq::passes
