#include "lib/runtime/session.h"

#include <omp.h>

#include <algorithm>

#include "lib/runtime/buffer_pool.h"
#include "lib/runtime/plan.h"
#include "lib/util/denormals.h"
#include "lib/util/error.h"

namespace ptq::runtime {

struct Session::CachedSchedule {
  Plan::Schedule sched;
  int64_t node_steps = 0;         // steps with an ir::Node (fake-quant steps are not node executions)
  std::vector<int> missing;       // graph inputs the schedule reads that are not fed
};

namespace {
PlanOptions planOptions(int64_t default_opset, const std::map<std::string, int64_t>& domains, bool simulate = false) {
  PlanOptions o;
  o.default_opset = default_opset;
  o.domain_opsets = domains;
  o.simulate_quantization = simulate;
  return o;
}

// Graph inputs that `sched` (or `roots` directly) reads but that are not in `fed`.
std::vector<int> missingInputs(const Plan& plan, const Plan::Schedule& sched, const std::vector<int>& roots,
                               const std::vector<bool>& fed) {
  std::vector<bool> read(plan.numSlots(), false);
  for (int st : sched.steps) {
    for (int s : plan.steps()[st].in_slots)
      if (s >= 0) read[s] = true;
    for (int s : plan.steps()[st].implicit_in) read[s] = true;
  }
  for (int s : roots) read[s] = true;
  std::vector<int> missing;
  for (const ir::Value* v : plan.graph().inputs()) {
    const int s = plan.slotOf(v->name());
    if (s >= 0 && read[s] && !fed[s] && v->kind() == ir::Value::Kind::kGraphInput) missing.push_back(s);
  }
  return missing;
}

std::map<std::string, int64_t> modelDomains(const ir::Model& m) {
  std::map<std::string, int64_t> d;
  for (const auto& o : m.opsets)
    if (!o.domain.empty() && o.domain != "ai.onnx") d[o.domain] = o.version;
  return d;
}

std::string typeString(const ir::Value& v) {
  std::string s = ir::dtypeName(v.dtype);
  if (!v.shape) return s;
  s += "[";
  for (size_t i = 0; i < v.shape->size(); ++i) {
    const ir::Dim& d = (*v.shape)[i];
    s += (i ? "," : "") + (d.known() ? std::to_string(d.value) : (d.symbol.empty() ? "?" : d.symbol));
  }
  return s + "]";
}

// Converts a feed to the graph input's dtype where that is lossless or expected; checks the shape.
ir::Tensor checkFeed(const ir::Value& in, const ir::Tensor& feed) {
  ir::Tensor t = feed;
  const ir::DType want = in.dtype;
  if (want != ir::DType::kUndefined && t.dtype() != want) {
    const bool float_in = t.dtype() == ir::DType::kFloat16 || t.dtype() == ir::DType::kFloat64 ||
                          t.dtype() == ir::DType::kBFloat16;
    if (want == ir::DType::kFloat32 && float_in) {
      t = ir::Tensor::fromFloats(t.shape(), t.toFloats());
    } else if (want == ir::DType::kInt64 && (t.dtype() == ir::DType::kInt32 || t.dtype() == ir::DType::kUInt8 ||
                                             t.dtype() == ir::DType::kInt8 || t.dtype() == ir::DType::kUInt16 ||
                                             t.dtype() == ir::DType::kInt16 || t.dtype() == ir::DType::kUInt32)) {
      t = ir::Tensor::fromInt64s(t.shape(), t.toInt64s());
    } else {
      throwInput("input '" + in.name() + "': expected " + typeString(in) + ", got " + ir::dtypeName(t.dtype()) +
                 ir::shapeToString(t.shape()));
    }
  }
  if (in.shape) {
    bool ok = in.shape->size() == t.shape().size();
    for (size_t i = 0; ok && i < t.shape().size(); ++i)
      if ((*in.shape)[i].known() && (*in.shape)[i].value != t.shape()[i]) ok = false;
    if (!ok)
      throwInput("input '" + in.name() + "': expected " + typeString(in) + ", got " + ir::dtypeName(t.dtype()) +
                 ir::shapeToString(t.shape()));
  }
  return t;
}
}  // namespace

Session::Session(const ir::Graph& graph, int64_t default_opset, SessionOptions options) : graph_(graph) {
  threads_ = options.threads > 0 ? options.threads : std::max(1, omp_get_max_threads());
  flush_denormals_ = options.flush_denormals;
  plan_ = std::make_unique<Plan>(graph, planOptions(default_opset, options.domain_opsets, options.simulate_quantization),
                                 nullptr);
  pool_ = std::make_unique<BufferPool>();
  taps_ = std::make_unique<Taps>();
}

Session::Session(const ir::Model& model, SessionOptions options)
    : Session(*model.graph, model.opsetVersion(), [&] {
        SessionOptions o = options;
        for (const auto& [d, v] : modelDomains(model)) o.domain_opsets.emplace(d, v);
        return o;
      }()) {}

Session::~Session() = default;

void Session::tap(const std::string& value_name, TapFn fn) {
  const int s = plan_->slotOf(value_name);
  if (s < 0) throwUsage("tap: the graph has no value named '" + value_name + "'");
  if (taps_->by_slot.empty()) taps_->by_slot.resize(plan_->numSlots());
  taps_->by_slot[s].push_back(std::move(fn));
  if (std::find(tapped_slots_.begin(), tapped_slots_.end(), s) == tapped_slots_.end()) tapped_slots_.push_back(s);
  schedules_.clear();
}

void Session::tapNodeInput(const std::string& node_name, int input_index, TapFn fn) {
  int step = -1;
  for (const ir::Node* n : graph_.nodes())
    if (n->name == node_name) step = plan_->stepOf(n);
  if (step < 0) throwUsage("tap: the graph has no node named '" + node_name + "'");
  const auto& st = plan_->steps()[step];
  if (input_index < 0 || input_index >= static_cast<int>(st.in_slots.size()) || st.in_slots[input_index] < 0)
    throwUsage("tap: " + describeNode(*st.node) + " has no input " + std::to_string(input_index));
  taps_->by_step_input[step].emplace_back(input_index, std::move(fn));
  if (std::find(extra_steps_.begin(), extra_steps_.end(), step) == extra_steps_.end()) extra_steps_.push_back(step);
  schedules_.clear();
}

void Session::clearTaps() {
  *taps_ = Taps();
  extra_steps_.clear();
  tapped_slots_.clear();
  schedules_.clear();
}

std::map<std::string, ir::Tensor> Session::run(const std::map<std::string, ir::Tensor>& feeds,
                                               const std::vector<std::string>& outputs,
                                               const std::map<std::string, TapFn>& run_taps) {
  std::vector<int> out_slots;
  std::vector<std::string> out_names;
  if (outputs.empty()) {
    out_slots = plan_->outputSlots();
    for (const ir::Value* v : graph_.outputs()) out_names.push_back(v->name());
  } else {
    for (const std::string& name : outputs) {
      const int s = plan_->slotOf(name);
      if (s < 0) throwUsage("requested output '" + name + "' is not a value of the graph");
      out_slots.push_back(s);
      out_names.push_back(name);
    }
  }

  // Feeds: graph inputs are checked against their declared type, other values against the dtype
  // inferred at planning (their shape is not known statically).
  TensorList slots = plan_->newSlots(nullptr);
  std::vector<bool> fed(plan_->numSlots(), false);
  std::vector<int> fed_slots;
  bool partial = false;
  for (const auto& [name, tensor] : feeds) {
    const ir::Value* v = graph_.findValue(name);
    const int s = plan_->slotOf(name);
    if (!v || s < 0) {
      std::string names;
      for (const std::string& n : inputNames()) names += (names.empty() ? "" : ", ") + n;
      throwUsage("'" + name + "' is not a value of the model (inputs: " + names + ")");
    }
    if (v->isConstant()) throwUsage("'" + name + "' is a constant of the model; change it with setConstant");
    if (std::find(graph_.inputs().begin(), graph_.inputs().end(), v) != graph_.inputs().end()) {
      slots[s] = checkFeed(*v, tensor);
    } else {
      const ir::DType want = plan_->slotType(s);
      if (want != ir::DType::kUndefined && tensor.dtype() != want)
        throwInput("value '" + name + "': expected " + ir::dtypeName(want) + ", got " + ir::dtypeName(tensor.dtype()) +
                   ir::shapeToString(tensor.shape()));
      slots[s] = tensor;
      partial = true;
    }
    fed[s] = true;
    fed_slots.push_back(s);
  }
  std::sort(fed_slots.begin(), fed_slots.end());

  std::vector<int> run_tap_slots;
  for (const auto& [name, fn] : run_taps) {
    (void)fn;
    const int s = plan_->slotOf(name);
    if (s < 0) throwUsage("tap: the graph has no value named '" + name + "'");
    run_tap_slots.push_back(s);
  }

  auto& cached = schedules_[ScheduleKey{fed_slots, out_slots, run_tap_slots}];
  if (!cached) {
    cached = std::make_shared<CachedSchedule>();
    std::vector<int> roots = out_slots;
    std::vector<int> soft = tapped_slots_;
    soft.insert(soft.end(), run_tap_slots.begin(), run_tap_slots.end());
    std::vector<int> steps;
    if (!partial) {
      roots.insert(roots.end(), soft.begin(), soft.end());
      steps = extra_steps_;
    } else {
      // A tap upstream of a fed value would need inputs the caller replaced by that value.
      for (int s : soft)
        if (missingInputs(*plan_, plan_->makeSchedule({s}, {}, fed), {s}, fed).empty()) roots.push_back(s);
      for (int st : extra_steps_) {
        bool writes_fed = false;
        for (int s : plan_->steps()[st].out_slots) writes_fed = writes_fed || (s >= 0 && fed[s]);
        if (!writes_fed && missingInputs(*plan_, plan_->makeSchedule({}, {st}, fed), {}, fed).empty())
          steps.push_back(st);
      }
    }
    cached->sched = plan_->makeSchedule(roots, steps, fed);
    cached->missing = missingInputs(*plan_, cached->sched, roots, fed);
    for (int st : cached->sched.steps) cached->node_steps += plan_->steps()[st].node ? 1 : 0;
  }
  for (int s : cached->missing) {
    const ir::Value* v = graph_.findValue(plan_->slotName(s));
    throwUsage("input '" + v->name() + "' (" + typeString(*v) + ") was not given");
  }

  const Taps* taps = taps_->empty() ? nullptr : taps_.get();
  Taps with_run_taps;
  if (!run_taps.empty()) {
    with_run_taps = *taps_;
    if (with_run_taps.by_slot.empty()) with_run_taps.by_slot.resize(plan_->numSlots());
    for (const auto& [name, fn] : run_taps) with_run_taps.by_slot[plan_->slotOf(name)].push_back(fn);
    taps = &with_run_taps;
  }
  ExecContext ctx(*pool_, threads_);
  const ScopedDenormalFlags flags(flush_denormals_ ? kDenormalBits : denormalFlags());
  plan_->execute(ctx, cached->sched, slots, nullptr, taps);
  node_executions_ += cached->node_steps;

  std::map<std::string, ir::Tensor> result;
  for (size_t i = 0; i < out_slots.size(); ++i) result[out_names[i]] = slots[out_slots[i]];
  slots.clear();
  pool_->endRun();
  return result;
}

void Session::setConstant(const std::string& name, ir::Tensor t) {
  const ir::Value* v = graph_.findValue(name);
  const int s = plan_->slotOf(name);
  if (!v || !v->isConstant() || s < 0 || !plan_->isConstantSlot(s))
    throwUsage("setConstant: '" + name + "' is not a constant of the graph");
  plan_->replaceConstant(s, std::move(t));
}

void Session::reloadConstant(const std::string& name) {
  const ir::Value* v = graph_.findValue(name);
  const int s = plan_->slotOf(name);
  if (!v || !v->isConstant() || s < 0 || !plan_->isConstantSlot(s))
    throwUsage("reloadConstant: '" + name + "' is not a constant of the graph");
  plan_->replaceConstant(s, plan_->constantFor(*v));
}

std::vector<std::string> Session::inputNames() const {
  std::vector<std::string> r;
  for (const ir::Value* v : graph_.realInputs()) r.push_back(v->name());
  return r;
}

std::vector<std::string> Session::outputNames() const {
  std::vector<std::string> r;
  for (const ir::Value* v : graph_.outputs()) r.push_back(v->name());
  return r;
}

ir::DType Session::valueType(const std::string& name) const {
  const int s = plan_->slotOf(name);
  return s < 0 ? ir::DType::kUndefined : plan_->slotType(s);
}

size_t Session::peakActivationBytes() const { return pool_->peakBytesInUse(); }

std::vector<std::string> unsupportedNodes(const ir::Graph& graph, int64_t default_opset,
                                          const std::map<std::string, int64_t>& domain_opsets) {
  std::vector<std::string> problems;
  Plan plan(graph, planOptions(default_opset, domain_opsets), nullptr, &problems);
  return problems;
}

std::vector<std::string> unsupportedNodes(const ir::Model& model) {
  return unsupportedNodes(*model.graph, model.opsetVersion(), modelDomains(model));
}

}  // namespace ptq::runtime
