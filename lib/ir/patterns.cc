#include "lib/ir/patterns.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>

namespace ptq::ir {

namespace {

bool isOp(const Node* n, const char* op) { return n && n->domain().empty() && n->opType() == op; }

// Each node's index in graph order.
std::unordered_map<const Node*, size_t> nodePositions(const Graph& g) {
  std::unordered_map<const Node*, size_t> pos;
  size_t i = 0;
  for (const Node* n : g.nodes()) pos[n] = i++;
  return pos;
}

// The single node reading `v` (and only once), or null. Graph outputs count as a second reader.
Node* soleReader(const Value* v) {
  if (!v || v->uses().size() != 1 || v->producer() == nullptr) return nullptr;
  Graph* g = v->producer()->graph();
  if (g && g->isGraphOutput(v)) return nullptr;
  return v->uses()[0].node;
}

// A constant float32 scalar (any shape of one element) equal to `want` (NaN: any value).
bool isScalar(const Value* v, float want) {
  if (!v || !v->isConstant() || v->initializer.dtype() != DType::kFloat32 || v->initializer.numel() != 1) return false;
  return std::isnan(want) || v->initializer.data<float>()[0] == want;
}

// The other input of a two-input node, given one of them.
Value* otherInput(const Node* n, const Value* one) {
  if (n->numInputs() != 2) return nullptr;
  if (n->input(0) == one) return n->input(1);
  if (n->input(1) == one) return n->input(0);
  return nullptr;
}

// A lower bound on v's rank (0 when nothing is known): exact for typed values and constants,
// through elementwise ops by broadcasting (the result has at least the larger input rank).
int64_t minRank(const Value* v, std::unordered_map<const Value*, int64_t>& memo, int depth) {
  if (!v) return 0;
  if (v->shape) return static_cast<int64_t>(v->shape->size());
  if (v->isConstant()) return v->initializer.rank();
  auto it = memo.find(v);
  if (it != memo.end()) return it->second;
  int64_t r = 0;
  const Node* p = v->producer();
  if (p && depth < 64 && p->domain().empty() && v == p->output(0)) {
    static const std::set<std::string> elementwise = {"Add", "Sub", "Mul", "Div", "Pow", "Where", "Max", "Min", "Sum"};
    static const std::set<std::string> same_shape = {"LayerNormalization", "Softmax", "Relu", "Erf", "Sigmoid", "Tanh",
                                                      "Cast", "Neg", "Sqrt", "Exp", "Gelu", "Identity", "Dropout",
                                                      "Clip", "LeakyRelu", "HardSigmoid", "Abs", "Reciprocal"};
    if (elementwise.count(p->opType())) {
      for (const Value* in : p->inputs()) r = std::max(r, minRank(in, memo, depth + 1));
    } else if (same_shape.count(p->opType())) {
      r = minRank(p->input(0), memo, depth + 1);
    } else if (p->opType() == "Concat" || p->opType() == "Transpose" || p->opType() == "Conv") {
      for (const Value* in : p->inputs()) r = std::max(r, minRank(in, memo, depth + 1));
      if (p->opType() == "Conv") r = std::max<int64_t>(r, 3);
    } else if (p->opType() == "Reshape" || p->opType() == "Expand") {
      const Value* shape = p->input(1);
      if (shape && shape->isConstant()) r = shape->initializer.numel();
    }
  }
  memo[v] = r;
  return r;
}

// The single axis a ReduceMean reduces (attribute before opset 18, constant input after), if it
// reduces exactly one axis with keepdims = 1.
std::optional<int64_t> reducedAxis(const Node* n) {
  if (!isOp(n, "ReduceMean") || n->attrInt("keepdims", 1) != 1) return std::nullopt;
  std::vector<int64_t> axes = n->attrInts("axes");
  if (axes.empty() && n->numInputs() > 1 && n->input(1) && n->input(1)->isConstant()) axes = n->input(1)->initializer.toInt64s();
  if (axes.size() != 1) return std::nullopt;
  return axes[0];
}

// Whether the ReduceMean `n` reduces the last axis of its input.
bool reducesLastAxis(const Node* n) {
  const auto axis = reducedAxis(n);
  if (!axis) return false;
  if (*axis == -1) return true;
  const Value* x = n->input(0);
  return x && x->shape && *axis == static_cast<int64_t>(x->shape->size()) - 1;
}

// x² as Pow(x, 2) or Mul(x, x): returns x.
Value* squaredOperand(const Node* n) {
  if (isOp(n, "Pow") && isScalar(n->input(1), 2.0f)) return n->input(0);
  if (isOp(n, "Mul") && n->numInputs() == 2 && n->input(0) == n->input(1)) return n->input(0);
  return nullptr;
}

// Constant float32 operand usable as a per-channel affine parameter: C elements along the last axis.
bool isChannelVector(const Value* v) {
  if (!v || !v->isConstant() || v->initializer.dtype() != DType::kFloat32 || v->initializer.rank() < 1) return false;
  const auto& s = v->initializer.shape();
  for (size_t i = 0; i + 1 < s.size(); ++i)
    if (s[i] != 1) return false;
  return true;
}

// After the normalized value `n_out` (produced inside the norm), the optional Mul(γ) and Add(β).
void matchAffine(NormMatch& m, Value* n_out) {
  Value* y = n_out;
  Node* mul = soleReader(y);
  if (isOp(mul, "Mul") && isChannelVector(otherInput(mul, y))) {
    m.gamma_node = mul;
    m.gamma_input = mul->input(0) == y ? 1 : 0;
    m.nodes.push_back(mul);
    y = mul->output(0);
  }
  Node* add = soleReader(y);
  if (isOp(add, "Add") && isChannelVector(otherInput(add, y))) {
    m.beta_node = add;
    m.beta_input = add->input(0) == y ? 1 : 0;
    m.nodes.push_back(add);
    y = add->output(0);
  }
  m.output = y;
}

// The decomposed norm whose variance ReduceMean is `r2`, or nullopt.
std::optional<NormMatch> matchDecomposed(Node* r2) {
  if (!reducesLastAxis(r2)) return std::nullopt;
  Node* sq = r2->input(0) ? r2->input(0)->producer() : nullptr;
  Value* base = squaredOperand(sq);
  if (!base) return std::nullopt;
  NormMatch m;
  m.kind = NormKind::kRmsNorm;
  m.input = base;
  Node* sub = base->producer();
  if (isOp(sub, "Sub") && sub->input(1) && isOp(sub->input(1)->producer(), "ReduceMean") &&
      sub->input(1)->producer()->input(0) == sub->input(0) && reducesLastAxis(sub->input(1)->producer())) {
    m.kind = NormKind::kLayerNorm;
    m.input = sub->input(0);
    m.nodes = {sub->input(1)->producer(), sub};
  }
  m.nodes.push_back(sq);
  m.nodes.push_back(r2);
  Node* add_eps = soleReader(r2->output(0));
  if (!isOp(add_eps, "Add") || !isScalar(otherInput(add_eps, r2->output(0)), NAN)) return std::nullopt;
  Node* sqrt = soleReader(add_eps->output(0));
  if (!isOp(sqrt, "Sqrt")) return std::nullopt;
  m.nodes.push_back(add_eps);
  m.nodes.push_back(sqrt);
  Node* next = soleReader(sqrt->output(0));
  Value* normalized = nullptr;
  if (isOp(next, "Div") && next->input(0) == base && next->input(1) == sqrt->output(0)) {
    m.nodes.push_back(next);
    normalized = next->output(0);
  } else if ((isOp(next, "Div") && isScalar(next->input(0), 1.0f) && next->input(1) == sqrt->output(0)) ||
             isOp(next, "Reciprocal")) {
    Node* mul = soleReader(next->output(0));
    if (!isOp(mul, "Mul") || otherInput(mul, next->output(0)) != base) return std::nullopt;
    m.nodes.push_back(next);
    m.nodes.push_back(mul);
    normalized = mul->output(0);
  } else {
    return std::nullopt;
  }
  m.form = m.kind == NormKind::kLayerNorm ? "decomposed LayerNorm" : "decomposed RMSNorm";
  matchAffine(m, normalized);
  return m;
}

// LayerNormalization (axis -1) or com.microsoft SimplifiedLayerNormalization with constant γ (β).
std::optional<NormMatch> matchFused(Node* n) {
  const bool ln = n->opType() == "LayerNormalization" && (n->domain().empty() || n->domain() == "com.microsoft");
  const bool rms = n->opType() == "SimplifiedLayerNormalization" && n->domain() == "com.microsoft";
  if (!ln && !rms) return std::nullopt;
  const int64_t axis = n->attrInt("axis", -1);
  const Value* x = n->input(0);
  const bool last = axis == -1 || (x && x->shape && axis == static_cast<int64_t>(x->shape->size()) - 1);
  if (!last || !isChannelVector(n->input(1))) return std::nullopt;
  for (size_t i = 1; i < n->numOutputs(); ++i)  // mean / inv-std-dev outputs must be unused
    if (n->output(i) && !n->output(i)->uses().empty()) return std::nullopt;
  NormMatch m;
  m.kind = ln ? NormKind::kLayerNorm : NormKind::kRmsNorm;
  m.form = ln ? "LayerNormalization" : "SimplifiedLayerNormalization";
  m.nodes = {n};
  m.input = n->input(0);
  m.output = n->output(0);
  m.gamma_node = n;
  m.gamma_input = 1;
  if (ln && n->numInputs() > 2 && n->input(2)) {
    if (!isChannelVector(n->input(2))) return std::nullopt;
    m.beta_node = n;
    m.beta_input = 2;
  }
  return m;
}

}  // namespace

bool readsOnlyShape(const Node& n) { return n.domain().empty() && (n.opType() == "Shape" || n.opType() == "Size"); }

std::vector<Value::Use> dataUses(const Value* v) {
  std::vector<Value::Use> out;
  if (!v) return out;
  for (const Value::Use& u : v->uses())
    if (!readsOnlyShape(*u.node)) out.push_back(u);
  return out;
}

Value* floatConstant(Value* v) {
  return v && v->isConstant() && v->initializer.dtype() == DType::kFloat32 ? v : nullptr;
}

std::optional<LinearMatch> matchLinear(Node* n) {
  if (!n || !n->domain().empty()) return std::nullopt;
  LinearMatch m;
  m.node = n;
  m.input = n->input(0);
  if (!m.input || m.input->isConstant()) return std::nullopt;
  Value* w = floatConstant(n->input(1));
  Node* view = nullptr;
  if (!w && n->opType() == "MatMul" && n->input(1)) {  // MatMul(x, Transpose(E)): a tied head
    Node* t = n->input(1)->producer();
    const std::vector<int64_t> perm = t ? t->attrInts("perm") : std::vector<int64_t>{};
    if (isOp(t, "Transpose") && (perm.empty() || perm == std::vector<int64_t>{1, 0})) {
      w = floatConstant(t->input(0));
      view = t;
    }
  }
  if (!w || w->initializer.rank() != 2) return std::nullopt;
  m.weight = w;
  const auto& s = w->initializer.shape();
  if (n->opType() == "MatMul") {
    m.weight_view = view;
    m.weight_transposed = view != nullptr;
    m.in_features = view ? s[1] : s[0];
    m.out_features = view ? s[0] : s[1];
    m.output = n->output(0);
    Node* add = soleReader(n->output(0));
    if (isOp(add, "Add")) {
      Value* b = floatConstant(otherInput(add, n->output(0)));
      if (b && b->initializer.rank() == 1 && b->initializer.numel() == m.out_features) {
        m.bias_add = add;
        m.bias_input = add->input(0) == b ? 0 : 1;
        m.bias = b;
        m.output = add->output(0);
      }
    }
    return m;
  }
  if (n->opType() == "Gemm") {
    if (n->attrInt("transA", 0) != 0) return std::nullopt;
    m.weight_transposed = n->attrInt("transB", 0) != 0;
    m.in_features = m.weight_transposed ? s[1] : s[0];
    m.out_features = m.weight_transposed ? s[0] : s[1];
    m.alpha = n->attrFloat("alpha", 1.0f);
    m.beta = n->attrFloat("beta", 1.0f);
    m.output = n->output(0);
    if (n->numInputs() > 2 && n->input(2)) {
      Value* c = floatConstant(n->input(2));
      if (!c || c->initializer.rank() != 1 || c->initializer.numel() != m.out_features) return std::nullopt;
      m.bias = c;
      m.bias_input = 2;
    }
    return m;
  }
  return std::nullopt;
}

std::string NormMatch::name() const {
  if (nodes.empty()) return "<no norm>";
  const Node* n = nodes.front();
  return n->name.empty() ? n->describe() : n->name;
}

std::vector<NormMatch> matchNorms(Graph& g) {
  std::vector<NormMatch> out;
  std::set<const Node*> taken;
  for (Node* n : g.nodes()) {
    if (taken.count(n)) continue;
    std::optional<NormMatch> m = matchFused(n);
    if (!m && isOp(n, "ReduceMean")) m = matchDecomposed(n);
    if (!m) continue;
    if (const Value* gamma = m->gamma()) m->channels = gamma->initializer.numel();
    else if (const Value* beta = m->beta()) m->channels = beta->initializer.numel();
    bool overlaps = false;
    for (const Node* k : m->nodes) overlaps = overlaps || taken.count(k);
    if (overlaps) continue;
    for (const Node* k : m->nodes) taken.insert(k);
    out.push_back(*m);
  }
  // Decomposed norms are found at their variance ReduceMean, after a LayerNorm's mean ReduceMean:
  // order by the first node's position so "in graph order" holds.
  std::unordered_map<const Node*, size_t> pos = nodePositions(g);
  for (NormMatch& m : out)
    std::sort(m.nodes.begin(), m.nodes.end(), [&](const Node* a, const Node* b) { return pos[a] < pos[b]; });
  std::stable_sort(out.begin(), out.end(),
                   [&](const NormMatch& a, const NormMatch& b) { return pos[a.nodes.front()] < pos[b.nodes.front()]; });
  return out;
}

LinearReaders linearReaders(Value* v) {
  LinearReaders r;
  std::unordered_map<const Value*, int64_t> memo;
  std::vector<Value*> todo{v};
  std::set<const Node*> seen;
  while (!todo.empty() && r.ok()) {
    Value* cur = todo.back();
    todo.pop_back();
    if (cur->producer() && cur->producer()->graph()->isGraphOutput(cur)) {
      r.why = "'" + cur->name() + "' is a graph output";
      break;
    }
    for (const Value::Use& u : dataUses(cur)) {
      Node* n = u.node;
      if (!seen.insert(n).second) {
        r.blocker = n;
        r.why = n->describe() + " reads it twice";
        break;
      }
      std::optional<LinearMatch> lin = u.index == 0 ? matchLinear(n) : std::nullopt;
      if (lin) {
        r.linears.push_back(*lin);
        continue;
      }
      if (isOp(n, "Gather") && u.index == 0) {
        const int64_t axis = n->attrInt("axis", 0);
        const int64_t rank = minRank(cur, memo, 0);
        if (axis <= -2 || (axis >= 0 && axis < rank - 1)) {  // not the channel (last) axis
          r.through.push_back(n);
          todo.push_back(n->output(0));
          continue;
        }
      }
      r.blocker = n;
      r.why = n->describe() + " reads it and is not a linear layer with a constant weight";
      break;
    }
  }
  if (!r.ok()) r.linears.clear();
  if (!r.linears.empty()) {
    std::unordered_map<const Node*, size_t> pos = nodePositions(*r.linears.front().node->graph());
    std::sort(r.linears.begin(), r.linears.end(),
              [&](const LinearMatch& a, const LinearMatch& b) { return pos[a.node] < pos[b.node]; });
  }
  return r;
}

namespace {

// Whether a subgraph of `g` (at any depth) reads the value called `name` from an enclosing scope.
bool readByName(const Graph& g, const std::string& name) {
  for (const Node* n : g.nodes())
    for (const auto& [key, a] : n->attrs) {
      std::vector<const Graph*> bodies;
      if (a.g) bodies.push_back(a.g.get());
      for (const auto& sub : a.graphs) bodies.push_back(sub.get());
      for (const Graph* body : bodies) {
        for (const Node* inner : body->nodes())
          for (const Value* in : inner->inputs())
            if (in && in->kind() == Value::Kind::kOuterScope && in->name() == name) return true;
        if (readByName(*body, name)) return true;
      }
    }
  return false;
}

}  // namespace

bool usedOnlyBy(const Value* w, const std::vector<Node*>& nodes) {
  for (const Value::Use& u : w->uses())
    if (std::find(nodes.begin(), nodes.end(), u.node) == nodes.end()) return false;
  if (w->uses().empty()) return true;
  const Graph* g = w->uses().front().node->graph();
  return !g->isGraphOutput(w) && !readByName(*g, w->name());
}

std::optional<EmbeddingMatch> matchEmbedding(Node* n) {
  if (!isOp(n, "Gather") || n->attrInt("axis", 0) != 0) return std::nullopt;
  Value* table = floatConstant(n->input(0));
  Value* ids = n->input(1);
  if (!table || table->initializer.rank() != 2 || !ids || ids->isConstant()) return std::nullopt;
  if (ids->dtype != DType::kUndefined && ids->dtype != DType::kInt64 && ids->dtype != DType::kInt32) return std::nullopt;
  return EmbeddingMatch{n, table, n->output(0)};
}

namespace {

// The int64 values of a constant, or of a Concat of constants for its last `tail` entries.
std::vector<int64_t> trailingConstInts(const Value* v, size_t tail) {
  if (!v) return {};
  if (v->isConstant()) {
    std::vector<int64_t> all = v->initializer.toInt64s();
    if (all.size() < tail) return {};
    return std::vector<int64_t>(all.end() - static_cast<std::ptrdiff_t>(tail), all.end());
  }
  const Node* cat = v->producer();
  if (!isOp(cat, "Concat") || cat->numInputs() < tail) return {};
  std::vector<int64_t> out;
  for (size_t i = cat->numInputs() - tail; i < cat->numInputs(); ++i) {
    const Value* in = cat->input(i);
    if (!in || !in->isConstant() || in->initializer.numel() != 1) return {};
    out.push_back(in->initializer.toInt64s()[0]);
  }
  return out;
}

}  // namespace

std::optional<OutputSplit> matchOutputSplit(const LinearMatch& l) {
  const std::vector<Value::Use> uses = dataUses(l.output);
  if (uses.empty()) return std::nullopt;
  OutputSplit s;
  const Node* first = uses[0].node;
  if (uses.size() == 1 && isOp(first, "Split") && first->attrInt("axis", 0) == -1) {
    std::vector<int64_t> sizes = first->attrInts("split");
    if (sizes.empty() && first->numInputs() > 1 && first->input(1) && first->input(1)->isConstant())
      sizes = first->input(1)->initializer.toInt64s();
    if (sizes.empty() && first->numOutputs() > 0 && l.out_features % static_cast<int64_t>(first->numOutputs()) == 0)
      sizes.assign(first->numOutputs(), l.out_features / static_cast<int64_t>(first->numOutputs()));
    int64_t at = 0;
    for (int64_t n : sizes) {
      s.columns.emplace_back(at, at + n);
      at += n;
    }
    if (at != l.out_features) return std::nullopt;
    s.form = "Split";
    return s;
  }
  if (uses.size() == 1 && isOp(first, "Reshape")) {
    const std::vector<int64_t> dims = trailingConstInts(first->input(1), 3);
    if (dims.size() == 3 && dims[0] >= 2 && dims[1] > 0 && dims[2] > 0 && dims[0] * dims[1] * dims[2] == l.out_features) {
      for (int64_t p = 0; p < dims[0]; ++p) s.columns.emplace_back(p * dims[1] * dims[2], (p + 1) * dims[1] * dims[2]);
      s.form = "Reshape";
      return s;
    }
    return std::nullopt;
  }
  for (const Value::Use& u : uses) {
    const Node* n = u.node;
    if (!isOp(n, "Slice") || u.index != 0 || n->numInputs() < 4) return std::nullopt;
    const Value *starts = n->input(1), *ends = n->input(2), *axes = n->input(3);
    if (!starts || !ends || !axes || !starts->isConstant() || !ends->isConstant() || !axes->isConstant()) return std::nullopt;
    const auto a = axes->initializer.toInt64s(), b = starts->initializer.toInt64s(), e = ends->initializer.toInt64s();
    if (a.size() != 1 || a[0] != -1 || b.size() != 1 || e.size() != 1) return std::nullopt;
    if (n->numInputs() > 4 && n->input(4) && (!n->input(4)->isConstant() || n->input(4)->initializer.toInt64s() != std::vector<int64_t>{1}))
      return std::nullopt;
    s.columns.emplace_back(b[0], std::min(e[0], l.out_features));
  }
  std::sort(s.columns.begin(), s.columns.end());
  s.form = "Slice";
  return s;
}

std::optional<AttentionMatch> matchAttention(Node* softmax) {
  if (!isOp(softmax, "Softmax") || softmax->attrInt("axis", -1) != -1) return std::nullopt;
  AttentionMatch a;
  a.softmax = softmax;
  Node* ctx = soleReader(softmax->output(0));
  if (!isOp(ctx, "MatMul") || ctx->input(0) != softmax->output(0)) return std::nullopt;
  a.context = ctx;
  a.v = ctx->input(1);
  Node* p = softmax->input(0) ? softmax->input(0)->producer() : nullptr;
  if (isOp(p, "Where") && p->numInputs() == 3) {
    a.mask = p;
    Value* data = p->input(1) && p->input(1)->isConstant() ? p->input(2) : p->input(1);
    p = data ? data->producer() : nullptr;
  } else if (isOp(p, "Add") && p->numInputs() == 2) {
    Node* left = p->input(0) ? p->input(0)->producer() : nullptr;
    Node* right = p->input(1) ? p->input(1)->producer() : nullptr;
    auto scoreSide = [](const Node* n) { return isOp(n, "MatMul") || isOp(n, "Div") || isOp(n, "Mul"); };
    a.mask = p;
    p = scoreSide(left) ? left : scoreSide(right) ? right : nullptr;
  }
  if ((isOp(p, "Div") || isOp(p, "Mul")) && p->numInputs() == 2 && isScalar(p->input(1), NAN)) {
    a.scale = p;
    p = p->input(0) ? p->input(0)->producer() : nullptr;
  }
  if (!isOp(p, "MatMul") || !p->input(0) || !p->input(1) || p->input(0)->isConstant() || p->input(1)->isConstant())
    return std::nullopt;
  a.scores = p;
  a.q = p->input(0);
  a.k = p->input(1);
  return a;
}

bool isPatchEmbedding(const Node& n) {
  if (!n.domain().empty() || n.opType() != "Conv" || !n.input(1) || !n.input(1)->isConstant()) return false;
  if (n.attrInt("group", 1) != 1) return false;
  const auto& w = n.input(1)->initializer.shape();
  std::vector<int64_t> kernel = n.attrInts("kernel_shape");
  if (kernel.empty()) kernel.assign(w.begin() + 2, w.end());
  const std::vector<int64_t> strides = n.attrInts("strides");
  for (int64_t p : n.attrInts("pads"))
    if (p != 0) return false;
  return !kernel.empty() && strides == kernel && (kernel.size() < 2 || kernel[0] > 1 || kernel[1] > 1);
}

bool isClassTokenConcat(const Node& n) {
  if (!n.domain().empty() || n.opType() != "Concat" || n.numInputs() != 2 || n.attrInt("axis", 0) != 1) return false;
  const Value* token = n.input(0);
  if (!token) return false;
  if (token->isConstant()) return true;
  const Node* e = token->producer();
  return isOp(e, "Expand") && e->input(0) && e->input(0)->isConstant();
}

std::optional<HeadMatch> matchHead(Graph& g) {
  const std::vector<Node*> nodes = g.nodes();
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    std::optional<LinearMatch> l = matchLinear(*it);
    if (!l || !g.isGraphOutput(l->output)) continue;
    HeadMatch h{*l, nullptr};
    for (const Value::Use& u : l->weight->uses())
      if (u.node != l->node && matchEmbedding(u.node)) h.tied = u.node;
    return h;
  }
  return std::nullopt;
}

bool isResidualAdd(const Node& n) {
  if (!n.domain().empty() || n.opType() != "Add" || n.numInputs() != 2) return false;
  const Value* a = n.input(0);
  const Value* b = n.input(1);
  if (!a || !b || a->isConstant() || b->isConstant() || a == b) return false;
  if (a->shape && b->shape && a->shape->size() != b->shape->size()) return false;
  return true;
}

}  // namespace ptq::ir
