// Graph edits of rotation (hadamard-rotation): the online Hadamard transform as ops ONNX Runtime
// runs, and LayerNorm rewritten as RMSNorm once the residual stream is zero-mean.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lib/ir/graph.h"
#include "lib/ir/patterns.h"
#include "lib/quant/hadamard.h"

namespace ptq::passes {

// y = x·T over x's last axis (n = t.n), inserted before `before`, as small constant MatMuls:
//   Reshape(x, [-1, f_1, r_1]) → MatMul(F_1ᵀ, ·) → ... → Reshape(·, [-1, f_k]) → MatMul(·, F_k) → Reshape(·, Shape(x))
// where r_i = Π_{j>i} f_j (leading blocks of a block-diagonal T are untouched). The constants are
// f_i × f_i floats (kilobytes), the work n·Σ f_i per row. A single factor is one MatMul(x, F).
// With `signs` (n entries ±1), x is first multiplied by them (Mul by a constant [n]): y = (x ∘ d)·T.
// Returns y; `x`'s other readers are unchanged. `nodes_added` counts the inserted nodes.
ir::Value* insertOnlineHadamard(ir::Graph& g, ir::Node* before, ir::Value* x, const quant::HadamardTransform& t,
                                const std::vector<double>* signs, const std::string& base, int64_t* nodes_added);

// Whether `m`'s nodes can be rewritten as an RMSNorm (a fused LayerNormalization may not expose its
// optional Mean / InvStdDev outputs); `why` says what stops it.
bool canRewriteAsRms(const ir::NormMatch& m, std::string* why);
// LayerNorm → RMSNorm over the last axis with the same ε (valid when the input has zero mean):
// a fused LayerNormalization becomes Mul(x, x) → ReduceMean → Add(ε) → Sqrt → Div(x, ·); a
// decomposed one loses its mean subtraction. Identity γ/β are dropped. Opset-aware (ReduceMean's
// axes are an input from opset 18).
void rewriteAsRms(ir::Graph& g, const ir::NormMatch& m, int64_t opset);

}  // namespace ptq::passes
