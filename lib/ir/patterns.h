// Read-only matchers for the graph shapes the outlier passes rewrite (fold-norms, smooth-quant, and
// later rotation and reparameterization): linear layers, normalizations (fused and decomposed, as
// exporters emit them), the channel-preserving paths between a norm and the linears reading it,
// embeddings and residual adds. Nothing here changes the graph: a pass matches first, checks that
// the whole rewrite is safe, and only then edits, so a model is never left half-rewritten.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/ir/graph.h"

namespace ptq::ir {

// Whether `n` reads only the shape of its inputs (Shape, Size): scaling a tensor's values does not
// change what such a reader computes.
bool readsOnlyShape(const Node& n);
// The uses of `v` that read its values (every use except Shape / Size).
std::vector<Value::Use> dataUses(const Value* v);
// A constant float32 initializer of `n`'s graph, or nullptr.
Value* floatConstant(Value* v);

// A linear layer y = x·W (+ b) with a constant float32 2-D weight:
//   MatMul(x, W[in, out]) optionally followed by Add(·, b[out]) (the MatMul's only reader), where W
//   may also be Transpose(E) of a constant E [out, in] (a tied LM head), or
//   Gemm(x, W, C) with transA = 0, W [in, out] or [out, in] (transB = 1), C absent or constant 1-D [out].
struct LinearMatch {
  Node* node = nullptr;            // the MatMul or Gemm
  Value* input = nullptr;          // the activation x
  Value* weight = nullptr;         // the constant W
  bool weight_transposed = false;  // W is stored [out, in] (Gemm transB = 1, or read through weight_view)
  Node* weight_view = nullptr;     // MatMul(x, Transpose(E)): the Transpose of a constant E [out, in]
                                   // (tied input/output embeddings); W = Eᵀ, `weight` = E
  Node* bias_add = nullptr;        // the Add holding the bias after a MatMul, or null
  int bias_input = -1;             // which input of bias_add (or 2 for Gemm's C) is the bias
  Value* bias = nullptr;           // the constant bias [out], or null
  float alpha = 1.0f, beta = 1.0f; // Gemm's factors (1 for MatMul)
  int64_t in_features = 0, out_features = 0;
  Value* output = nullptr;         // y, after the bias

  // W[i][o] lives at weight data [i * out + o] or, transposed, [o * in + i].
  int64_t index(int64_t i, int64_t o) const { return weight_transposed ? o * in_features + i : i * out_features + o; }
};
std::optional<LinearMatch> matchLinear(Node* n);

enum class NormKind { kLayerNorm, kRmsNorm };

// A normalization over the last axis followed by its affine part: y = norm(x) · γ + β.
// Fused forms: LayerNormalization (axis -1), com.microsoft SimplifiedLayerNormalization (RMSNorm).
// Decomposed forms (what torch.onnx emits for hand-written norms):
//   LayerNorm: ReduceMean → Sub → Pow(2) | Mul(d, d) → ReduceMean → Add(ε) → Sqrt → Div | Reciprocal·Mul
//   RMSNorm:   Pow(2) | Mul(x, x) → ReduceMean → Add(ε) → Sqrt → Div(x, ·) | Div(1, ·)·Mul | Reciprocal·Mul
// each followed by an optional Mul(γ) and (LayerNorm) Add(β) with constant float32 [C] operands.
struct NormMatch {
  NormKind kind = NormKind::kLayerNorm;
  std::string form;             // "LayerNormalization", "SimplifiedLayerNormalization", "decomposed RMSNorm", ...
  std::vector<Node*> nodes;     // every node of the norm, in graph order
  Value* input = nullptr;       // x
  Value* output = nullptr;      // y (after γ and β)
  Node* gamma_node = nullptr;   // the node applying γ (the fused norm, or the Mul), null when there is none
  int gamma_input = -1;         // its input slot holding γ
  Node* beta_node = nullptr;    // the node applying β (the fused norm, or the Add), null when there is none
  int beta_input = -1;
  int64_t channels = 0;         // C (from γ or β; 0 when the norm has neither)

  Value* gamma() const { return gamma_node ? gamma_node->input(static_cast<size_t>(gamma_input)) : nullptr; }
  Value* beta() const { return beta_node ? beta_node->input(static_cast<size_t>(beta_input)) : nullptr; }
  // The norm's name for messages: its first node's name (or output), e.g. "/blocks.0/n1/LayerNormalization".
  std::string name() const;
};
// Every norm of `g` (not its subgraphs), in graph order.
std::vector<NormMatch> matchNorms(Graph& g);

// The linear layers that read `v` as their activation, directly or through channel-preserving ops
// (Gather on an axis other than the last: ViT's class-token pick), or why that set is not the whole
// story: `blocker` is the first data reader that is neither (and `why` says what it is).
struct LinearReaders {
  std::vector<LinearMatch> linears;  // in graph order
  std::vector<Node*> through;        // the channel-preserving nodes on the way
  Node* blocker = nullptr;
  std::string why;                   // "" when every data reader was accounted for
  bool ok() const { return why.empty(); }
};
LinearReaders linearReaders(Value* v);

// Whether every use of the constant `w` is one of `nodes` (else a rewrite must untie it first).
bool usedOnlyBy(const Value* w, const std::vector<Node*>& nodes);

// An embedding lookup: Gather(table[vocab, hidden] constant float32, ids integer) on axis 0.
struct EmbeddingMatch {
  Node* node = nullptr;
  Value* table = nullptr;
  Value* output = nullptr;
};
std::optional<EmbeddingMatch> matchEmbedding(Node* n);

// How a fused projection's output (q/k/v in one MatMul) is cut into column blocks: a Split or Slices
// on the last axis, or (ViT style) a Reshape whose last dims are [parts, heads, head_dim].
struct OutputSplit {
  std::string form;                                  // "Split", "Slice", "Reshape"
  std::vector<std::pair<int64_t, int64_t>> columns;  // [begin, end) of each block, in order
};
std::optional<OutputSplit> matchOutputSplit(const LinearMatch& l);

// Scaled dot-product attention around a Softmax: MatMul(q, kᵀ) → optional Div/Mul by a constant →
// optional mask (Where, Add) → Softmax(last axis) → MatMul(probs, v).
struct AttentionMatch {
  Node* scores = nullptr;   // MatMul(q, kᵀ)
  Node* scale = nullptr;    // the Div / Mul by a constant, or null
  Node* mask = nullptr;     // the Where / Add, or null
  Node* softmax = nullptr;
  Node* context = nullptr;  // MatMul(probs, v)
  Value* q = nullptr;
  Value* k = nullptr;       // as the scores MatMul reads it (already transposed)
  Value* v = nullptr;
};
std::optional<AttentionMatch> matchAttention(Node* softmax);

// A ViT patch embedding: Conv with a constant weight whose strides equal its kernel and no padding.
bool isPatchEmbedding(const Node& n);
// The class-token Concat: Concat along axis 1 of a (broadcast) constant token and the patch tokens.
bool isClassTokenConcat(const Node& n);

// The LM head / classifier: the last linear layer (graph order) whose output is a graph output,
// reached from it through at most channel-preserving ops. `tied` is the embedding Gather reading the
// same weight (tied input/output embeddings), if any.
struct HeadMatch {
  LinearMatch linear;
  Node* tied = nullptr;
};
std::optional<HeadMatch> matchHead(Graph& g);

// A residual add: Add(a, b) of two computed float tensors of the same shape (neither a constant),
// e.g. x + attn(norm(x)).
bool isResidualAdd(const Node& n);

}  // namespace ptq::ir
