// Edits shared by the function-preserving rewrites (fold-norms, smooth-quant, later rotation):
// scaling a linear layer's input rows or output columns, adding to its bias (creating one), owning
// a constant before changing it (untying a weight shared with other readers), and keeping the
// quantization plan in step. Matching lives in lib/ir/patterns.h; these only apply what a pass has
// already decided is safe.
#pragma once
#include <string>
#include <vector>

#include "lib/ir/patterns.h"
#include "lib/pipeline/quant_plan.h"

namespace ptq::passes {

// The constant at input `slot` of `n`, made private to `n`: if anything else reads it (another
// node, a subgraph by name, a graph output), `n` gets a copy ("<name>_<pass>") and the plan follows.
ir::Value* ownConstant(ir::Node* n, int slot, pipeline::QuantPlan& plan, const std::string& pass);

// A tied head reading its weight through Transpose(E) gets Eᵀ as a constant of its own (E and its
// other readers unchanged) and becomes a plan layer; no-op for other linears. Call before scaling.
void materializeWeight(ir::LinearMatch& l, pipeline::QuantPlan& plan, const pipeline::QuantConfig& config,
                       const std::string& pass);

// The layer's weight / bias data, made private to it first (ownConstant), for in-place edits; the
// layer must have a bias for ownedBiasData. A tied head must be materialized first.
float* ownedWeightData(ir::LinearMatch& l, pipeline::QuantPlan& plan, const std::string& pass);
float* ownedBiasData(ir::LinearMatch& l, pipeline::QuantPlan& plan, const std::string& pass);

// W[i][:] *= s[i] for every input channel i (s has in_features entries).
void scaleInputRows(ir::LinearMatch& l, const std::vector<double>& s, pipeline::QuantPlan& plan, const std::string& pass);
// W[:][o] *= s[o] and bias[o] *= s[o] for every output channel o.
void scaleOutputColumns(ir::LinearMatch& l, const std::vector<double>& s, pipeline::QuantPlan& plan,
                        const std::string& pass);
// y += delta (out_features entries): into the existing bias, else a new one — an Add after a
// MatMul (the MatMul keeps its name, so config globs still match), Gemm's C input.
void addToBias(ir::LinearMatch& l, const std::vector<double>& delta, pipeline::QuantPlan& plan, const std::string& pass);

// v[i] = v[i] * s[i] on a constant float32 per-channel vector owned by `n` (γ, β).
void scaleChannelVector(ir::Node* n, int slot, const std::vector<double>& s, pipeline::QuantPlan& plan,
                        const std::string& pass);
// Sets a per-channel constant of `n` to `value` everywhere (γ ← 1, β ← 0).
void fillChannelVector(ir::Node* n, int slot, float value, pipeline::QuantPlan& plan, const std::string& pass);

// Adds a history note to the plan record of the layer whose weight `l` reads (if it is a layer).
void noteLayer(pipeline::QuantPlan& plan, const ir::LinearMatch& l, const std::string& pass, const std::string& text);

}  // namespace ptq::passes
