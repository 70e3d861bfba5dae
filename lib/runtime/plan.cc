#include "lib/runtime/plan.h"

#include <algorithm>
#include <unordered_set>

#include "lib/ir/dynamic_quant.h"
#include "lib/runtime/buffer_pool.h"
#include "lib/runtime/registry.h"
#include "lib/runtime/simulate_quant.h"
#include "lib/util/error.h"

namespace ptq::runtime {

// ---------------------------------------------------------------- kernel.h helpers

std::string describeNode(const ir::Node& n) {
  std::string op = n.domain().empty() || n.domain() == "ai.onnx" ? n.opType() : n.domain() + "." + n.opType();
  if (!n.name.empty()) return "node '" + n.name + "' (" + op + ")";
  for (const ir::Value* v : n.outputs())
    if (v) return "node <output '" + v->name() + "'> (" + op + ")";
  return "node <unnamed> (" + op + ")";
}

void runError(const std::string& msg) { throw Error(ExitCode::kInput, msg); }

void NodeInfo::unsupported(const std::string& why) const {
  throw Error(ExitCode::kInput, describeNode(node) + ": unsupported: " + why);
}

void NodeInfo::requireType(size_t i, std::initializer_list<DType> allowed) const {
  const DType t = inType(i);
  if (t == DType::kUndefined) return;
  for (DType a : allowed)
    if (a == t) return;
  std::string names;
  for (DType a : allowed) names += (names.empty() ? "" : ", ") + ir::dtypeName(a);
  unsupported("input " + std::to_string(i) + " has dtype " + ir::dtypeName(t) + " (supported: " + names + ")");
}

void NodeInfo::requireSameType(size_t first, size_t last) const {
  const DType t = inType(first);
  for (size_t i = first + 1; i <= last && i < in_types.size(); ++i) {
    const DType u = in_types[i];
    if (t != DType::kUndefined && u != DType::kUndefined && u != t)
      unsupported("input " + std::to_string(i) + " has dtype " + ir::dtypeName(u) + " but input " +
                  std::to_string(first) + " has " + ir::dtypeName(t));
  }
}

void NodeInfo::requireInputs(size_t min_count, size_t max_count) const {
  size_t n = node.numInputs();
  while (n > 0 && !node.input(n - 1)) --n;  // trailing omitted optional inputs
  if (n < min_count || n > max_count)
    unsupported("has " + std::to_string(n) + " inputs, expected " + std::to_string(min_count) +
                (max_count != min_count ? ".." + std::to_string(max_count) : std::string()));
  for (size_t i = 0; i < min_count; ++i)
    if (!node.input(i)) unsupported("required input " + std::to_string(i) + " is missing");
}

std::vector<float> NodeInfo::attrFloats(const std::string& n) const {
  auto it = node.attrs.find(n);
  return it == node.attrs.end() ? std::vector<float>{} : it->second.floats;
}

Tensor ExecContext::alloc(DType dtype, Shape shape) { return pool_.alloc(dtype, std::move(shape)); }

Tensor ExecContext::allocZeroed(DType dtype, Shape shape) {
  Tensor t = pool_.alloc(dtype, std::move(shape));
  if (t.nbytes()) std::fill_n(outData<uint8_t>(t), t.nbytes(), uint8_t{0});
  return t;
}

Tensor ExecContext::reuse(Tensor& donor, DType dtype, Shape shape) {
  Tensor t;
  if (pool_.reuse(donor, dtype, shape, &t)) return t;
  return pool_.alloc(dtype, std::move(shape));
}

// ---------------------------------------------------------------- helpers

int64_t PlanOptions::opsetFor(const std::string& domain) const {
  if (domain.empty() || domain == "ai.onnx") return default_opset;
  auto it = domain_opsets.find(domain);
  return it == domain_opsets.end() ? 1 : it->second;
}

namespace {
void collectOuterReads(const ir::Graph& g, std::unordered_set<std::string>& seen, std::vector<std::string>& out) {
  auto note = [&](const ir::Value* v) {
    if (v && v->kind() == ir::Value::Kind::kOuterScope && seen.insert(v->name()).second) out.push_back(v->name());
  };
  for (const ir::Node* n : g.nodes()) {
    for (const ir::Value* v : n->inputs()) note(v);
    for (const std::string& name : subgraphOuterReads(*n))
      if (!g.findValue(name) && seen.insert(name).second) out.push_back(name);
  }
  for (const ir::Value* v : g.outputs()) note(v);
}
}  // namespace

std::vector<std::string> subgraphOuterReads(const ir::Node& n) {
  std::unordered_set<std::string> seen;
  std::vector<std::string> out;
  for (const auto& [key, attr] : n.attrs) {
    (void)key;
    if (attr.g) collectOuterReads(*attr.g, seen, out);
    for (const auto& sub : attr.graphs)
      if (sub) collectOuterReads(*sub, seen, out);
  }
  return out;
}

// ---------------------------------------------------------------- planning

Plan::Plan(const ir::Graph& g, const PlanOptions& opts, const PlanScope* outer, std::vector<std::string>* problems)
    : graph_(g), opts_(opts), has_outer_(outer != nullptr) {
  plan(outer, problems);
}

Plan::~Plan() = default;

int Plan::slotOf(const std::string& name) const {
  auto it = slot_of_.find(name);
  return it == slot_of_.end() ? -1 : it->second;
}

int Plan::stepOf(const ir::Node* n) const {
  auto it = step_of_.find(n);
  return it == step_of_.end() ? -1 : it->second;
}

std::string Plan::describeStep(const Step& st) const {
  if (st.node) return describeNode(*st.node);
  return "fake quantization of '" + slot_names_[st.in_slots[0]] + "'";
}

const Tensor& Plan::constantValue(int s) const {
  auto it = const_index_.find(s);
  if (it == const_index_.end()) throwInternal("slot '" + slot_names_[s] + "' is not a constant");
  return constants_[it->second].second;
}

Tensor Plan::constantFor(const ir::Value& v) const {
  if (!opts_.simulate_quantization || !v.quant) return v.initializer;
  Tensor t;
  try {
    t = dequantizeWeight(*v.quant);
  } catch (const Error& e) {
    throw e.withContext("value '" + v.name() + "'");
  }
  if (v.initializer.dtype() != DType::kFloat32 || t.shape() != v.initializer.shape())
    throwInput("value '" + v.name() + "': quantized form " + ir::shapeToString(t.shape()) + " does not replace its " +
               ir::dtypeName(v.initializer.dtype()) + ir::shapeToString(v.initializer.shape()) + " initializer");
  return t;
}

void Plan::replaceConstant(int s, Tensor t) {
  if (has_outer_) throwInternal("replaceConstant on a subgraph plan");
  Tensor& cur = constants_[const_index_.at(s)].second;
  if (t.dtype() != cur.dtype() || t.shape() != cur.shape())
    throwUsage("constant '" + slot_names_[s] + "' is " + ir::dtypeName(cur.dtype()) + ir::shapeToString(cur.shape()) +
               "; the new data is " + ir::dtypeName(t.dtype()) + ir::shapeToString(t.shape()));
  // Only readers through in_slots can have captured the tensor (NodeInfo::constInput); subgraphs
  // read outer values from the frame at run time. All-or-nothing: when a factory rejects the new
  // data (it names the node), the old constant and kernels stay.
  Tensor old = std::move(cur);
  cur = std::move(t);
  PlanScope my_scope{nullptr, this};
  std::vector<std::pair<int, Kernel>> rebuilt;
  try {
    for (size_t i = 0; i < steps_.size(); ++i) {
      const Step& st = steps_[i];
      if (!st.node || std::find(st.in_slots.begin(), st.in_slots.end(), s) == st.in_slots.end()) continue;
      Step copy = st;
      const std::vector<DType> types = buildKernel(copy, &my_scope, nullptr);
      for (size_t k = 0; k < st.out_slots.size(); ++k)
        if (st.out_slots[k] >= 0 && k < types.size() && types[k] != slot_types_[st.out_slots[k]])
          throwUsage(describeNode(*st.node) + ": output dtype would change with the new constant '" + slot_names_[s] + "'");
      rebuilt.emplace_back(static_cast<int>(i), std::move(copy.kernel));
    }
  } catch (...) {
    cur = std::move(old);
    throw;
  }
  for (auto& [i, k] : rebuilt) steps_[i].kernel = std::move(k);
}

std::vector<DType> Plan::buildKernel(Step& step, const PlanScope* scope, std::vector<std::string>* problems) {
  const ir::Node& n = *step.node;
  NodeInfo info{n};
  info.opset = opts_.opsetFor(n.domain());
  info.scope = scope;
  info.options = &opts_;
  info.problems = problems;
  for (int s : step.in_slots) {
    info.in_types.push_back(s >= 0 ? slot_types_[s] : DType::kUndefined);
    auto c = s >= 0 ? const_index_.find(s) : const_index_.end();
    info.in_consts.push_back(c != const_index_.end() ? &constants_[c->second].second : nullptr);
  }
  std::vector<DType> out_types(n.numOutputs(), DType::kUndefined);
  try {
    if (simulatesIntegerLayer(n)) {
      step.kernel = makeIntegerLayerKernel(info);
      out_types = {DType::kFloat32};
    } else {
      const KernelFactory make = findKernelFactory(n.domain(), n.opType());
      if (!make) info.unsupported("no kernel for this op type");
      step.kernel = make(info, out_types);
    }
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.rfind(describeNode(n), 0) != 0) msg = describeNode(n) + ": " + msg;
    if (!problems) throw Error(e.code(), msg);
    problems->push_back(msg);
  }
  return out_types;
}

