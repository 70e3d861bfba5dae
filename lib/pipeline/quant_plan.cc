#include "lib/pipeline/quant_plan.h"

#include <algorithm>
#include <map>

#include "lib/util/error.h"

namespace ptq::pipeline {

namespace {

bool listed(const std::vector<std::string>& ops, const std::string& op) {
  return std::find(ops.begin(), ops.end(), op) != ops.end();
}

bool wanted(const QuantConfig& c, const std::string& op) {
  if (op == "Gather" && c.layers.quantize_embeddings) return true;
  return listed(c.layers.op_types, op);
}

// The constant behind a node input: an initializer of this graph, or (for an outer-scope read
// inside a subgraph) the initializer of that name in the nearest enclosing graph defining it.
ir::Value* constantBehind(ir::Value* v, const ir::Graph& g) {
  if (!v) return nullptr;
  if (v->isConstant()) return v;
  if (v->kind() != ir::Value::Kind::kOuterScope) return nullptr;
  for (const ir::Graph* outer = g.parent; outer; outer = outer->parent) {
    ir::Value* found = outer->findValue(v->name());
    if (!found) continue;
    if (found->isConstant()) return found;
    if (found->kind() != ir::Value::Kind::kOuterScope) return nullptr;  // a computed value
  }
  return nullptr;
}

// Fills the weight, its input slot and the axes; returns "" when `n` is a quantizable layer, else why not.
std::string classify(ir::Node* n, const ir::Graph& g, LayerPlan& t) {
  const std::string& op = n->opType();
  if (!n->domain().empty()) return "not an ai.onnx op";
  t.weight_input = op == "Gather" ? 0 : 1;
  ir::Value* w = constantBehind(n->input(static_cast<size_t>(t.weight_input)), g);
  t.weight = w;
  if (!w) return op == "Gather" ? "table is not a constant" : "weight is not a constant";
  const int64_t rank = w->initializer.rank();
  if (op == "MatMul") {
    if (rank != 2) return "weight is not 2-D";
    if (constantBehind(n->input(0), g)) return "both inputs are constant";
    t.reduce_axis = 0;
    t.channel_axis = 1;
  } else if (op == "Gemm") {
    if (rank != 2) return "weight is not 2-D";
    const bool trans_b = n->attrInt("transB", 0) != 0;
    t.reduce_axis = trans_b ? 1 : 0;
    t.channel_axis = trans_b ? 0 : 1;
  } else if (op == "Conv") {
    if (rank < 3) return "weight rank < 3";
    t.reduce_axis = 1;
    t.channel_axis = 0;
  } else if (op == "Gather") {
    if (rank != 2) return "table is not 2-D";
    if (n->attrInt("axis", 0) != 0) return "gathers along axis != 0";
    t.reduce_axis = 1;  // one scale per row (token) or per group of a row
    t.channel_axis = 0;
  } else {
    return "not a quantizable op";
  }
  if (w->initializer.dtype() != ir::DType::kFloat32) return "weight is not float32";
  return "";
}

class PlanBuilder {
 public:
  PlanBuilder(const QuantConfig& c, std::vector<LayerPlan>& out) : config_(c), out_(out) {}

  // One node of `g` (a layer a rewrite created), recorded like the ones walk() finds.
  void visitOne(ir::Node* n, ir::Graph& g, const std::string& scope) { visit(n, g, scope); }

  // Main graph first (in node order), then each subgraph in the order its node appears.
  void walk(ir::Graph& g, const std::string& scope) {
    for (ir::Node* n : g.nodes()) visit(n, g, scope);
    for (ir::Node* n : g.nodes())
      for (auto& [attr_name, attr] : n->attrs) {
        const std::string sub_scope = (scope.empty() ? "" : scope + "/") + nodeLabel(n) + "/" + attr_name;
        if (attr.g) walk(*attr.g, sub_scope);
        for (size_t i = 0; i < attr.graphs.size(); ++i)
          if (attr.graphs[i]) walk(*attr.graphs[i], sub_scope + "[" + std::to_string(i) + "]");
      }
  }

 private:
  static std::string nodeLabel(const ir::Node* n) {
    if (!n->name.empty()) return n->name;
    return n->opType() + (n->output(0) ? "<" + n->output(0)->name() + ">" : "");
  }

  void visit(ir::Node* n, ir::Graph& g, const std::string& scope) {
    if (!wanted(config_, n->opType())) return;
    LayerPlan t;
    t.node = n;
    t.graph = &g;
    t.scope = scope;
    const std::string why = classify(n, g, t);
    if (!t.weight) return;  // nothing to report: no constant weight at all
    if (LayerPlan* first = find(t.weight)) {
      // A weight shared by several layers is quantized once, with the first layer's axes; a later
      // reader that needs other axes keeps reading the same (dequantized) values, which is correct.
      if (why.empty()) first->readers.push_back(n);
      return;
    }
    t.readers.push_back(n);
    t.weights = config_.weights;
    if (!why.empty()) {
      t.skip = true;
      t.skip_reason = why;
    } else if (t.weight->initializer.numel() < config_.layers.min_elements) {
      t.skip = true;
      t.skip_reason = "smaller than layers.min_elements";
    } else {
      std::string excluded;
      auto s = resolveSettings(config_, n->name, t.weight->name(), n->opType(), &excluded);
      if (!s) {
        t.skip = true;
        t.skip_reason = excluded;
      } else {
        t.weights = *s;
      }
    }
    if (!t.skip) {
      if (const int64_t bad = ir::firstNonFinite(t.weight->initializer); bad >= 0) {
        // A broken weight is never rounded: refused, or (when the config says so) left in float.
        const std::string what = ir::describeNonFinite(t.weight->initializer, bad) + " at index " +
                                 ir::indexToString(t.weight->initializer.shape(), bad) + " (element " + std::to_string(bad) + ")";
        if (!config_.layers.keep_non_finite_float)
          throwInput("weight '" + t.weight->name() + "' of " + n->describe() + " holds " + what +
                     "; fix the model, or set \"layers\": {\"non_finite\": \"keep_float\"} to leave such layers in float");
        t.skip = true;
        t.skip_reason = "non-finite weight: " + what + " (layers.non_finite = keep_float)";
      }
      // The scan read every byte; the pass that quantizes the weight reads them again later, one
      // layer at a time, so a weight mapped from the model's file need not stay resident in between.
      t.weight->initializer.releaseMemory();
    }
    // Activations get Q/DQ only in the main graph: the qdq pass observes main-graph values.
    t.quantize_activations = !t.skip && scope.empty() && config_.quantizesActivations() &&
                             listed(config_.activations.op_types, n->opType()) && n->opType() != "Gather";
    index_[t.weight] = out_.size();
    out_.push_back(std::move(t));
  }

