#include "passes/bit_allocation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "lib/calib/calibration.h"
#include "lib/quant/observer.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"
#include "passes/bit_ilp.h"
#include "passes/bit_sensitivity.h"
#include "passes/qdq.h"

namespace ptq::passes {

namespace {

using nlohmann::json;
using pipeline::LayerPlan;

// ---- options ---------------------------------------------------------------------------------------

// [2, 3, 4, 8, "float"] -> {2, 3, 4, 8, 32}; "" or why not.
std::string parseBitList(const json& v, bool activations, std::vector<int>* out) {
  if (!v.is_array() || v.empty()) return "must be a non-empty list";
  std::vector<int> bits;
  for (const json& e : v) {
    int b = 0;
    if (e.is_string() && e.get<std::string>() == "float") b = kFloatBits;
    else if (e.is_number_integer()) b = e.get<int>();
    else return "entries are bit widths or \"float\"";
    const bool ok = b == kFloatBits || (activations ? (b == 4 || b == 8 || b == 16) : (b >= 2 && b <= 8));
    if (!ok) return activations ? "activation candidates are 4, 8, 16 or \"float\"" : "weight candidates are 2..8 or \"float\"";
    if (std::find(bits.begin(), bits.end(), b) != bits.end()) return "a candidate is listed twice";
    bits.push_back(b);
  }
  std::sort(bits.begin(), bits.end());
  if (out) *out = bits;
  return "";
}

const std::vector<std::string> kWeightBudgetKeys{"avg_bits", "bytes", "uniform_bits", "bops"};
const std::vector<std::string> kActivationBudgetKeys{"share", "bops"};

std::string checkBudget(const json& v, const std::vector<std::string>& keys) {
  if (!v.is_object() || v.empty()) return "must be an object with at least one of: " + [&] {
    std::string s;
    for (const auto& k : keys) s += (s.empty() ? "" : ", ") + k;
    return s;
  }();
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (std::find(keys.begin(), keys.end(), it.key()) == keys.end()) return "unknown budget '" + it.key() + "'";
    if (!it.value().is_number()) return "budget '" + it.key() + "' must be a number";
    const double x = it.value().get<double>();
    if (!(x > 0) || !std::isfinite(x)) return "budget '" + it.key() + "' must be positive";
    if (it.key() == "share" && x > 1) return "budget 'share' is a fraction in (0, 1]";
    if (it.key() == "uniform_bits" && (!it.value().is_number_integer() || x < 2 || x > 8))
      return "budget 'uniform_bits' is a bit width 2..8";
  }
  return "";
}

std::string checkOpCandidates(const json& v) {
  if (!v.is_object()) return "must be an object {\"OP\": [bits, ...]}";
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string why = parseBitList(it.value(), false, nullptr);
    if (!why.empty()) return it.key() + ": " + why;
  }
  return "";
}

struct Options {
  std::vector<int> candidates;
  std::map<std::string, std::vector<int>> op_candidates;
  json budget;
  std::vector<int> activation_candidates;
  json activation_budget;
  bool pin_first_last = false;
  bool tie_shared_inputs = true;
  bool measured = false;
  OutputMetric metric = OutputMetric::kKl;
  int64_t measure_samples = 16;
  int clip_steps = 20;
  float clip_min_ratio = 0.5f;
};

// ---- the pass --------------------------------------------------------------------------------------

struct Choice {
  int w = 8;  // weight bits or kFloatBits
  int a = 0;  // activation bits, kFloatBits, or 0 (activations not allocated)
  int key() const { return w * 100 + a; }
};

struct LayerWork {
  LayerPlan* layer = nullptr;
  std::vector<int> wbits;
  std::vector<int> abits{0};
  std::map<int, double> wcost, acost;
  std::map<int, int64_t> wbytes;
  int64_t params = 0;
  double macs = 0;  // per sample
};

std::string bitsName(int b) { return b == kFloatBits ? "float" : std::to_string(b); }

class BitAllocationPass final : public pipeline::Pass {
 public:
  explicit BitAllocationPass(Options o) : o_(std::move(o)) {}
  std::string name() const override { return "bit-allocation"; }

