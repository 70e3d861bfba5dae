#include "lib/ir/residual_stream.h"

#include <algorithm>
#include <map>
#include <set>

namespace ptq::ir {

namespace {

bool isOp(const Node* n, const char* op) { return n && n->domain().empty() && n->opType() == op; }

int64_t lastDim(const Value* c) {
  const auto& s = c->initializer.shape();
  return s.empty() ? 0 : s.back();
}

bool allEqual(const Value* v, float x) {
  if (!v) return true;
  const float* p = v->initializer.data<float>();
  for (int64_t i = 0; i < v->initializer.numel(); ++i)
    if (p[i] != x) return false;
  return true;
}

// Whether Reshape node `r` turns a Conv output [B, C, H, W] into [B, C, H·W]: its target shape is a
// constant [B|0, C|0, -1] or (torch's flatten(2)) Concat(Slice(Shape(x), 0, 2), [-1]).
bool flattensSpatial(const Node* r, int64_t channels) {
  if (isOp(r, "Flatten")) return false;  // Flatten gives rank 2: not a token layout
  const Value* shape = r->input(1);
  if (!shape) return false;
  if (shape->isConstant()) {
    const std::vector<int64_t> s = shape->initializer.toInt64s();
    return s.size() == 3 && (s[1] == 0 || s[1] == channels) && s[2] == -1;
  }
  const Node* cat = shape->producer();
  if (!isOp(cat, "Concat") || cat->numInputs() != 2 || !cat->input(1) || !cat->input(1)->isConstant()) return false;
  if (cat->input(1)->initializer.toInt64s() != std::vector<int64_t>{-1}) return false;
  const Node* slice = cat->input(0) ? cat->input(0)->producer() : nullptr;
  if (!isOp(slice, "Slice") || slice->numInputs() < 3) return false;
  const Node* sh = slice->input(0) ? slice->input(0)->producer() : nullptr;
  if (!isOp(sh, "Shape") || sh->input(0) != r->input(0)) return false;
  auto constInts = [](const Value* v) { return v && v->isConstant() ? v->initializer.toInt64s() : std::vector<int64_t>{}; };
  if (constInts(slice->input(1)) != std::vector<int64_t>{0} || constInts(slice->input(2)) != std::vector<int64_t>{2}) return false;
  if (slice->numInputs() > 3 && slice->input(3) && constInts(slice->input(3)) != std::vector<int64_t>{0}) return false;
  return true;
}

class Tracer {
 public:
  explicit Tracer(Graph& g) : g_(g) {}

  ResidualStream run() {
    ResidualStream s;
    std::vector<NormMatch> norms = matchNorms(g_);
    if (norms.empty()) return fail(s, nullptr, "the graph has no normalization (LayerNorm / RMSNorm) to rotate through");
    for (const NormMatch& m : norms) todo_.push_back(m.input);
    while (!todo_.empty() && s.ok()) {
      Value* v = todo_.back();
      todo_.pop_back();
      if (!seen_.insert(v).second) continue;
      classify(s, v);
    }
    if (!s.ok()) return s;

    // Readers: every data use of a stream value is a stream node or a norm reading it.
    std::map<const Value*, std::set<const Node*>> norm_nodes;
    for (const NormMatch& m : norms)
      if (seen_.count(m.input)) {
        s.norms.push_back(m);
        for (const Node* n : m.nodes) norm_nodes[m.input].insert(n);
      }
    for (const Value* v : seen_) {
      if (g_.isGraphOutput(v)) return fail(s, v->producer(), "'" + v->name() + "' (part of the residual stream) is a graph output");
      for (const Value::Use& u : dataUses(v)) {
        if (stream_nodes_.count(u.node) || (norm_nodes.count(v) && norm_nodes[v].count(u.node))) continue;
        return fail(s, u.node, u.node->describe() + " reads the residual stream value '" + v->name() +
                                   "' and is neither a norm nor part of the stream");
      }
    }
    // Norms: one kind, identity affine part, read only by linears of the stream's width.
    for (size_t i = 0; i < s.norms.size(); ++i) {
      const NormMatch& m = s.norms[i];
      if (i == 0) s.kind = m.kind;
      if (m.kind != s.kind) return fail(s, m.nodes.front(), "norm '" + m.name() + "' is a " + m.form + " among norms of the other kind");
      if (!allEqual(m.gamma(), 1.0f) || !allEqual(m.beta(), 0.0f))
        return fail(s, m.nodes.front(), "norm '" + m.name() + "' has a scale or shift (γ ≠ 1 or β ≠ 0): run fold-norms before it");
      if (m.channels && m.channels != s.channels)
        return fail(s, m.nodes.front(), "norm '" + m.name() + "' has " + std::to_string(m.channels) + " channels, the stream " +
                                            std::to_string(s.channels));
      LinearReaders r = linearReaders(m.output);
      if (!r.ok()) return fail(s, r.blocker, "the output of norm '" + m.name() + "': " + r.why);
      if (r.linears.empty()) return fail(s, m.nodes.back(), "no linear layer reads norm '" + m.name() + "'");
      for (const LinearMatch& l : r.linears) {
        if (l.in_features != s.channels)
          return fail(s, l.node, l.node->describe() + " reads norm '" + m.name() + "' with " + std::to_string(l.in_features) +
                                     " input features, the stream has " + std::to_string(s.channels));
        s.readers.push_back(l);
      }
    }
    return s;
  }