bool Plan::simulatesIntegerLayer(const ir::Node& n) const {
  return opts_.simulate_quantization && ir::integerLayerForm(n) != ir::IntegerLayerForm::kNone;
}

void Plan::addFakeQuantStep(int slot, const ir::ActivationQuant& aq, std::vector<std::string>* problems) {
  Step step;
  step.in_slots = {slot};
  const int shadow = static_cast<int>(std::find(base_of_.begin() + slot + 1, base_of_.end(), slot) - base_of_.begin());
  step.out_slots = {shadow};
  try {
    if (slot_types_[slot] != DType::kFloat32)
      throwInput("act_quant on a " + ir::dtypeName(slot_types_[slot]) + " value (float32 only)");
    step.kernel = makeFakeQuantKernel(aq);
  } catch (const Error& e) {
    const std::string msg = "value '" + slot_names_[slot] + "': " + e.what();
    if (!problems) throw Error(ExitCode::kInput, msg);
    problems->push_back(msg);
  }
  steps_.push_back(std::move(step));
}

void Plan::plan(const PlanScope* outer, std::vector<std::string>* problems) {
  auto report = [&](const std::string& msg) {
    if (!problems) throw Error(ExitCode::kInput, msg);
    problems->push_back(msg);
  };

  // 1. Slots for every value the graph touches.
  auto slotFor = [&](const ir::Value* v) -> int {
    if (!v) return -1;
    auto it = slot_of_.find(v->name());
    if (it != slot_of_.end()) return it->second;
    const int s = static_cast<int>(slot_names_.size());
    slot_of_[v->name()] = s;
    slot_names_.push_back(v->name());
    DType t = v->dtype;
    if (v->isConstant()) {
      Tensor c;
      try {
        c = constantFor(*v);
      } catch (const Error& e) {
        report(e.what());
        c = v->initializer;
      }
      t = c.dtype();
      const_index_[s] = constants_.size();
      constants_.emplace_back(s, std::move(c));
    } else if (v->kind() == ir::Value::Kind::kOuterScope) {
      t = DType::kUndefined;
      int depth = 1;
      bool found = false;
      for (const PlanScope* sc = outer; sc; sc = sc->parent, ++depth) {
        const int os = sc->plan->slotOf(v->name());
        if (os >= 0) {
          outer_bindings_.push_back({s, depth, os});
          t = sc->plan->slotType(os);
          found = true;
          break;
        }
      }
      if (!found) report("value '" + v->name() + "' is read from an enclosing graph that does not define it");
    }
    slot_types_.push_back(t);
    return s;
  };
  for (const ir::Value* v : graph_.inputs()) input_slots_.push_back(slotFor(v));
  for (const ir::Value* v : graph_.initializers()) slotFor(v);
  const std::vector<ir::Node*> nodes = graph_.nodes();
  for (const ir::Node* n : nodes) {
    for (const ir::Value* v : n->inputs()) slotFor(v);
    for (const ir::Value* v : n->outputs()) slotFor(v);
  }
  for (const ir::Value* v : graph_.outputs()) output_slots_.push_back(slotFor(v));
  base_of_.resize(slot_names_.size());
  for (size_t s = 0; s < base_of_.size(); ++s) base_of_[s] = static_cast<int>(s);

  // 1b. Simulated activation quantization: a shadow slot per annotated value; readers read the
  // shadow, written by a fake-quant step right after the producer. Graph outputs, taps on the value
  // and subgraph outer-scope reads keep the float value.
  std::vector<int> shadow_of(slot_names_.size(), -1);
  std::vector<const ir::ActivationQuant*> act_quant_of(slot_names_.size(), nullptr);
  if (opts_.simulate_quantization)
    for (size_t s = 0, n = slot_names_.size(); s < n; ++s) {
      const ir::Value* v = graph_.findValue(slot_names_[s]);
      if (!v || !v->act_quant || v->kind() == ir::Value::Kind::kOuterScope) continue;
      act_quant_of[s] = v->act_quant.get();
      shadow_of[s] = static_cast<int>(slot_names_.size());
      slot_names_.push_back(slot_names_[s]);  // not in slot_of_: names resolve to the float value
      slot_types_.push_back(DType::kFloat32);
      base_of_.push_back(static_cast<int>(s));
    }
  auto readSlot = [&](int s) { return s >= 0 && shadow_of[s] >= 0 ? shadow_of[s] : s; };

  // 2. Topological order (stable), counting subgraph reads of this graph's values as inputs.
  std::vector<std::vector<int>> implicit(nodes.size());
  std::unordered_map<const ir::Node*, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) index[nodes[i]] = i;
  std::vector<int> producer_of_slot(slot_names_.size(), -1);
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const ir::Value* v : nodes[i]->outputs())
      if (v) producer_of_slot[slot_of_[v->name()]] = static_cast<int>(i);
  std::vector<std::vector<int>> deps(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (const std::string& name : subgraphOuterReads(*nodes[i])) {
      const int s = slotOf(name);
      if (s >= 0) implicit[i].push_back(s);
    }
    std::vector<int> reads;
    for (const ir::Value* v : nodes[i]->inputs())
      if (v) reads.push_back(slot_of_[v->name()]);
    reads.insert(reads.end(), implicit[i].begin(), implicit[i].end());
    for (int s : reads)
      if (producer_of_slot[s] >= 0 && producer_of_slot[s] != static_cast<int>(i)) deps[i].push_back(producer_of_slot[s]);
  }
  std::vector<int> pending(nodes.size());
  std::vector<std::vector<int>> users(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    std::sort(deps[i].begin(), deps[i].end());
    deps[i].erase(std::unique(deps[i].begin(), deps[i].end()), deps[i].end());
    pending[i] = static_cast<int>(deps[i].size());
    for (int d : deps[i]) users[d].push_back(static_cast<int>(i));
  }
  std::vector<int> order;
  std::vector<bool> done(nodes.size(), false);
  size_t cursor = 0;
  while (order.size() < nodes.size()) {
    size_t i = cursor;
    while (i < nodes.size() && (done[i] || pending[i] != 0)) ++i;
    if (i == nodes.size()) {
      report("graph '" + graph_.name + "' has a cycle or reads a value no node produces");
      break;
    }
    done[i] = true;
    order.push_back(static_cast<int>(i));
    for (int u : users[i]) --pending[u];
    while (cursor < nodes.size() && done[cursor]) ++cursor;
  }

  // 3. Kernels, in order, inferring dtypes as we go.
  PlanScope my_scope{outer, this};
  for (size_t s = 0; s < act_quant_of.size(); ++s)  // graph inputs and constants: fake-quantized first
    if (act_quant_of[s] && (isConstantSlot(static_cast<int>(s)) ||
                            std::find(input_slots_.begin(), input_slots_.end(), static_cast<int>(s)) != input_slots_.end()))
      addFakeQuantStep(static_cast<int>(s), *act_quant_of[s], problems);
  for (int i : order) {
    const ir::Node& n = *nodes[i];
    Step step;
    step.node = &n;
    step.implicit_in = implicit[i];
    // An integer layer quantizes its float input itself (makeIntegerLayerKernel), so it reads the
    // value, not the fake-quantized shadow.
    const bool integer = simulatesIntegerLayer(n);
    for (const ir::Value* v : n.inputs()) {
      const int s = v ? slot_of_[v->name()] : -1;
      step.in_slots.push_back(integer && step.in_slots.empty() ? s : readSlot(s));
    }
    for (const ir::Value* v : n.outputs()) step.out_slots.push_back(v ? slot_of_[v->name()] : -1);
    const std::vector<DType> out_types = buildKernel(step, &my_scope, problems);
    for (size_t k = 0; k < step.out_slots.size(); ++k) {
      const int s = step.out_slots[k];
      if (s >= 0 && k < out_types.size() && out_types[k] != DType::kUndefined) slot_types_[s] = out_types[k];
    }
    const std::vector<int> outs = step.out_slots;
    step_of_[&n] = static_cast<int>(steps_.size());
    steps_.push_back(std::move(step));
    for (int s : outs)
      if (s >= 0 && act_quant_of[s]) addFakeQuantStep(s, *act_quant_of[s], problems);
  }
  default_schedule_ = makeSchedule(output_slots_);
}

