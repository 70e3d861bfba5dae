// Post-Softmax quantizers for attention probabilities (x ∈ [0, 1]), chosen by `SoftmaxGrid`.
// kLogSqrt2 — RepQ-ViT's: probabilities on a log√2 grid,
//   c = round(−2·log2(x / Δ)),  x̂ = Δ · 2^(−c/2)  for 0 ≤ c < 2^b,  x̂ = 0 when c ≥ 2^b (and for x = 0),
// with c clamped at 0 above Δ. Δ (the clip) is chosen from the percentiles {0.999, 0.9999, 0.99999} of
// the calibration probabilities by the L2 error of x̂ on them. ONNX has no log-domain integer op, so
// the quantizer is written as float ops ONNX Runtime runs (fake quantization: the probabilities keep
// exactly the values a log√2 integer kernel would see, the MatMul after it stays float).
// Its relative step is √2 at every bit width: it keeps small probabilities (4-bit: down to 2^-7.5·Δ)
// but costs ~24 dB SQNR on the large ones, so it pays at 4 bits and not at 8.
// kUniform — x̂ = s·clamp(round(x / s), 0, 2^b − 1), s = Δ / (2^b − 1), Δ from the same percentiles and
// the maximum (what a uint8 QLinear kernel would see), written as Div → Round → Clip → Mul.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lib/ir/graph.h"

namespace ptq::passes {

enum class SoftmaxGrid { kLogSqrt2, kUniform };

// The quantizer's value for one probability (the reference the graph ops follow).
float softmaxQuantize(float x, float delta, int bits, SoftmaxGrid grid);

// The clip: the candidate (percentiles 0.999, 0.9999, 0.99999; for kUniform also the maximum) of
// `sample` (probabilities, any order; sorted in place) with the lowest Σ (x − x̂)² over the sample.
// `chosen_percentile` (1 = the maximum) and `error` report it.
float chooseSoftmaxClip(std::vector<float>& sample, int bits, SoftmaxGrid grid, double* chosen_percentile, double* error);

// Inserts the quantizer on input `slot` of `reader` (the attention's context MatMul), before it:
//   kLogSqrt2: Div(Δ) → Log → Mul(−2/ln 2) → Round → [Less(2^b)] → Clip(0, 2^b−1) → Mul(−ln 2/2) → Exp → Mul(Δ) → Where
//   kUniform:  Div(s) → Round → Clip(0, 2^b−1) → Mul(s)
// Returns the number of nodes added.
int64_t insertSoftmaxQuantizer(ir::Graph& g, ir::Node* reader, int slot, float delta, int bits, SoftmaxGrid grid,
                               const std::string& base);

}  // namespace ptq::passes