  LayerPlan* find(const ir::Value* w) {
    auto it = index_.find(w);
    return it == index_.end() ? nullptr : &out_[it->second];
  }

  const QuantConfig& config_;
  std::vector<LayerPlan>& out_;
  std::map<const ir::Value*, size_t> index_;
};

}  // namespace

std::string LayerPlan::label() const {
  std::string s = node->describe() + " weight '" + weight->name() + "'";
  if (!scope.empty()) s += " in " + scope;
  return s;
}

std::vector<LayerPlan*> QuantPlan::active() {
  std::vector<LayerPlan*> r;
  for (auto& l : layers_)
    if (!l.skip) r.push_back(&l);
  return r;
}

LayerPlan* QuantPlan::findByWeight(const ir::Value* weight) {
  for (auto& l : layers_)
    if (l.weight == weight) return &l;
  return nullptr;
}

void QuantPlan::setWeights(LayerPlan& layer, const WeightSettings& w, const std::string& pass, const std::string& why) {
  layer.history.push_back(pass + ": " + std::to_string(layer.weights.bits) + " -> " + std::to_string(w.bits) + " bits" +
                          (why.empty() ? "" : " (" + why + ")"));
  layer.weights = w;
  layer.decided_by = pass;
}

void QuantPlan::skip(LayerPlan& layer, const std::string& why, const std::string& pass) {
  layer.history.push_back(pass + ": skipped (" + why + ")");
  layer.skip = true;
  layer.skip_reason = why;
  layer.quantize_activations = false;
  layer.decided_by = pass;
}

void QuantPlan::note(LayerPlan& layer, const std::string& pass, const std::string& text) {
  layer.history.push_back(pass + ": " + text);
}

void QuantPlan::untie(const ir::Value* old_weight, ir::Node* reader, ir::Value* new_weight, const std::string& pass) {
  LayerPlan* old = findByWeight(old_weight);
  if (!old) return;  // not a layer (e.g. a norm's gamma)
  auto& readers = old->readers;
  readers.erase(std::remove(readers.begin(), readers.end(), reader), readers.end());
  const std::string line = pass + ": untied from '" + old_weight->name() + "' (a copy of its own)";
  if (readers.empty()) {  // the only layer reading it: the record moves to the copy
    old->weight = new_weight;
    old->node = reader;
    old->readers = {reader};
    old->history.push_back(line);
    return;
  }
  if (old->node == reader) old->node = readers.front();
  LayerPlan copy = *old;
  copy.node = reader;
  copy.graph = reader->graph();
  copy.weight = new_weight;
  copy.readers = {reader};
  copy.history.push_back(line);
  layers_.push_back(std::move(copy));
}

void QuantPlan::adopt(ir::Node* n, const QuantConfig& config, const std::string& pass) {
  const size_t before = layers_.size();
  PlanBuilder(config, layers_).visitOne(n, *n->graph(), "");
  if (layers_.size() > before) layers_.back().history.push_back(pass + ": became a layer (its weight was materialized)");
}

void QuantPlan::replaceNode(const ir::Node* old, ir::Node* now) {
  for (auto& l : layers_) {
    if (l.node == old) l.node = now;
    for (ir::Node*& r : l.readers)
      if (r == old) r = now;
  }
}

std::optional<WeightSettings> resolveSettings(const QuantConfig& config, const std::string& node_name,
                                              const std::string& weight_name, const std::string& op_type,
                                              std::string* why_skipped) {
  for (const auto& pat : config.layers.skip)
    if (globMatch(pat, node_name) || globMatch(pat, weight_name)) {
      if (why_skipped) *why_skipped = "excluded by layers.skip '" + pat + "'";
      return std::nullopt;
    }
  WeightSettings s = config.weights;
  for (size_t i = 0; i < config.overrides.size(); ++i) {
    const LayerOverride& o = config.overrides[i];
    if (!o.op_type.empty() && o.op_type != op_type) continue;
    if (!globMatch(o.match, node_name) && !globMatch(o.match, weight_name)) continue;
    if (o.skip) {
      if (why_skipped) *why_skipped = "excluded by overrides[" + std::to_string(i) + "]";
      return std::nullopt;
    }
    if (o.bits) s.bits = *o.bits;
    if (o.symmetric) s.symmetric = *o.symmetric;
    if (o.granularity) s.granularity = *o.granularity;
    if (o.group_size) s.group_size = *o.group_size;
    if (o.clip_search) s.clip_search = *o.clip_search;
  }
  return s;
}

QuantPlan buildPlan(ir::Graph& graph, const QuantConfig& config) {
  QuantPlan plan;
  PlanBuilder(config, plan.layers_).walk(graph, "");
  return plan;
}

}  // namespace ptq::pipeline
