#include "passes/gptq.h"

#include <chrono>
#include <map>
#include <set>

#include <spdlog/spdlog.h>

#include "lib/calib/calibration.h"
#include "lib/runtime/block_runner.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"
#include "passes/gptq_layer.h"
#include "passes/hessian.h"
#include "passes/weight_quantizer.h"

namespace ptq::passes {

namespace {

// At most this much of a block's last observed input is kept for the block's final run (a GPT-2-small
// MLP input over 128 x 128 calibration tokens: 200 MB).
constexpr size_t kKeepBytes = size_t{512} << 20;

struct GptqPassOptions {
  GptqLayerOptions layer;
  bool sequential = true;
  bool keep_hessians = false;
};

// Layers sharing one input Hessian (q/k/v reading one norm output), in execution order of the first.
struct InputGroup {
  std::string key;
  std::string input;  // value name
  InputUnfold unfold;
  std::vector<pipeline::LayerPlan*> layers;
};

class GptqPass final : public pipeline::Pass {
 public:
  explicit GptqPass(GptqPassOptions o) : opts_(o) {}
  std::string name() const override { return "gptq"; }

  pipeline::PassResult run(ir::Model& model, pipeline::PassContext& ctx) override {
    if (!ctx.calibration) throwInternal("pass 'gptq' runs without calibration data (PassManager::checkPipeline lets it)");
    ir::Graph& g = *model.graph;
    runtime::SessionOptions so;
    so.threads = ctx.threads;
    so.simulate_quantization = true;  // the model as it will be written: quantized layers run dequantized
    runtime::Session session(model, so);
    const int threads = session.threads();  // 0 resolved to the core count
    opts_.layer.threads = threads;

    // Which layers GPTQ takes; the others are rounded to nearest.
    std::map<std::string, InputGroup> by_key;
    std::map<const ir::Node*, std::string> key_of_node;
    std::vector<pipeline::LayerPlan*> gptq_layers;
    pipeline::PassResult result;
    int64_t rtn_fallback = 0, already = 0;
    for (pipeline::LayerPlan* l : ctx.plan.active()) {
      if (l->weight->quant) {
        ++already;
        continue;
      }
      std::string why;
      std::optional<InputUnfold> u;
      if (l->graph != &g) why = "inside a subgraph (" + l->scope + ")";
      else if (!(u = inputUnfold(*l->node, *l, &why))) {
      } else if (l->node->input(0)->isConstant()) why = "its input is a constant";
      else if (session.valueType(l->node->input(0)->name()) != ir::DType::kFloat32) why = "its input is not float32";
      if (!why.empty()) {
        roundToNearest(*l, ctx, why);
        ++rtn_fallback;
        continue;
      }
      const std::string input = l->node->input(0)->name();
      const std::string key = u->key(input);
      InputGroup& grp = by_key[key];
      if (grp.layers.empty()) {
        grp.key = key;
        grp.input = input;
        grp.unfold = *u;
      }
      grp.layers.push_back(l);
      if (l->readers.size() > 1)
        ctx.plan.note(*l, "gptq", "weight read by " + std::to_string(l->readers.size()) +
                                      " layers: the Hessian is the first reader's input");
      key_of_node[l->node] = key;
      gptq_layers.push_back(l);
    }
    result.counters["weights_already_quantized"] = already;
    result.counters["rtn_fallback"] = rtn_fallback;
    result.counters["weights_quantized"] = static_cast<int64_t>(gptq_layers.size());
    if (gptq_layers.empty()) {
      result.changed = rtn_fallback > 0;
      return result;
    }

    std::vector<std::map<std::string, ir::Tensor>> batches;
    for (int64_t b = 0; b < ctx.calibration->numBatches(); ++b) batches.push_back(ctx.calibration->batch(b));
    std::vector<const ir::Node*> anchors;
    for (pipeline::LayerPlan* l : gptq_layers) anchors.push_back(l->node);
    runtime::BlockRunner br(session, batches, anchors);
    const int64_t total = static_cast<int64_t>(gptq_layers.size());
    spdlog::info("gptq: {} layers ({} inputs) in {} blocks, {} calibration samples in {} batches{}", total, by_key.size(),
                 br.numBlocks(), ctx.calibration->samples(), batches.size(), opts_.sequential ? "" : ", not sequential");
    bool any_quantized = false;
    for (const pipeline::LayerPlan& l : ctx.plan.layers())
      if (l.weight->quant) any_quantized = true;
    if (!opts_.sequential) collectAll(session, batches, by_key);

    int64_t done = 0, forward_nodes = 0, reused = 0, runs_with_kept = 0;
    for (size_t b = 0; b < br.numBlocks(); ++b) {
      forward_nodes += static_cast<int64_t>(br.blockNodes(b).size());
      std::vector<InputGroup*> order;
      std::set<std::string> seen;
      for (const ir::Node* n : br.blockNodes(b)) {
        auto it = key_of_node.find(n);
        if (it != key_of_node.end() && seen.insert(it->second).second) order.push_back(&by_key.at(it->second));
      }
      const bool run_after = opts_.sequential && b + 1 < br.numBlocks();
      // The last input of the block is observed after every earlier layer of the block is quantized, and
      // its own layers do not change it: kept (up to kKeepBytes), it is fed to the block's final run,
      // which then does not recompute what leads to it (on a transformer MLP: the up projection).
      std::vector<std::map<std::string, ir::Tensor>> kept;
      size_t kept_bytes = 0;
      for (InputGroup* grp : order) {
        std::shared_ptr<const pipeline::LayerHessian> h = reusable(*grp, any_quantized);
        if (h) {
          ++reused;
        } else {
          HessianAccumulator acc(grp->unfold, threads);
          const bool keep = run_after && grp == order.back();
          br.observeBlock(b, {{grp->input, [&, grp, keep](const std::string&, const ir::Tensor& t) {
                                 try {
                                   acc.add(t);
                                 } catch (const Error& e) {
                                   throw e.withContext("gptq: input '" + grp->input + "'");
                                 }
                                 if (keep && kept_bytes + t.nbytes() <= kKeepBytes) {
                                   kept.push_back({{grp->input, t}});
                                   kept_bytes += t.nbytes();
                                 }
                               }}});
          if (acc.rows() == 0)
            throwInternal("gptq: input '" + grp->input + "' of " + grp->layers.front()->label() +
                          " was not computed from block " + std::to_string(b) + "'s inputs");
          h = acc.finish("sequential");
        }
        for (pipeline::LayerPlan* l : grp->layers) {
          quantizeLayer(*l, *h, ctx, ++done, total);
          session.reloadConstant(l->weight->name());
          if (opts_.keep_hessians) l->hessian = h;
        }
        any_quantized = true;
      }
      // Block b's output feeds block b+1's Hessians. Not after the last block (nothing reads it, and on an
      // LM it is the vocabulary projection: 2 * d * V flops per token), nor when not sequential (every
      // Hessian is known).
      if (run_after) {
        if (kept.size() == batches.size()) {
          br.runBlock(b, kept);
          ++runs_with_kept;
        } else {
          br.runBlock(b);
        }
      }
    }
    result.changed = true;
    result.counters["hessians_reused"] = reused;
    result.counters["block_runs_with_kept_inputs"] = runs_with_kept;
    result.counters["blocks"] = static_cast<int64_t>(br.numBlocks());
    result.counters["calibration_samples"] = ctx.calibration->samples();
    // Forward work: node executions against one plain pass of the model over the calibration batches.
    result.counters["node_executions"] = session.nodeExecutions();
    result.counters["forward_pass_node_executions"] = forward_nodes * static_cast<int64_t>(batches.size());
    return result;
  }

