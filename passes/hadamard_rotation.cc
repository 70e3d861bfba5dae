#include "passes/hadamard_rotation.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "lib/ir/residual_stream.h"
#include "lib/util/error.h"
#include "passes/linear_rewrite.h"
#include "passes/rotation_graph.h"
#include "passes/rotation_math.h"

namespace ptq::passes {

namespace {

const char* kPass = "hadamard-rotation";

struct RotationOptions {
  std::string online = "mlp";  // mlp | all | none
  bool randomize = true;
  bool online_signs = true;
};

// Whether a writer reads the attention's context (MatMul(probs, v), reshaped / transposed): the
// attention output projection, as opposed to the MLP's down-projection.
bool readsAttention(const ir::LinearMatch& l) {
  const ir::Value* v = l.input;
  for (int hops = 0; hops < 8 && v && v->producer(); ++hops) {
    const ir::Node* p = v->producer();
    if (p->opType() == "Reshape" || p->opType() == "Transpose") {
      v = p->input(0);
      continue;
    }
    return p->opType() == "MatMul" && p->input(0) && p->input(1) && !p->input(0)->isConstant() &&
           !p->input(1)->isConstant();
  }
  return false;
}

std::string layerName(const ir::LinearMatch& l) { return l.node->name.empty() ? l.output->name() : l.node->name; }

class HadamardRotationPass final : public pipeline::Pass {
 public:
  explicit HadamardRotationPass(RotationOptions o) : o_(std::move(o)) {}
  std::string name() const override { return kPass; }

  pipeline::PassResult run(ir::Model& model, pipeline::PassContext& ctx) override {
    ir::Graph& g = *model.graph;
    const std::string where = model.source_path.empty() ? "the model" : "'" + model.source_path + "'";
    ir::ResidualStream s = ir::matchResidualStream(g);
    if (!s.ok()) throwInput(std::string(kPass) + ": cannot rotate the residual stream of " + where + ": " + s.why);
    const bool layer_norm = s.kind == ir::NormKind::kLayerNorm;
    for (const ir::NormMatch& m : s.norms) {
      std::string why;
      if (layer_norm && !canRewriteAsRms(m, &why)) throwInput(std::string(kPass) + ": " + where + ": " + why);
    }

    // Everything checked: rewrite.
    const int64_t n = s.channels;
    const quant::HadamardTransform h = quant::hadamardTransform(n);
    if (!h.exact())
      ctx.warnings.push_back(fmt::format("{}: stream width {} has no Hadamard construction; using block-diagonal {}", kPass, n,
                                         h.describe()));
    const std::vector<double> signs = quant::randomSigns(n, ctx.seed ^ 0x51A7C0DEull);
    AxisTransform q{&h, o_.randomize ? &signs : nullptr, false};
    AxisTransform contribution = q;
    contribution.center = layer_norm;  // LayerNorm → RMSNorm: a zero-mean stream
    const int threads = ctx.threads;
    int64_t untied = 0;

    for (ir::LinearMatch& l : s.readers) {
      if (l.weight_view) ++untied;
      materializeWeight(l, ctx.plan, ctx.config, kPass);
      rotateLinearInput(l, q, ctx.plan, kPass, threads);
      noteLayer(ctx.plan, l, kPass, "input side rotated by Qᵀ (" + h.describe() + (o_.randomize ? ", random signs" : "") + ")");
    }
    int64_t embeddings = 0, writers = 0, constants = 0, convs = 0;
    std::vector<ir::LinearMatch*> online;
    for (ir::StreamContribution& c : s.contributions) {
      switch (c.kind) {
        case ir::StreamContribution::Kind::kEmbedding: {
          ir::Value* t = ownConstant(c.node, 0, ctx.plan, kPass);
          const auto& shape = t->initializer.shape();
          transformAxis(t->initializer.mutableData<float>(), shape[0], n, 1, contribution, threads);
          ++embeddings;
          break;
        }
        case ir::StreamContribution::Kind::kWriter: {
          rotateLinearOutput(c.writer, contribution, ctx.plan, kPass, threads);
          noteLayer(ctx.plan, c.writer, kPass,
                    std::string("output side rotated by Q") + (layer_norm ? " (zero-mean first)" : ""));
          const bool attention = readsAttention(c.writer);
          if (o_.online == "all" || (o_.online == "mlp" && !attention)) online.push_back(&c.writer);
          ++writers;
          break;
        }
        case ir::StreamContribution::Kind::kConstant: {
          ir::Value* t = ownConstant(c.node, c.slot, ctx.plan, kPass);
          transformAxis(t->initializer.mutableData<float>(), t->initializer.numel() / n, n, 1, contribution, threads);
          ++constants;
          break;
        }
        case ir::StreamContribution::Kind::kPatchConv: {
          ir::Value* w = ownConstant(c.node, 1, ctx.plan, kPass);
          transformAxis(w->initializer.mutableData<float>(), 1, n, w->initializer.numel() / n, contribution, threads);
          if (c.node->numInputs() > 2 && c.node->input(2)) {
            ir::Value* b = ownConstant(c.node, 2, ctx.plan, kPass);
            transformAxis(b->initializer.mutableData<float>(), 1, n, 1, contribution, threads);
          }
          if (pipeline::LayerPlan* lp = ctx.plan.findByWeight(w)) ctx.plan.note(*lp, kPass, "output channels rotated by Q");
          ++convs;
          break;
        }
      }
    }
    int64_t converted = 0;
    if (layer_norm) {
      for (const ir::NormMatch& m : s.norms) {
        rewriteAsRms(g, m, model.opsetVersion());
        ++converted;
      }
    }

    int64_t online_done = 0, online_nodes = 0, online_constant_bytes = 0;
    for (ir::LinearMatch* l : online) {
      const quant::HadamardTransform t = quant::hadamardTransform(l->in_features);
      if (t.sizes.empty()) {
        ctx.warnings.push_back(fmt::format("{}: no online Hadamard before {}: width {} has no Hadamard block", kPass,
                                           l->node->describe(), l->in_features));
        continue;
      }
      if (!t.exact())
        ctx.warnings.push_back(fmt::format("{}: online Hadamard before {} is block-diagonal {}", kPass, l->node->describe(),
                                           t.describe()));
      // Random signs online too: without them, whatever the weight's rows share (their mean, smooth
      // patterns) would collect in a few rows of Hᵀ·W and hurt its quantization.
      const std::vector<double> d = quant::randomSigns(l->in_features, ctx.seed ^ (0x0D11E5ull + online_done));
      const std::vector<double>* dp = o_.online_signs ? &d : nullptr;
      ir::Value* x = insertOnlineHadamard(g, l->node, l->input, t, dp, layerName(*l), &online_nodes);
      l->node->setInput(0, x);
      l->input = x;
      rotateLinearInput(*l, AxisTransform{&t, dp, false}, ctx.plan, kPass, threads);
      noteLayer(ctx.plan, *l, kPass, "online Hadamard " + t.describe() + " on its input, Hᵀ folded into the weight");
      for (int64_t f : t.sizes) online_constant_bytes += f * f * 4;
      if (dp) online_constant_bytes += l->in_features * 4;
      ++online_done;
    }
    if (converted) g.removeDeadCode();

    spdlog::info("{}: rotated a stream of width {} by {}: {} readers, {} writers, {} embeddings, {} constants, {} convs; "
                 "{} norms rewritten as RMSNorm, {} online Hadamards",
                 kPass, n, h.describe(), s.readers.size(), writers, embeddings, constants, convs, converted, online_done);
    pipeline::PassResult result;
    result.changed = true;
    result.counters["stream_width"] = n;
    result.counters["readers_rotated"] = static_cast<int64_t>(s.readers.size());
    result.counters["writers_rotated"] = writers;
    result.counters["embeddings_rotated"] = embeddings;
    result.counters["constants_rotated"] = constants;
    result.counters["patch_convs_rotated"] = convs;
    result.counters["norms_rewritten_as_rms"] = converted;
    result.counters["online_hadamards"] = online_done;
    result.counters["online_hadamard_nodes"] = online_nodes;
    result.counters["online_hadamard_constant_bytes"] = online_constant_bytes;
    result.counters["tied_weights_untied"] = untied;
    result.counters["stream_block_diagonal"] = h.exact() ? 0 : 1;
    return result;
  }