  pipeline::PassResult run(ir::Model& model, pipeline::PassContext& ctx) override {
    if (!ctx.calibration) throwInternal("pass 'bit-allocation' runs without calibration data");
    const auto t0 = std::chrono::steady_clock::now();
    const pipeline::ActivationSettings& acts = ctx.config.activations;
    const bool alloc_acts = !o_.activation_candidates.empty();
    if (alloc_acts && (!acts.present || acts.dynamic || !ctx.config.hasPass("qdq")))
      throwUsage("bit-allocation: activation_candidates need the qdq pass with static activations (an \"activations\" "
                 "section without \"dynamic\")");
    if (alloc_acts && !o_.measured)
      throwUsage("bit-allocation: activation_candidates need \"sensitivity\": \"measured\" (weight and activation "
                 "costs must be in the same units)");
    pipeline::PassResult result;

    runtime::SessionOptions so;
    so.threads = ctx.threads;
    so.simulate_quantization = true;  // nothing is quantized yet: the float model; trials annotate one layer
    runtime::Session session(model, so);

    // Which layers take part.
    std::vector<LayerWork> work;
    int64_t kept = 0;
    std::vector<LayerPlan*> candidates_layers;
    for (LayerPlan* l : ctx.plan.active()) {
      if (l->weight->quant) throwInternal("bit-allocation: " + l->label() + " is already quantized");
      if (!l->scope.empty()) {
        ctx.plan.note(*l, name(), "not allocated: inside a subgraph (" + l->scope + "); keeps " +
                                     std::to_string(l->weights.bits) + " bits");
        ++kept;
        continue;
      }
      candidates_layers.push_back(l);
    }
    std::map<LayerPlan*, std::string> no_hessian;
    if (!o_.measured) {
      std::vector<LayerPlan*> need;
      for (LayerPlan* l : candidates_layers)
        if (!l->hessian || l->hessian->source != "float") need.push_back(l);
      std::vector<std::map<std::string, ir::Tensor>> batches;
      for (int64_t b = 0; b < ctx.calibration->numBatches(); ++b) batches.push_back(ctx.calibration->batch(b));
      spdlog::info("bit-allocation: layer-input Hessians of {} layers on {}", need.size(), ctx.calibration->describe());
      no_hessian = collectHessians(session, batches, need);
    }
    for (LayerPlan* l : candidates_layers) {
      if (auto it = no_hessian.find(l); it != no_hessian.end()) {
        ctx.plan.note(*l, name(), "not allocated: no Hessian (" + it->second + "); keeps " + std::to_string(l->weights.bits) +
                                     " bits");
        ++kept;
        continue;
      }
      LayerWork w;
      w.layer = l;
      auto oc = o_.op_candidates.find(l->node->opType());
      w.wbits = oc != o_.op_candidates.end() ? oc->second : o_.candidates;
      if (alloc_acts && l->quantize_activations) w.abits = o_.activation_candidates;
      w.params = l->weight->initializer.numel();
      work.push_back(std::move(w));
    }
    result.counters["layers_allocated"] = static_cast<int64_t>(work.size());
    result.counters["layers_not_allocated"] = kept;
    if (work.empty()) return result;

    // Sensitivities.
    std::unique_ptr<OutputErrorMeter> meter;
    if (o_.measured) {
      meter = std::make_unique<OutputErrorMeter>(session, *ctx.calibration, o_.measure_samples, o_.metric);
      int64_t trials = 0;
      for (const LayerWork& w : work)
        for (int b : w.wbits) trials += b != kFloatBits;
      for (const LayerWork& w : work)
        for (int a : w.abits) trials += a != 0 && a != kFloatBits;
      spdlog::info("bit-allocation: measuring {} trials ({} layers) on {} calibration samples, {} ({}), one model run each",
                   trials, work.size(), meter->samples(), o_.metric == OutputMetric::kKl ? "KL of the outputs" : "output MSE",
                   meter->probabilities() ? "outputs read as probabilities" : "outputs read as logits");
    }
    std::map<const ir::Value*, std::unique_ptr<quant::ActivationObserver>> observers;
    if (alloc_acts) observeActivations(session, ctx, work, observers);
    for (size_t i = 0; i < work.size(); ++i) {
      LayerWork& w = work[i];
      LayerPlan& l = *w.layer;
      const double tr = o_.measured ? 0.0 : meanHessianDiagonal(*l.hessian);
      std::string line;
      for (int b : w.wbits) {
        WeightCandidate c = weightCandidate(l, b, o_.clip_steps, o_.clip_min_ratio);
        w.wbytes[b] = c.bytes;
        double cost = 0;
        if (b != kFloatBits) {
          if (o_.measured) {
            l.weight->quant = c.quant;
            session.reloadConstant(l.weight->name());
            cost = meter->measure(session);
            l.weight->quant.reset();
            session.reloadConstant(l.weight->name());
          } else {
            cost = tr * c.sq_error;
          }
        }
        w.wcost[b] = cost;
        l.metrics["sensitivity_w" + bitsName(b)] = cost;
        l.metrics["bytes_w" + bitsName(b)] = static_cast<double>(c.bytes);
        line += " w" + bitsName(b) + " " + fmtG(cost);
      }
      for (int a : w.abits) {
        if (a == 0) continue;
        const double cost = a == kFloatBits ? 0.0 : activationTrial(model, l, a, observers, *meter, ctx);
        w.acost[a] = cost;
        l.metrics["sensitivity_a" + bitsName(a)] = cost;
        line += " a" + bitsName(a) + " " + fmtG(cost);
      }
      spdlog::info("bit-allocation: layer {}/{} {}:{}", i + 1, work.size(), l.node->name.empty() ? l.weight->name() : l.node->name,
                   line);
    }
    if (meter) result.counters["trial_runs"] = meter->runs();
    const double sens_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // The program.
    const bool need_macs = o_.budget.contains("bops") || o_.activation_budget.contains("bops");
    if (need_macs) measureMacs(session, ctx, work);
    IlpProblem p;
    std::vector<std::vector<Choice>> choices(work.size());
    std::vector<std::vector<double>> true_cost(work.size());
    double largest = 0;
    for (const LayerWork& w : work) {
      for (const auto& [b, c] : w.wcost) largest = std::max(largest, c);
      for (const auto& [b, c] : w.acost) largest = std::max(largest, c);
    }
    // Choices whose sensitivities differ by less than a millionth of the largest one go to the narrower
    // (e.g. 16-bit activations, measured at ~1e-8, rather than float at 0, which ONNX Runtime runs slower).
    const double tie_break = (largest > 0 ? largest : 1.0) * 1e-6 / 64.0;
    for (size_t i = 0; i < work.size(); ++i) {
      IlpLayer il;
      il.name = work[i].layer->label();
      for (int wb : work[i].wbits)
        for (int ab : work[i].abits) {
          choices[i].push_back({wb, ab});
          il.keys.push_back(Choice{wb, ab}.key());
          const double c = work[i].wcost[wb] + (ab ? work[i].acost[ab] : 0.0);
          true_cost[i].push_back(c);
          il.cost.push_back(c + tie_break * (wb + ab));
        }
      p.layers.push_back(std::move(il));
    }
    addBudgets(p, work, choices, ctx, result);
    if (o_.pin_first_last) {
      for (size_t i : {size_t{0}, work.size() - 1}) {
        const auto& cs = choices[i];
        size_t best = 0;
        for (size_t c = 1; c < cs.size(); ++c)
          if (cs[c].w > cs[best].w || (cs[c].w == cs[best].w && cs[c].a > cs[best].a)) best = c;
        p.layers[i].pinned = static_cast<int>(best);
      }
    }
    if (o_.tie_shared_inputs) {
      std::map<const ir::Value*, std::vector<size_t>> by_input;
      for (size_t i = 0; i < work.size(); ++i)
        if (const ir::Value* x = work[i].layer->node->input(0); x && !x->isConstant()) by_input[x].push_back(i);
      for (auto& [x, group] : by_input)
        if (group.size() > 1) p.ties.push_back(group);
      result.counters["tie_groups"] = static_cast<int64_t>(p.ties.size());
    }
    // A budget below what the cheapest choices reach is the user's error: say how low it can go, in the
    // option's own unit.
    for (size_t k = 0; k < p.budgets.size(); ++k) {
      const double least = smallestFeasibleBudget(p, k);
      if (least > p.budgets[k].limit) {
        const BudgetUnit& u = units_[k];
        std::string smallest = fmt::format("{:.6g}", std::ceil(least / u.scale * 1e6) / 1e6);
        if (u.option == "uniform_bits") {  // a width, not bytes: the narrowest uniform width at or above `least`
          smallest = "above 8";
          for (int b = 2; b <= 8; ++b)
            if (uniformBytes(work, b) >= least) {
              smallest = std::to_string(b);
              break;
            }
        }
        throwUsage("bit-allocation: budget " + u.option + " " + fmtG(u.given) + " cannot be met: the smallest feasible is " +
                   u.option + " " + smallest + " (" +
                   fmt::format("{:.0f}", least) + " " + p.budgets[k].name +
                   ": every layer at its cheapest candidate the pins and ties allow)");
      }
    }
    const auto t1 = std::chrono::steady_clock::now();
    IlpSolution s = solveBitIlp(p);
    s.objective = 0;
    for (size_t i = 0; i < work.size(); ++i) s.objective += true_cost[i][static_cast<size_t>(s.choice[i])];
    const double solve_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();

    // The plan.
    std::map<std::string, int64_t> histogram;
    for (size_t i = 0; i < work.size(); ++i) {
      const Choice c = choices[i][static_cast<size_t>(s.choice[i])];
      LayerPlan& l = *work[i].layer;
      const std::string why = "sensitivity " + fmtG(true_cost[i][static_cast<size_t>(s.choice[i])]) + ", " +
                              std::to_string(work[i].wbytes[c.w]) + " bytes";
      if (c.w == kFloatBits) {
        ctx.plan.skip(l, "bit-allocation: kept float (" + why + ")", name());
      } else if (c.w != l.weights.bits) {
        pipeline::WeightSettings ws = l.weights;
        ws.bits = c.w;
        ctx.plan.setWeights(l, ws, name(), why);
      } else {
        ctx.plan.note(l, name(), "stays at " + std::to_string(c.w) + " bits (" + why + ")");
        l.decided_by = name();
      }
      l.metrics["allocated_weight_bits"] = c.w;
      ++histogram["weights_at_" + bitsName(c.w)];
      if (c.a != 0) {
        l.activation_bits = c.a;
        l.quantize_activations = c.a != kFloatBits;
        l.metrics["allocated_activation_bits"] = c.a;
        ++histogram["activations_at_" + bitsName(c.a)];
        if (c.a != acts.bits) ctx.plan.note(l, name(), "activations " + bitsName(c.a) + (c.a == kFloatBits ? "" : " bits"));
      }
    }
    for (auto& [k, v] : histogram) result.counters[k] = v;
    result.figures["objective"] = s.objective;
    for (size_t k = 0; k < p.budgets.size(); ++k) {
      result.figures["budget_" + p.budgets[k].name] = p.budgets[k].limit;
      result.figures["used_" + p.budgets[k].name] = s.used[k];
    }
    result.figures["sensitivity_seconds"] = sens_seconds;
    result.figures["solve_seconds"] = solve_seconds;
    result.counters["ilp_columns"] = s.columns;
    result.counters["ilp_rows"] = s.rows;
    result.changed = true;
    std::string summary;
    for (auto& [k, v] : histogram) summary += " " + k + "=" + std::to_string(v);
    std::string budgets;
    for (size_t k = 0; k < p.budgets.size(); ++k)
      budgets += " " + p.budgets[k].name + " " + fmtG(s.used[k]) + " of " + fmtG(p.budgets[k].limit);
    spdlog::info("bit-allocation: objective {} ({} layers,{}); budget used:{}; solved in {:.3f} s", fmtG(s.objective),
                 work.size(), summary, budgets, solve_seconds);
    return result;
  }