 private:
  // A Hessian already on the plan that is exact for this input: from the float model, and either the
  // pass is not sequential or nothing quantized feeds the input yet.
  std::shared_ptr<const pipeline::LayerHessian> reusable(const InputGroup& grp, bool any_quantized) const {
    const auto& h = grp.layers.front()->hessian;
    if (!h || h->dim != grp.unfold.dim || h->groups != grp.unfold.groups) return nullptr;
    if (h->source == "sequential" || !opts_.sequential || !any_quantized) return h;
    return nullptr;
  }

  // sequential: false — every missing Hessian from one run of the model as it is now.
  void collectAll(runtime::Session& session, const std::vector<std::map<std::string, ir::Tensor>>& batches,
                  std::map<std::string, InputGroup>& by_key) {
    std::map<std::string, std::unique_ptr<HessianAccumulator>> accs;
    std::map<std::string, std::vector<HessianAccumulator*>> by_input;
    for (auto& [key, grp] : by_key) {
      if (reusable(grp, true)) continue;
      accs[key] = std::make_unique<HessianAccumulator>(grp.unfold, session.threads());
      by_input[grp.input].push_back(accs[key].get());
    }
    std::map<std::string, runtime::Session::TapFn> taps;
    for (auto& [input, list] : by_input)
      taps[input] = [list = list](const std::string&, const ir::Tensor& t) {
        for (HessianAccumulator* a : list) a->add(t);
      };
    for (const auto& feeds : batches) session.run(feeds, {}, taps);
    for (auto& [key, acc] : accs) {
      std::shared_ptr<const pipeline::LayerHessian> h = acc->finish("float");
      for (pipeline::LayerPlan* l : by_key.at(key).layers) l->hessian = h;
    }
  }