// ---------------------------------------------------------------- scheduling

Plan::Schedule Plan::makeSchedule(const std::vector<int>& roots, const std::vector<int>& extra_steps,
                                  const std::vector<bool>& fed) const {
  const int nslots = numSlots();
  std::vector<int> producer(nslots, -1);
  for (size_t i = 0; i < steps_.size(); ++i)
    for (int s : steps_[i].out_slots)
      if (s >= 0) producer[s] = static_cast<int>(i);
  std::vector<bool> need_step(steps_.size(), false);
  std::vector<int> stack;
  auto needStep = [&](int st) {
    if (need_step[st]) return;
    need_step[st] = true;
    for (int s : steps_[st].in_slots)
      if (s >= 0) stack.push_back(s);
    for (int s : steps_[st].implicit_in) stack.push_back(s);
  };
  for (int s : roots) stack.push_back(s);
  for (int st : extra_steps) needStep(st);
  std::vector<bool> seen(nslots, false);
  while (!stack.empty()) {
    const int s = stack.back();
    stack.pop_back();
    if (s < 0 || seen[s]) continue;
    seen[s] = true;
    if (producer[s] >= 0 && !(s < static_cast<int>(fed.size()) && fed[s])) needStep(producer[s]);
  }

  Schedule sched;
  for (size_t i = 0; i < steps_.size(); ++i)
    if (need_step[i]) sched.steps.push_back(static_cast<int>(i));
  std::vector<bool> keep(nslots, false);
  for (int s : roots)
    if (s >= 0) keep[s] = true;
  for (const auto& c : constants_) keep[c.first] = true;
  for (const auto& b : outer_bindings_) keep[b.slot] = true;
  std::vector<int> last_use(nslots, -1);
  for (size_t p = 0; p < sched.steps.size(); ++p) {
    const Step& st = steps_[sched.steps[p]];
    for (int s : st.in_slots)
      if (s >= 0) last_use[s] = static_cast<int>(p);
    for (int s : st.implicit_in) last_use[s] = static_cast<int>(p);
  }
  sched.free_after.resize(sched.steps.size());
  sched.move_in.resize(sched.steps.size());
  for (size_t p = 0; p < sched.steps.size(); ++p) {
    const Step& st = steps_[sched.steps[p]];
    std::vector<int>& frees = sched.free_after[p];
    for (int k = static_cast<int>(st.in_slots.size()) - 1; k >= 0; --k) {
      const int s = st.in_slots[k];
      if (s < 0 || keep[s] || last_use[s] != static_cast<int>(p)) continue;
      if (std::find(frees.begin(), frees.end(), s) != frees.end()) continue;  // earlier occurrence
      frees.push_back(s);
      if (std::find(st.implicit_in.begin(), st.implicit_in.end(), s) == st.implicit_in.end())
        sched.move_in[p].push_back(k);
    }
    for (int s : st.implicit_in)
      if (!keep[s] && last_use[s] == static_cast<int>(p) && std::find(frees.begin(), frees.end(), s) == frees.end())
        frees.push_back(s);
    for (int s : st.out_slots)  // produced but never read
      if (s >= 0 && !keep[s] && last_use[s] < 0) frees.push_back(s);
  }
  // Graph inputs nobody reads are dropped up front by the caller not keeping them; nothing to do.
  return sched;
}