 private:
  static std::string fmtG(double v) { return fmt::format("{:.4g}", v); }

  // Budget rows of the program, from the options.
  void addBudgets(IlpProblem& p, const std::vector<LayerWork>& work, const std::vector<std::vector<Choice>>& choices,
                  const pipeline::PassContext& ctx, pipeline::PassResult& result) const {
    const pipeline::ActivationSettings& acts = ctx.config.activations;
    auto fixedActBits = [&](const LayerWork& w) {
      return w.layer->quantize_activations && acts.present && !acts.dynamic ? acts.bits : kFloatBits;
    };
    units_.clear();
    auto row = [&](const std::string& name, double limit, auto weightOf) {
      p.budgets.push_back({name, limit});
      units_.push_back({name, limit, 1.0});
      for (size_t i = 0; i < work.size(); ++i) {
        std::vector<double> ws;
        for (const Choice& c : choices[i]) ws.push_back(weightOf(work[i], c));
        p.layers[i].weight.push_back(std::move(ws));
      }
    };
    double params = 0;
    for (const LayerWork& w : work) params += static_cast<double>(w.params);
    for (auto it = o_.budget.begin(); it != o_.budget.end(); ++it) {
      const std::string& k = it.key();
      const double v = it.value().get<double>();
      if (k == "avg_bits") {
        row("bits", v * params, [](const LayerWork& w, const Choice& c) { return static_cast<double>(w.params) * c.w; });
        units_.back() = {"avg_bits", v, params};
        result.figures["budget_avg_bits"] = v;
      } else if (k == "bytes") {
        row("bytes", v, [](const LayerWork& w, const Choice& c) { return static_cast<double>(w.wbytes.at(c.w)); });
      } else if (k == "uniform_bits") {
        // The bytes every allocated layer would take at that width with its own grouping.
        // Its own row name, so that with a `bytes` budget too the two rows' figures stay apart.
        row("uniform_bits_bytes", uniformBytes(work, static_cast<int>(v)),
            [](const LayerWork& w, const Choice& c) { return static_cast<double>(w.wbytes.at(c.w)); });
        units_.back() = {"uniform_bits", v, 0.0};
        result.figures["budget_uniform_bits"] = v;
      } else if (k == "bops") {
        row("weight_bops", v, [&](const LayerWork& w, const Choice& c) {
          return w.macs * c.w * (c.a ? c.a : fixedActBits(w));
        });
        units_.back().option = "bops";
      }
    }
    if (o_.activation_candidates.empty()) return;
    double act_layers = 0;
    for (const LayerWork& w : work) act_layers += w.abits.size() > 1 || w.abits[0] != 0;
    for (auto it = o_.activation_budget.begin(); it != o_.activation_budget.end(); ++it) {
      const std::string& k = it.key();
      const double v = it.value().get<double>();
      if (k == "share") {
        const int base = acts.bits;
        row("activations_not_at_" + std::to_string(base) + "_bits", std::floor(v * act_layers + 1e-9),
            [base](const LayerWork&, const Choice& c) { return c.a != 0 && c.a != base ? 1.0 : 0.0; });
        units_.back() = {"share", v, act_layers};
        result.figures["budget_activation_share"] = v;
      } else if (k == "bops") {
        row("activation_bops", v, [&](const LayerWork& w, const Choice& c) {
          return w.macs * c.w * (c.a ? c.a : fixedActBits(w));
        });
        units_.back().option = "activation_budget.bops";
      }
    }
  }

