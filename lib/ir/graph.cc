#include "lib/ir/graph.h"

#include <algorithm>
#include <unordered_set>

#include "lib/util/error.h"

namespace ptq::ir {

// ---------------------------------------------------------------- Node

void Node::setInput(size_t i, Value* v) {
  if (i >= inputs_.size()) inputs_.resize(i + 1, nullptr);
  Value* old = inputs_[i];
  if (old == v) return;
  if (old) {
    auto& u = old->uses_;
    for (auto it = u.begin(); it != u.end(); ++it)
      if (it->node == this && it->index == static_cast<int>(i)) { u.erase(it); break; }
  }
  inputs_[i] = v;
  if (v) v->uses_.push_back({this, static_cast<int>(i)});
}

void Node::addInput(Value* v) {
  inputs_.push_back(nullptr);
  setInput(inputs_.size() - 1, v);
}

int64_t Node::attrInt(const std::string& n, int64_t dflt) const {
  auto it = attrs.find(n);
  return it == attrs.end() ? dflt : it->second.i;
}
float Node::attrFloat(const std::string& n, float dflt) const {
  auto it = attrs.find(n);
  return it == attrs.end() ? dflt : it->second.f;
}
std::string Node::attrString(const std::string& n, const std::string& dflt) const {
  auto it = attrs.find(n);
  return it == attrs.end() ? dflt : it->second.s;
}
std::vector<int64_t> Node::attrInts(const std::string& n) const {
  auto it = attrs.find(n);
  return it == attrs.end() ? std::vector<int64_t>{} : it->second.ints;
}

std::string Node::describe() const {
  std::string d = domain_.empty() ? op_type_ : domain_ + "." + op_type_;
  if (!name.empty()) return "node '" + name + "' (" + d + ")";
  for (const Value* v : outputs_)  // exporters often leave nodes unnamed: name the value it writes
    if (v) return "node <output '" + v->name() + "'> (" + d + ")";
  return "node <unnamed> (" + d + ")";
}

// ---------------------------------------------------------------- Graph: values

Value* Graph::addValue(const std::string& name, Value::Kind kind) {
  std::string n = name.empty() ? uniqueName("ptq_v") : name;
  if (by_name_.count(n)) throwInput("graph '" + this->name + "': value name '" + n + "' is defined twice");
  auto v = std::make_unique<Value>();
  v->name_ = n;
  v->kind_ = kind;
  Value* raw = v.get();
  values_.push_back(std::move(v));
  by_name_[n] = raw;
  if (kind == Value::Kind::kInitializer) initializer_order_.push_back(raw);
  return raw;
}

Value* Graph::addInitializer(const std::string& name, Tensor t) {
  Value* v = addValue(name, Value::Kind::kInitializer);
  v->dtype = t.dtype();
  std::vector<Dim> dims;
  for (int64_t d : t.shape()) dims.push_back(Dim{d, ""});
  v->shape = dims;
  v->initializer = std::move(t);
  return v;
}

Value* Graph::addInput(const std::string& name, DType dtype, std::optional<std::vector<Dim>> shape) {
  Value* v = addValue(name, Value::Kind::kGraphInput);
  v->dtype = dtype;
  v->shape = std::move(shape);
  v->has_type = true;
  inputs_.push_back(v);
  return v;
}

Value* Graph::findValue(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::string Graph::uniqueName(const std::string& base) {
  if (!by_name_.count(base)) return base;
  for (;;) {
    std::string n = base + "_" + std::to_string(++name_counter_);
    if (!by_name_.count(n)) return n;
  }
}

void Graph::eraseValue(Value* v) {
  if (v->producer_ || !v->uses_.empty() || isGraphOutput(v))
    throwInternal("eraseValue('" + v->name() + "'): value still has a producer or uses");
  inputs_.erase(std::remove(inputs_.begin(), inputs_.end(), v), inputs_.end());
  initializer_order_.erase(std::remove(initializer_order_.begin(), initializer_order_.end(), v), initializer_order_.end());
  by_name_.erase(v->name_);
  values_.remove_if([v](const std::unique_ptr<Value>& p) { return p.get() == v; });
}

void Graph::renameValue(Value* v, const std::string& new_name) {
  if (v->name_ == new_name) return;
  if (by_name_.count(new_name)) throwInternal("renameValue('" + v->name() + "'): name '" + new_name + "' is taken");
  by_name_.erase(v->name_);
  v->name_ = new_name;
  by_name_[new_name] = v;
}

std::vector<Value*> Graph::initializers() const { return initializer_order_; }

std::vector<Value*> Graph::realInputs() const {
  std::vector<Value*> r;
  for (Value* v : inputs_)
    if (v->kind() == Value::Kind::kGraphInput) r.push_back(v);
  return r;
}

bool Graph::isGraphOutput(const Value* v) const {
  return std::find(outputs_.begin(), outputs_.end(), v) != outputs_.end();
}

// ---------------------------------------------------------------- Graph: nodes

std::list<std::unique_ptr<Node>>::iterator Graph::findNode(const Node* n) {
  for (auto it = nodes_.begin(); it != nodes_.end(); ++it)
    if (it->get() == n) return it;
  throwInternal("node not in this graph: " + n->describe());
}

Node* Graph::addNodeWithOutputs(const std::string& op_type, const std::vector<Value*>& inputs,
                                const std::vector<Value*>& outputs, const std::string& name,
                                const std::string& domain, Node* before) {
  auto n = std::make_unique<Node>();
  n->op_type_ = op_type;
  n->domain_ = domain;
  n->name = name;
  n->graph_ = this;
  Node* raw = n.get();
  for (Value* in : inputs) raw->addInput(in);
  for (size_t i = 0; i < outputs.size(); ++i) {
    Value* out = outputs[i];
    if (out) {
      if (out->producer_) throwInternal("value '" + out->name() + "' already has a producer");
      out->producer_ = raw;
      out->producer_index_ = static_cast<int>(i);
    }
    raw->outputs_.push_back(out);
  }
  if (before) nodes_.insert(findNode(before), std::move(n));
  else nodes_.push_back(std::move(n));
  return raw;
}

Node* Graph::addNode(const std::string& op_type, const std::vector<Value*>& inputs,
                     const std::vector<std::string>& outputs, const std::string& name,
                     const std::string& domain, Node* before) {
  std::vector<Value*> outs;
  for (const auto& o : outputs) outs.push_back(o.empty() ? nullptr : addValue(o));
  return addNodeWithOutputs(op_type, inputs, outs, name, domain, before);
}

void Graph::eraseNode(Node* n) {
  for (size_t i = 0; i < n->inputs_.size(); ++i) n->setInput(i, nullptr);
  for (Value* out : n->outputs_) {
    if (!out) continue;
    out->producer_ = nullptr;
    out->producer_index_ = -1;
  }
  nodes_.erase(findNode(n));
}

Node* Graph::replaceNode(Node* old, const std::string& op_type, const std::vector<Value*>& inputs,
                         const std::string& domain) {
  Node* n = addNodeWithOutputs(op_type, inputs, {}, old->name, domain, old);
  for (size_t i = 0; i < old->outputs_.size(); ++i) {
    Value* out = old->outputs_[i];
    if (out) {
      out->producer_ = n;
      out->producer_index_ = static_cast<int>(i);
    }
    n->outputs_.push_back(out);
  }
  old->outputs_.clear();
  eraseNode(old);
  return n;
}

void Graph::replaceAllUses(Value* from, Value* to) {
  const auto uses = from->uses_;  // copy: setInput edits the list
  for (const auto& u : uses) u.node->setInput(static_cast<size_t>(u.index), to);
  for (auto& o : outputs_)
    if (o == from) o = to;
}

std::vector<Node*> Graph::nodes() const {
  std::vector<Node*> r;
  r.reserve(nodes_.size());
  for (const auto& n : nodes_) r.push_back(n.get());
  return r;
}

void Graph::topoSort() {
  // Kahn's algorithm, taking nodes in their current order whenever possible (stable).
  std::unordered_map<const Node*, int> pending;
  std::vector<Node*> order = nodes();
  for (Node* n : order) {
    int deps = 0;
    for (Value* in : n->inputs_)
      if (in && in->producer_ && in->producer_->graph_ == this) ++deps;
    pending[n] = deps;
  }
  std::vector<Node*> sorted;
  std::vector<bool> done(order.size(), false);
  size_t cursor = 0;
  while (sorted.size() < order.size()) {
    // first not-yet-emitted node (in current order) with all inputs ready
    size_t i = cursor;
    while (i < order.size() && (done[i] || pending[order[i]] != 0)) ++i;
    if (i == order.size()) throwInput("graph '" + name + "' has a cycle");
    Node* n = order[i];
    done[i] = true;
    sorted.push_back(n);
    for (Value* out : n->outputs_)
      if (out)
        for (const auto& u : out->uses_)
          if (u.node->graph_ == this) --pending[u.node];
    while (cursor < order.size() && done[cursor]) ++cursor;
  }
  std::list<std::unique_ptr<Node>> reordered;
  for (Node* n : sorted) reordered.splice(reordered.end(), nodes_, findNode(n));
  nodes_.swap(reordered);
}

namespace {
// Names that subgraphs (If/Loop/Scan bodies, at any depth) read from enclosing scopes. Such reads are
// not uses in the outer graph's use lists, so dead-code removal must treat them as live.
void collectOuterScopeNames(const Graph& g, std::unordered_set<std::string>& names) {
  for (Node* n : g.nodes())
    for (const auto& [key, attr] : n->attrs) {
      (void)key;
      std::vector<std::shared_ptr<Graph>> subs = attr.graphs;
      if (attr.g) subs.push_back(attr.g);
      for (const auto& sub : subs) {
        for (Node* sn : sub->nodes())
          for (Value* in : sn->inputs())
            if (in && in->kind() == Value::Kind::kOuterScope) names.insert(in->name());
        for (Value* out : sub->outputs())
          if (out->kind() == Value::Kind::kOuterScope) names.insert(out->name());
        collectOuterScopeNames(*sub, names);
      }
    }
}
}  // namespace

size_t Graph::removeDeadCode() {
  std::unordered_set<std::string> outer_reads;
  collectOuterScopeNames(*this, outer_reads);
  auto used = [&](Value* v) {
    return !v->uses_.empty() || isGraphOutput(v) || outer_reads.count(v->name()) != 0;
  };
  size_t removed = 0;
  bool changed = true;
  while (changed) {
    changed = false;
    auto all = nodes();
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      Node* n = *it;
      bool live = false;
      for (Value* out : n->outputs_)
        if (out && used(out)) live = true;
      if (live) continue;
      std::vector<Value*> outs = n->outputs_;
      eraseNode(n);
      for (Value* out : outs)
        if (out) eraseValue(out);
      ++removed;
      changed = true;
    }
  }
  for (Value* v : initializers()) {
    const bool listed_input = std::find(inputs_.begin(), inputs_.end(), v) != inputs_.end();
    if (!used(v) && !listed_input) {
      eraseValue(v);
      ++removed;
    }
  }
  return removed;
}

// ---------------------------------------------------------------- Model

static bool isDefaultDomain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

int64_t Model::opsetVersion(const std::string& domain) const {
  for (const auto& o : opsets)
    if (o.domain == domain || (isDefaultDomain(domain) && isDefaultDomain(o.domain))) return o.version;
  return 0;
}

void Model::setOpsetVersion(const std::string& domain, int64_t version) {
  for (auto& o : opsets)
    if (o.domain == domain || (isDefaultDomain(domain) && isDefaultDomain(o.domain))) {
      o.version = version;
      return;
    }
  opsets.push_back({domain, version});
}

}  // namespace ptq::ir
