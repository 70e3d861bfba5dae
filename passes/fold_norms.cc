#include "passes/fold_norms.h"

#include <spdlog/spdlog.h>

#include "lib/ir/patterns.h"
#include "passes/linear_rewrite.h"

namespace ptq::passes {

namespace {

const char* kPass = "fold-norms";

std::vector<double> channelValues(const ir::Value* v) {
  std::vector<double> out;
  if (!v) return out;
  const float* p = v->initializer.data<float>();
  out.assign(p, p + v->initializer.numel());
  return out;
}

bool allEqual(const std::vector<double>& v, double x) {
  for (double e : v)
    if (e != x) return false;
  return true;
}

class FoldNormsPass final : public pipeline::Pass {
 public:
  std::string name() const override { return kPass; }

  pipeline::PassResult run(ir::Model& model, pipeline::PassContext& ctx) override {
    ir::Graph& g = *model.graph;
    int64_t folded = 0, identity = 0, left = 0, linears = 0, biases_created = 0, untied = 0;
    for (const ir::NormMatch& m : ir::matchNorms(g)) {
      const std::vector<double> gamma = channelValues(m.gamma());
      const std::vector<double> beta = channelValues(m.beta());
      if ((gamma.empty() || allEqual(gamma, 1.0)) && (beta.empty() || allEqual(beta, 0.0))) {
        ++identity;
        continue;
      }
      // Check the whole rewrite before changing anything.
      ir::LinearReaders r = ir::linearReaders(m.output);
      std::string why = r.why;
      if (why.empty() && r.linears.empty()) why = "no linear layer reads it";
      for (const ir::LinearMatch& l : r.linears)
        if (why.empty() && l.in_features != m.channels)
          why = l.node->describe() + " has " + std::to_string(l.in_features) + " input features, the norm " +
                std::to_string(m.channels) + " channels";
      if (!why.empty()) {
        ++left;
        ctx.warnings.push_back(std::string(kPass) + ": norm '" + m.name() + "' (" + m.form + ") left unchanged: " + why);
        continue;
      }
      for (ir::LinearMatch& l : r.linears) {
        if (l.weight_view) ++untied;
        materializeWeight(l, ctx.plan, ctx.config, kPass);  // a tied head gets its own Eᵀ
        if (!beta.empty()) {  // delta = alpha · β · W, from the weight before it is scaled
          std::vector<double> delta(static_cast<size_t>(l.out_features), 0.0);
          const float* w = l.weight->initializer.data<float>();
          for (int64_t i = 0; i < l.in_features; ++i)
            for (int64_t o = 0; o < l.out_features; ++o)
              delta[static_cast<size_t>(o)] += beta[static_cast<size_t>(i)] * static_cast<double>(w[l.index(i, o)]);
          for (double& d : delta) d *= l.alpha;
          if (!l.bias) ++biases_created;
          addToBias(l, delta, ctx.plan, kPass);
        }
        if (!gamma.empty()) scaleInputRows(l, gamma, ctx.plan, kPass);
        noteLayer(ctx.plan, l, kPass, "folded the affine part of norm '" + m.name() + "' into the weight" +
                                          std::string(beta.empty() ? "" : " and bias"));
        ++linears;
      }
      if (!gamma.empty()) fillChannelVector(m.gamma_node, m.gamma_input, 1.0f, ctx.plan, kPass);
      if (!beta.empty()) fillChannelVector(m.beta_node, m.beta_input, 0.0f, ctx.plan, kPass);
      spdlog::debug("fold-norms: {} ({}) into {} linear layer(s)", m.name(), m.form, r.linears.size());
      ++folded;
    }
    spdlog::info("fold-norms: folded {} norm(s) into {} linear layer(s); {} left unchanged", folded, linears, left);
    pipeline::PassResult result;
    result.changed = folded > 0;
    result.counters["norms_folded"] = folded;
    result.counters["norms_already_identity"] = identity;
    result.counters["norms_left_unchanged"] = left;
    result.counters["linears_rewritten"] = linears;
    result.counters["biases_created"] = biases_created;
    result.counters["tied_weights_untied"] = untied;
    return result;
  }
};

}  // namespace

pipeline::PassInfo foldNormsPassInfo() {
  pipeline::PassInfo info;
  info.name = kPass;
  info.summary =
      "Folds every norm's γ and β (LayerNormalization, SimplifiedLayerNormalization and their decomposed forms) into "
      "the linear layers reading it (γ into the weight rows, β into the biases, creating one when needed) and sets "
      "γ = 1, β = 0; function-preserving. Norms read by anything but linear layers are left unchanged (reported).";
  info.traits.needs_float_weights = true;
  info.create = [](const pipeline::OptionValues&) -> std::unique_ptr<pipeline::Pass> {
    return std::make_unique<FoldNormsPass>();
  };
  return info;
}

}  // namespace ptq::passes