  // The .ptq bytes of every allocated layer at width b with its own grouping (a uniform_bits budget).
  static double uniformBytes(const std::vector<LayerWork>& work, int b) {
    double bytes = 0;
    for (const LayerWork& w : work) bytes += static_cast<double>(weightCandidate(*w.layer, b, 1, 1.0f).bytes);  // only the scale count matters
    return bytes;
  }

  // MACs per sample of every layer: its output's elements per sample times the weights per output channel.
  void measureMacs(runtime::Session& session, const pipeline::PassContext& ctx, std::vector<LayerWork>& work) const {
    const auto feeds = ctx.calibration->batch(0);
    const double batch = static_cast<double>(feeds.begin()->second.shape()[0]);
    std::map<std::string, runtime::Session::TapFn> taps;
    std::map<std::string, double> out_elems;
    for (const LayerWork& w : work)
      for (const ir::Node* n : w.layer->readers)
        if (n->graph() == w.layer->graph && n->output(0))
          taps[n->output(0)->name()] = [&out_elems](const std::string& name, const ir::Tensor& t) {
            out_elems[name] = static_cast<double>(t.numel());
          };
    session.run(feeds, {}, taps);
    for (LayerWork& w : work) {
      const ir::Shape& s = w.layer->weight->initializer.shape();
      const double per_channel = static_cast<double>(w.params) / static_cast<double>(s[static_cast<size_t>(w.layer->channel_axis)]);
      w.macs = 0;
      for (const ir::Node* n : w.layer->readers)
        if (n->output(0) && out_elems.count(n->output(0)->name()))
          w.macs += out_elems[n->output(0)->name()] / batch * (n->opType() == "Gather" ? 0.0 : per_channel);
    }
  }