 private:
  RotationOptions o_;
};

}  // namespace

pipeline::PassInfo hadamardRotationPassInfo() {
  using pipeline::OptionSpec;
  pipeline::PassInfo info;
  info.name = kPass;
  info.summary =
      "QuaRot: rotates the residual stream by a seeded randomized Hadamard Q fused into the weights (embeddings and "
      "writers ·Q, readers Qᵀ·, LayerNorm models made RMSNorm by zero-mean contributions), plus an online Hadamard "
      "(small constant MatMuls) before each MLP down-projection with Hᵀ folded into it; function-preserving. Needs "
      "fold-norms before it.";
  info.options = {
      OptionSpec::choice("online", "mlp", {"mlp", "all", "none"},
                         "online Hadamard before the MLP down-projections, also before the attention output projections, "
                         "or nowhere"),
      OptionSpec::flag("randomize", true, "random ±1 signs (from the config's seed) in Q = D·H/√n; false: plain H/√n"),
      OptionSpec::flag("online_signs", true,
                       "the online Hadamard multiplies by random ±1 signs first (one Mul by a constant vector), so the "
                       "folded Hᵀ·D·W keeps no structured outlier rows"),
  };
  info.traits.needs_float_weights = true;
  info.create = [](const pipeline::OptionValues& v) -> std::unique_ptr<pipeline::Pass> {
    RotationOptions o;
    o.online = v.text("online");
    o.randomize = v.flag("randomize");
    o.online_signs = v.flag("online_signs");
    return std::make_unique<HadamardRotationPass>(o);
  };
  return info;
}

}  // namespace ptq::passes