  void quantizeLayer(pipeline::LayerPlan& l, const pipeline::LayerHessian& h, pipeline::PassContext& ctx, int64_t i,
                     int64_t n) {
    const auto t0 = std::chrono::steady_clock::now();
    GptqLayerResult r;
    try {
      r = gptqLayer(l.weight->initializer, l.reduce_axis, l.channel_axis, l.weights, h, opts_.layer);
    } catch (const Error& e) {
      throw e.withContext(l.label());
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    l.weight->quant = r.quant;
    l.weight->initializer.releaseMemory();  // see rtn.cc
    l.metrics["gptq_loss"] = r.loss;
    l.metrics["rtn_loss"] = r.rtn_loss;
    l.metrics["damp"] = r.damp;
    l.metrics["seconds"] = sec;
    l.metrics["hessian_rows"] = static_cast<double>(h.rows);
    if (r.dead_columns) l.metrics["dead_inputs"] = static_cast<double>(r.dead_columns);
    if (r.damp_retries) {
      const std::string msg = "gptq: " + l.label() + ": Cholesky failed " + std::to_string(r.damp_retries) +
                              " time(s); damping raised to " + std::to_string(r.damp) + " x mean(diag H)";
      ctx.warnings.push_back(msg);
      spdlog::warn("{}", msg);
    }
    const ir::Shape& s = l.weight->initializer.shape();
    spdlog::info("gptq: layer {}/{} {} {} {:.2f} s: output error {:.4g} -> {:.4g} ({:+.1f}% vs round-to-nearest)", i, n,
                 l.node->name.empty() ? l.weight->name() : l.node->name, ir::shapeToString(s), sec, r.rtn_loss, r.loss,
                 r.rtn_loss > 0 ? 100.0 * (r.loss / r.rtn_loss - 1.0) : 0.0);
  }

  void roundToNearest(pipeline::LayerPlan& l, pipeline::PassContext& ctx, const std::string& why) {
    try {
      l.weight->quant = quantizeWeight(l.weight->initializer, l.reduce_axis, l.channel_axis, l.weights,
                                       opts_.layer.clip_steps, opts_.layer.clip_min_ratio);
    } catch (const Error& e) {
      throw e.withContext(l.label());
    }
    l.weight->quant->method = "rtn";
    l.weight->initializer.releaseMemory();
    ctx.plan.note(l, "gptq", "rounded to nearest: " + why);
  }

  GptqPassOptions opts_;
};

}  // namespace

pipeline::PassInfo gptqPassInfo() {
  using pipeline::OptionSpec;
  pipeline::PassInfo info;
  info.name = "gptq";
  info.summary =
      "GPTQ: quantizes each layer's weight to minimize ||WX - W^X||^2 on its calibration inputs (Hessian 2XX^T/N, "
      "damping, act-order, lazy blocks, groups), layer by layer on the already-quantized model (block by block, O(L) "
      "forward work), with the plan's per-layer settings. Layers without an input activation (Gather) or inside "
      "subgraphs are rounded to nearest.";
  info.options = {
      OptionSpec::real("damp", 0.01, 0.0, 1.0, true, false,
                       "damping added to diag(H), as a fraction of its mean; multiplied by 10 while Cholesky fails"),
      OptionSpec::integer("block_size", 128, 1, 4096, "columns per lazy block (one GEMM per block)"),
      OptionSpec::flag("act_order", false,
                       "process columns by decreasing diag(H); with groups, group parameters are static (fitted "
                       "before the updates) so groups stay contiguous for DequantizeLinear/MatMulNBits"),
      OptionSpec::flag("static_groups", false, "fit group parameters on the original weights, before any update"),
      OptionSpec::flag("sequential", true,
                       "each layer's inputs come from the model with every layer before it quantized; false: all "
                       "Hessians from the float model"),
      OptionSpec::flag("keep_hessians", false, "leave each layer's Hessian on the plan for later passes (memory)"),
      OptionSpec::flag("measure", true,
                       "compute each layer's output error with GPTQ and with round-to-nearest codes (report, progress)"),
      OptionSpec::integer("clip_steps", 20, 1, 1000, "ratios the MSE clip search tries (weights.clip_search = mse)"),
      OptionSpec::real("clip_min_ratio", 0.5, 0.0, 1.0, true, false,
                       "smallest fraction of a group's range the MSE clip search tries"),
  };
  info.traits.needs_calibration = true;
  info.traits.quantizes_weights = true;
  info.create = [](const pipeline::OptionValues& v) -> std::unique_ptr<pipeline::Pass> {
    GptqPassOptions o;
    o.layer.damp = v.real("damp");
    o.layer.block_size = v.integer("block_size");
    o.layer.act_order = v.flag("act_order");
    o.layer.static_groups = v.flag("static_groups");
    o.layer.measure = v.flag("measure");
    o.layer.clip_steps = static_cast<int>(v.integer("clip_steps"));
    o.layer.clip_min_ratio = static_cast<float>(v.real("clip_min_ratio"));
    o.sequential = v.flag("sequential");
    o.keep_hessians = v.flag("keep_hessians");
    return std::make_unique<GptqPass>(o);
  };
  return info;
}

}  // namespace ptq::passes