// ---------------------------------------------------------------- execution

TensorList Plan::newSlots(const Frame* outer) const {
  TensorList slots(slot_names_.size());
  for (const auto& c : constants_) slots[c.first] = c.second;
  for (const auto& b : outer_bindings_) {
    const Frame* f = outer;
    for (int d = 1; d < b.depth && f; ++d) f = f->parent;
    if (!f || !f->slots) throwInternal("outer-scope value '" + slot_names_[b.slot] + "' has no enclosing frame");
    slots[b.slot] = (*f->slots)[b.outer_slot];
  }
  return slots;
}

void Plan::execute(ExecContext& ctx, const Schedule& sched, TensorList& slots, const Frame* outer,
                   const Taps* taps) const {
  const Frame* saved = ctx.frame;
  Frame me{outer, &slots};
  ctx.frame = &me;
  struct Restore {
    ExecContext& c;
    const Frame* f;
    ~Restore() { c.frame = f; }
  } restore{ctx, saved};

  const bool slot_taps = taps && !taps->by_slot.empty();
  if (slot_taps)
    for (int s = 0; s < numSlots(); ++s)
      if (!taps->by_slot[s].empty() && !slots[s].empty())
        for (const TapFn& fn : taps->by_slot[s]) fn(slot_names_[s], slots[s]);

  TensorList in, out;
  for (size_t p = 0; p < sched.steps.size(); ++p) {
    const Step& st = steps_[sched.steps[p]];
    in.assign(st.in_slots.size(), Tensor());
    const std::vector<int>& moves = sched.move_in[p];
    for (size_t k = 0; k < st.in_slots.size(); ++k) {
      const int s = st.in_slots[k];
      if (s < 0) continue;
      if (slots[s].empty() && slot_types_[s] != DType::kUndefined)
        throwInternal(describeStep(st) + ": input '" + slot_names_[s] + "' was not computed");
      if (std::find(moves.begin(), moves.end(), static_cast<int>(k)) != moves.end()) in[k] = std::move(slots[s]);
      else in[k] = slots[s];
    }
    if (taps && !taps->by_step_input.empty()) {
      auto it = taps->by_step_input.find(sched.steps[p]);
      if (it != taps->by_step_input.end())
        for (const auto& [k, fn] : it->second)
          if (k < static_cast<int>(in.size()) && !in[k].empty()) fn(slot_names_[st.in_slots[k]], in[k]);
    }
    out.assign(st.out_slots.size(), Tensor());
    if (!st.kernel) throwInternal(describeStep(st) + ": has no kernel (planning failed)");
    try {
      st.kernel(ctx, in, out);
    } catch (const Error& e) {
      throw e.withContext(describeStep(st));
    } catch (const std::bad_alloc&) {
      throw Error(ExitCode::kInput, describeStep(st) + ": out of memory");
    } catch (const std::exception& e) {
      throw Error(ExitCode::kInternal, describeStep(st) + ": " + e.what());
    }
    in.clear();
    for (size_t k = 0; k < st.out_slots.size(); ++k) {
      const int s = st.out_slots[k];
      if (s < 0) continue;
      if (k < out.size() && !out[k].empty() && slot_types_[s] != DType::kUndefined && out[k].dtype() != slot_types_[s])
        throwInternal(describeStep(st) + ": output " + std::to_string(k) + " is " + ir::dtypeName(out[k].dtype()) +
                      ", planned " + ir::dtypeName(slot_types_[s]));
      slots[s] = k < out.size() ? std::move(out[k]) : Tensor();
      if (slot_taps && !taps->by_slot[s].empty() && !slots[s].empty())
        for (const TapFn& fn : taps->by_slot[s]) fn(slot_names_[s], slots[s]);
    }
    for (int s : sched.free_after[p]) slots[s] = Tensor();
  }
}

}  // namespace ptq::runtime