  // The values a layer's activation choice puts on a grid: its input, and its output unless that is a
  // graph output (or only feeds one through a bias Add), as the qdq pass does.
  static std::vector<ir::Value*> activationValues(const ir::Graph& g, const LayerPlan& l) {
    std::vector<ir::Value*> vs;
    const ir::Node* n = l.node;
    if (ir::Value* x = n->input(0); x && !x->isConstant()) vs.push_back(x);
    if (ir::Value* y = n->output(0); y && !g.isGraphOutput(y)) {
      bool biased_out = false;
      if (y->uses().size() == 1) {
        const ir::Node* add = y->uses()[0].node;
        if (add->opType() == "Add" && add->numInputs() == 2 && add->output(0) && g.isGraphOutput(add->output(0))) {
          const ir::Value* other = add->input(0) == y ? add->input(1) : add->input(0);
          biased_out = other && other->isConstant();
        }
      }
      if (!biased_out) vs.push_back(y);
    }
    return vs;
  }

  void observeActivations(runtime::Session& session, const pipeline::PassContext& ctx, const std::vector<LayerWork>& work,
                          std::map<const ir::Value*, std::unique_ptr<quant::ActivationObserver>>& observers) const {
    const pipeline::ActivationSettings& a = ctx.config.activations;
    quant::ObserverOptions oo;
    oo.percentile = a.percentile;
    oo.momentum = a.momentum;
    oo.bins = a.bins;
    std::map<std::string, runtime::Session::TapFn> taps;
    for (const LayerWork& w : work) {
      if (w.abits.size() == 1 && w.abits[0] == 0) continue;
      for (ir::Value* v : activationValues(*w.layer->graph, *w.layer)) {
        if (observers.count(v) || session.valueType(v->name()) != ir::DType::kFloat32) continue;
        observers[v] = quant::makeObserver(a.observer, oo);
        quant::ActivationObserver* obs = observers[v].get();
        taps[v->name()] = [obs](const std::string& name, const ir::Tensor& t) {
          try {
            obs->observe(t.data<float>(), t.numel());
          } catch (const Error& e) {
            throw e.withContext("activation '" + name + "'");
          }
        };
      }
    }
    spdlog::info("bit-allocation: observing {} activations ('{}') on {}", observers.size(), a.observer,
                 ctx.calibration->describe());
    for (int64_t b = 0; b < ctx.calibration->numBatches(); ++b) session.run(ctx.calibration->batch(b), {}, taps);
  }

