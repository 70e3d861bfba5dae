// Weight arithmetic of rotation (hadamard-rotation), in float64: multiplying a constant by an
// orthogonal Q = D·T (D = diag(±1) signs, T a Hadamard transform) along one axis, and removing the
// mean along an axis (QuaRot's LayerNorm → RMSNorm step). Q acts on vectors along the middle axis of
// the data viewed as [outer, n, inner]:  v ← (v − mean(v)) ∘ d · T.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lib/ir/patterns.h"
#include "lib/pipeline/quant_plan.h"
#include "lib/quant/hadamard.h"

namespace ptq::passes {

struct AxisTransform {
  const quant::HadamardTransform* t = nullptr;  // null: no rotation
  const std::vector<double>* signs = nullptr;   // null: no signs (D = I)
  bool center = false;                          // subtract the mean first
};

void transformAxis(float* data, int64_t outer, int64_t n, int64_t inner, const AxisTransform& q, int threads);

// A linear y = x·W + b whose input is rotated (x' = x·Q): W ← Qᵀ·W, so that x'·W' = x·W.
void rotateLinearInput(ir::LinearMatch& l, const AxisTransform& q, pipeline::QuantPlan& plan, const std::string& pass,
                       int threads);
// A linear whose output is to be rotated (y' = y·Q): W ← W·Q, b ← b·Q (center: zero-mean outputs first).
void rotateLinearOutput(ir::LinearMatch& l, const AxisTransform& q, pipeline::QuantPlan& plan, const std::string& pass,
                        int threads);

}  // namespace ptq::passes