 private:
  ResidualStream& fail(ResidualStream& s, const Node* n, const std::string& why) {
    if (s.ok()) {
      s.blocker = const_cast<Node*>(n);
      s.why = why;
    }
    return s;
  }

  bool width(ResidualStream& s, int64_t n, const Node* at) {
    if (s.channels == 0) s.channels = n;
    if (n == s.channels && n > 0) return true;
    fail(s, at, at->describe() + " adds " + std::to_string(n) + " channels to a stream of " + std::to_string(s.channels));
    return false;
  }

  void contribute(ResidualStream& s, StreamContribution c) { s.contributions.push_back(std::move(c)); }

  void sum(ResidualStream& s, Value* v, Node* p) {
    s.sums.push_back(v);
    stream_nodes_.insert(p);
  }

  // The linear layer whose output (after its bias) is `v`, if any.
  static std::optional<LinearMatch> writerOf(Value* v) {
    Node* p = v->producer();
    if (isOp(p, "MatMul") || isOp(p, "Gemm")) {
      std::optional<LinearMatch> l = matchLinear(p);
      if (l && l->output == v) return l;
    }
    if (isOp(p, "Add"))
      for (Value* in : p->inputs())
        if (in && !in->isConstant() && in->producer()) {
          std::optional<LinearMatch> l = matchLinear(in->producer());
          if (l && l->bias_add == p && l->output == v) return l;
        }
    return std::nullopt;
  }

  void classify(ResidualStream& s, Value* v) {
    Node* p = v->producer();
    if (!p) {
      fail(s, nullptr, "'" + v->name() + "' (a graph input) feeds the residual stream directly");
      return;
    }
    if (std::optional<EmbeddingMatch> e = matchEmbedding(p)) {
      if (width(s, e->table->initializer.shape()[1], p))
        contribute(s, {StreamContribution::Kind::kEmbedding, v, {}, p, 0});
      return;
    }
    if (std::optional<LinearMatch> l = writerOf(v)) {
      if (width(s, l->out_features, l->node)) contribute(s, {StreamContribution::Kind::kWriter, v, *l, l->node, -1});
      return;
    }
    if (isResidualAdd(*p)) {
      sum(s, v, p);
      todo_.push_back(p->input(0));
      todo_.push_back(p->input(1));
      return;
    }
    if (isOp(p, "Add") && p->numInputs() == 2) {  // x + constant (learned positions)
      for (int slot = 0; slot < 2; ++slot) {
        Value* c = floatConstant(p->input(static_cast<size_t>(slot)));
        Value* x = p->input(static_cast<size_t>(1 - slot));
        if (!c || !x || x->isConstant()) continue;
        if (!width(s, lastDim(c), p)) return;
        contribute(s, {StreamContribution::Kind::kConstant, v, {}, p, slot});
        sum(s, v, p);
        todo_.push_back(x);
        return;
      }
    }
    if (isClassTokenConcat(*p)) {
      Value* token = p->input(0);
      Node* holder = token->isConstant() ? p : token->producer();  // the Concat, or the Expand of the constant
      Value* c = floatConstant(holder->input(0));
      if (!c) {
        fail(s, p, p->describe() + " concatenates a class token that is not a float32 constant");
        return;
      }
      if (!width(s, lastDim(c), p)) return;
      if (holder != p) {
        if (dataUses(token).size() != 1) {
          fail(s, holder, holder->describe() + " (the class token) has other readers");
          return;
        }
        stream_nodes_.insert(holder);
      }
      contribute(s, {StreamContribution::Kind::kConstant, v, {}, holder, 0});
      sum(s, v, p);
      todo_.push_back(p->input(1));
      return;
    }
    if (isOp(p, "Transpose") && p->attrInts("perm") == std::vector<int64_t>{0, 2, 1}) {
      Node* r = p->input(0) ? p->input(0)->producer() : nullptr;
      Node* conv = r && r->input(0) ? r->input(0)->producer() : nullptr;
      if (isOp(r, "Reshape") && isOp(conv, "Conv") && conv->input(1) && floatConstant(conv->input(1)) &&
          dataUses(r->output(0)).size() == 1 && dataUses(conv->output(0)).size() == 1 &&
          (conv->numInputs() < 3 || !conv->input(2) || floatConstant(conv->input(2)))) {
        const int64_t c = conv->input(1)->initializer.shape()[0];
        if (!flattensSpatial(r, c)) {
          fail(s, r, r->describe() + " reshapes the patch embedding to a layout rotation does not follow");
          return;
        }
        if (width(s, c, conv)) contribute(s, {StreamContribution::Kind::kPatchConv, v, {}, conv, -1});
        return;
      }
    }
    fail(s, p, p->describe() + " produces part of the residual stream ('" + v->name() +
                   "'); rotation follows embeddings, linear layers, residual Adds, constant Adds, a class-token Concat "
                   "and a patch-embedding Conv");
  }

  Graph& g_;
  std::vector<Value*> todo_;
  std::set<Value*> seen_;
  std::set<const Node*> stream_nodes_;
};

}  // namespace

ResidualStream matchResidualStream(Graph& g) { return Tracer(g).run(); }

}  // namespace ptq::ir