  // The output error with only `l`'s activations on a `bits` grid (a fresh session: annotations are read
  // when a session is planned).
  double activationTrial(ir::Model& model, const LayerPlan& l, int bits,
                         std::map<const ir::Value*, std::unique_ptr<quant::ActivationObserver>>& observers,
                         OutputErrorMeter& meter, const pipeline::PassContext& ctx) const {
    const pipeline::ActivationSettings& a = ctx.config.activations;
    quant::GridSpec grid;
    grid.bits = bits;
    grid.symmetric = a.symmetric;
    grid.is_signed = a.symmetric;
    std::vector<ir::Value*> marked;
    for (ir::Value* v : activationValues(*l.graph, l)) {
      auto it = observers.find(v);
      if (it == observers.end()) continue;
      v->act_quant = staticActivationQuant(it->second->compute(grid).params, bits, a.symmetric);
      marked.push_back(v);
    }
    runtime::SessionOptions so;
    so.threads = ctx.threads;
    so.simulate_quantization = true;
    double e = 0;
    try {
      runtime::Session trial(model, so);
      e = meter.measure(trial);
    } catch (...) {
      for (ir::Value* v : marked) v->act_quant.reset();
      throw;
    }
    for (ir::Value* v : marked) v->act_quant.reset();
    return e;
  }

  // How each budget row reads in its option's terms: option name, the value given, row = value * scale.
  struct BudgetUnit {
    std::string option;
    double given = 0;
    double scale = 1;
  };
  Options o_;
  mutable std::vector<BudgetUnit> units_;
};

}  // namespace

pipeline::PassInfo bitAllocationPassInfo() {
  using pipeline::OptionSpec;
  pipeline::PassInfo info;
  info.name = "bit-allocation";
  info.summary =
      "Mixed precision by integer programming (HAWQ-v3): per layer and candidate bit width a sensitivity (Tr(H)/n * "
      "||Q_b(W) - W||^2 with the float model's layer-input Hessian, or the measured output error with only that layer "
      "quantized), one binary program solved exactly with GLPK under a budget (average bits, .ptq bytes, BOPs; share "
      "of activations not at the config's width), the choice written into the plan for gptq / rtn / qdq.";
  auto weightList = [](const json& v) { return parseBitList(v, false, nullptr); };
  auto actList = [](const json& v) {
    if (v.is_array() && v.empty()) return std::string();
    return parseBitList(v, true, nullptr);
  };
  info.options = {
      OptionSpec::jsonValue("candidates", "list", "[2, 3, 4, 8]", weightList,
                            "weight bit widths a layer may take (2..8; \"float\" keeps it float)"),
      OptionSpec::jsonValue("op_candidates", "object", "{}", checkOpCandidates,
                            "per op type candidate lists replacing `candidates`, e.g. {\"Conv\": [8, \"float\"]}"),
      OptionSpec::jsonValue("budget", "object", "{\"avg_bits\": 4}",
                            [](const json& v) { return checkBudget(v, kWeightBudgetKeys); },
                            "weight budget(s), each a <= row: avg_bits (code bits per weight, float = 32), bytes "
                            "(as a .ptq file stores them: codes and zero points at their width, float32 scales), "
                            "uniform_bits (the bytes of every allocated layer at that width), bops (MACs per sample x "
                            "weight bits x activation bits)"),
      OptionSpec::jsonValue("activation_candidates", "list", "[]", actList,
                            "activation grids a layer may take (4, 8, 16, \"float\"), with measured sensitivity; [] = "
                            "activations not allocated"),
      OptionSpec::jsonValue("activation_budget", "object", "{\"share\": 0.1}",
                            [](const json& v) { return checkBudget(v, kActivationBudgetKeys); },
                            "with activation_candidates: share (largest fraction of layers whose activations are not at "
                            "activations.bits) and/or bops"),
      OptionSpec::flag("pin_first_last", false, "the first and the last allocated layer take their widest candidate"),
      OptionSpec::flag("tie_shared_inputs", true, "layers reading one tensor (q/k/v, gate/up) take the same choice"),
      OptionSpec::choice("sensitivity", "hessian", {"hessian", "measured"},
                         "hessian: Tr(H)/n * ||Q_b(W) - W||^2 (HAWQ-v3); measured: the model's output error with only "
                         "that layer at b bits, one model run on measure_samples samples per layer and candidate"),
      OptionSpec::choice("metric", "kl", {"kl", "mse"},
                         "measured error: KL of the outputs' last axis (softmax of logits, or probabilities as given) or "
                         "MSE relative to the float outputs' mean square"),
      OptionSpec::integer("measure_samples", 16, 1, 1 << 20, "calibration samples each measured trial runs"),
      OptionSpec::integer("clip_steps", 20, 1, 1000, "as rtn's: the MSE clip search of the candidates' codes"),
      OptionSpec::real("clip_min_ratio", 0.5, 0.0, 1.0, true, false, "as rtn's"),
  };
  info.traits.needs_calibration = true;
  info.traits.needs_float_weights = true;
  info.create = [](const pipeline::OptionValues& v) -> std::unique_ptr<pipeline::Pass> {
    Options o;
    parseBitList(v.jsonValue("candidates"), false, &o.candidates);
    const json oc = v.jsonValue("op_candidates");
    for (auto it = oc.begin(); it != oc.end(); ++it) parseBitList(it.value(), false, &o.op_candidates[it.key()]);
    o.budget = v.jsonValue("budget");
    const json ac = v.jsonValue("activation_candidates");
    if (!ac.empty()) parseBitList(ac, true, &o.activation_candidates);
    o.activation_budget = v.jsonValue("activation_budget");
    o.pin_first_last = v.flag("pin_first_last");
    o.tie_shared_inputs = v.flag("tie_shared_inputs");
    o.measured = v.text("sensitivity") == "measured";
    o.metric = v.text("metric") == "mse" ? OutputMetric::kMse : OutputMetric::kKl;
    o.measure_samples = v.integer("measure_samples");
    o.clip_steps = static_cast<int>(v.integer("clip_steps"));
    o.clip_min_ratio = static_cast<float>(v.real("clip_min_ratio"));
    if (v.given("activation_budget") && o.activation_candidates.empty())
      throwUsage("passes.bit-allocation.activation_budget: given without activation_candidates");
    return std::make_unique<BitAllocationPass>(std::move(o));
  };
  return info;
}

}  // namespace ptq::passes
