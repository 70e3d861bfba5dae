#include "passes/scale_reparam.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "lib/calib/calibration.h"
#include "lib/ir/patterns.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"
#include "passes/linear_rewrite.h"
#include "passes/softmax_quant.h"

namespace ptq::passes {

namespace {

const char* kPass = "scale-reparam";

struct ReparamOptions {
  bool norms = true;
  int softmax_bits = 0;  // 0: no post-Softmax quantizer
  SoftmaxGrid softmax_grid = SoftmaxGrid::kLogSqrt2;
  int64_t softmax_samples = 1 << 20;
};

struct NormSite {
  ir::NormMatch norm;
  std::vector<ir::LinearMatch> readers;
  std::vector<float> min, max;
  std::string bad;
};

struct SoftmaxSite {
  ir::AttentionMatch attention;
  std::vector<float> sample;
  int64_t seen = 0, stride = 0;
};

class ScaleReparamPass final : public pipeline::Pass {
 public:
  explicit ScaleReparamPass(ReparamOptions o) : o_(o) {}
  std::string name() const override { return kPass; }

  pipeline::PassResult run(ir::Model& model, pipeline::PassContext& ctx) override {
    if (!ctx.calibration) throwInternal("pass 'scale-reparam' runs without calibration data (PassManager::checkPipeline lets it)");
    ir::Graph& g = *model.graph;
    std::vector<NormSite> norms;
    int64_t left = 0;
    if (o_.norms)
      for (ir::NormMatch& m : ir::matchNorms(g)) {
        std::string why;
        if (m.kind != ir::NormKind::kLayerNorm) continue;  // RepQ-ViT's target: post-LayerNorm activations
        if (!m.gamma_node) why = "it has no scale γ";
        else if (!m.beta_node && m.form != "LayerNormalization") why = "it has no shift β to adjust";
        ir::LinearReaders r = ir::linearReaders(m.output);
        if (why.empty() && !r.ok()) why = r.why;
        if (why.empty() && r.linears.empty()) why = "no linear layer reads it";
        for (const ir::LinearMatch& l : r.linears)
          if (why.empty() && l.in_features != m.channels) why = l.node->describe() + " does not read its " + std::to_string(m.channels) + " channels";
        if (!why.empty()) {
          ++left;
          ctx.warnings.push_back(std::string(kPass) + ": norm '" + m.name() + "' left unchanged: " + why);
          continue;
        }
        norms.push_back({m, r.linears, {}, {}, ""});
      }
    std::vector<SoftmaxSite> softmaxes;
    if (o_.softmax_bits > 0)
      for (ir::Node* n : g.nodes())
        if (n->opType() == "Softmax" && n->domain().empty())
          if (std::optional<ir::AttentionMatch> a = ir::matchAttention(n)) softmaxes.push_back({*a, {}, 0, 0});

    calibrate(model, ctx, norms, softmaxes);

    const int bits = ctx.config.activations.present ? ctx.config.activations.bits : 8;
    const double qmax = std::ldexp(1.0, bits) - 1.0;
    int64_t reparameterized = 0, biases_created = 0;
    for (NormSite& site : norms) {
      if (!site.bad.empty()) {
        ++left;
        ctx.warnings.push_back(std::string(kPass) + ": norm '" + site.norm.name() + "' left unchanged: " + site.bad);
        continue;
      }
      const size_t c = site.min.size();
      std::vector<double> s(c), z(c);
      double s_mean = 0, z_mean = 0, spread_before = 0;
      for (size_t i = 0; i < c; ++i) {
        const double lo = std::min<double>(site.min[i], 0.0), hi = std::max<double>(site.max[i], 0.0);
        s[i] = std::max((hi - lo) / qmax, 1e-12);
        z[i] = std::nearbyint(-lo / s[i]);
        s_mean += s[i];
        z_mean += z[i];
        spread_before = std::max(spread_before, hi - lo);
      }
      s_mean /= static_cast<double>(c);
      z_mean /= static_cast<double>(c);
      std::vector<double> r(c), b(c), inv_r(c);
      for (size_t i = 0; i < c; ++i) {
        r[i] = std::clamp(s[i] / s_mean, 1.0 / 64, 64.0);
        inv_r[i] = 1.0 / r[i];
        b[i] = s_mean * (z_mean - z[i]);
      }
      // The norm: γ' = γ / r, β' = β / r − b (a fused LayerNormalization without B gets one).
      const ir::NormMatch& m = site.norm;
      scaleChannelVector(m.gamma_node, m.gamma_input, inv_r, ctx.plan, kPass);
      ir::Node* beta_node = m.beta_node;
      int beta_input = m.beta_input;
      if (!beta_node) {  // LayerNormalization(x, γ): add B = 0
        ir::Node* ln = m.gamma_node;
        ir::Value* zero = g.addInitializer(g.uniqueName(ln->name + "_bias"), ir::Tensor::fromFloats({static_cast<int64_t>(c)}, std::vector<float>(c, 0.0f)));
        while (ln->numInputs() < 3) ln->addInput(nullptr);
        ln->setInput(2, zero);
        beta_node = ln;
        beta_input = 2;
      } else {
        scaleChannelVector(beta_node, beta_input, inv_r, ctx.plan, kPass);
      }
      {
        ir::Value* bv = ownConstant(beta_node, beta_input, ctx.plan, kPass);
        float* p = bv->initializer.mutableData<float>();
        for (size_t i = 0; i < c; ++i) p[i] = static_cast<float>(static_cast<double>(p[i]) - b[i]);
      }
      // The readers: W' = diag(r)·W, bias' = bias + alpha · b·W'.
      for (ir::LinearMatch& l : site.readers) {
        materializeWeight(l, ctx.plan, ctx.config, kPass);
        scaleInputRows(l, r, ctx.plan, kPass);
        std::vector<double> delta(static_cast<size_t>(l.out_features), 0.0);
        const float* w = l.weight->initializer.data<float>();
        for (int64_t i = 0; i < l.in_features; ++i)
          for (int64_t o = 0; o < l.out_features; ++o)
            delta[static_cast<size_t>(o)] += b[static_cast<size_t>(i)] * static_cast<double>(w[l.index(i, o)]);
        for (double& d : delta) d *= l.alpha;
        if (!l.bias) ++biases_created;
        addToBias(l, delta, ctx.plan, kPass);
        double r_min = *std::min_element(r.begin(), r.end()), r_max = *std::max_element(r.begin(), r.end());
        noteLayer(ctx.plan, l, kPass,
                  fmt::format("input reparameterized from norm '{}': per-channel scales {:.3g}..{:.3g} x the mean {:.3g}",
                              m.name(), r_min, r_max, s_mean));
      }
      spdlog::debug("{}: {} widest channel range {:.4g}, per-tensor scale {:.4g}", kPass, m.name(), spread_before, s_mean);
      ++reparameterized;
    }

    int64_t quantized_softmax = 0, nodes = 0;
    for (SoftmaxSite& site : softmaxes) {
      double pct = 0, err = 0;
      if (site.sample.empty()) {
        ctx.warnings.push_back(std::string(kPass) + ": " + site.attention.softmax->describe() + " saw no calibration values: left float");
        continue;
      }
      const float delta = chooseSoftmaxClip(site.sample, o_.softmax_bits, o_.softmax_grid, &pct, &err);
      ir::Node* ctxmm = site.attention.context;
      const int slot = ctxmm->input(0) == site.attention.softmax->output(0) ? 0 : 1;
      const std::string base = (site.attention.softmax->name.empty() ? site.attention.softmax->output(0)->name()
                                                                       : site.attention.softmax->name) + "_quant";
      nodes += insertSoftmaxQuantizer(g, ctxmm, slot, delta, o_.softmax_bits, o_.softmax_grid, base);
      const char* grid = o_.softmax_grid == SoftmaxGrid::kUniform ? "uniform" : "log√2";
      spdlog::info("{}: {} probabilities on a {}-bit {} grid, clip {:.4g} (percentile {}, L2 error {:.4g})", kPass,
                   site.attention.softmax->describe(), o_.softmax_bits, grid, delta, pct, err);
      ++quantized_softmax;
    }
    spdlog::info("{}: reparameterized {} norm(s); {} left unchanged; {} Softmax output(s) on a log√2 grid", kPass,
                 reparameterized, left, quantized_softmax);
    pipeline::PassResult result;
    result.changed = reparameterized > 0 || quantized_softmax > 0;
    result.counters["norms_reparameterized"] = reparameterized;
    result.counters["norms_left_unchanged"] = left;
    result.counters["biases_created"] = biases_created;
    result.counters["softmax_quantized"] = quantized_softmax;
    result.counters["softmax_quantizer_nodes"] = nodes;
    return result;
  }

 private:
  void calibrate(ir::Model& model, pipeline::PassContext& ctx, std::vector<NormSite>& norms,
                 std::vector<SoftmaxSite>& softmaxes) const {
    if (norms.empty() && softmaxes.empty()) return;
    runtime::SessionOptions so;
    so.threads = ctx.threads;
    runtime::Session session(model, so);
    const int64_t batches = ctx.calibration->numBatches();
    for (NormSite& site : norms) {
      const int64_t c = site.norm.channels;
      site.min.assign(static_cast<size_t>(c), 0.0f);
      site.max.assign(static_cast<size_t>(c), 0.0f);
      NormSite* sp = &site;
      session.tap(site.norm.output->name(), [sp, c](const std::string&, const ir::Tensor& t) {
        if (t.dtype() != ir::DType::kFloat32 || t.rank() < 1 || t.shape().back() != c) {
          if (sp->bad.empty()) sp->bad = "its last axis is not its " + std::to_string(c) + " channels";
          return;
        }
        const float* p = t.data<float>();
        const int64_t rows = t.numel() / c;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < c; ++j) {
            const float v = p[r * c + j];
            if (!std::isfinite(v)) {
              if (sp->bad.empty()) sp->bad = "its calibration values are not finite";
              continue;
            }
            sp->min[static_cast<size_t>(j)] = std::min(sp->min[static_cast<size_t>(j)], v);
            sp->max[static_cast<size_t>(j)] = std::max(sp->max[static_cast<size_t>(j)], v);
          }
      });
    }
    const int64_t cap = o_.softmax_samples;
    for (SoftmaxSite& site : softmaxes) {
      SoftmaxSite* sp = &site;
      session.tap(site.attention.softmax->output(0)->name(), [sp, cap, batches](const std::string&, const ir::Tensor& t) {
        if (t.dtype() != ir::DType::kFloat32) return;
        // A fixed stride chosen from the first batch: deterministic, spread over all the data.
        if (sp->stride == 0) sp->stride = std::max<int64_t>(1, (t.numel() * batches + cap - 1) / cap);
        const float* p = t.data<float>();
        for (int64_t i = 0; i < t.numel(); ++i, ++sp->seen)
          if (sp->seen % sp->stride == 0 && static_cast<int64_t>(sp->sample.size()) < cap) sp->sample.push_back(p[i]);
      });
    }
    spdlog::info("{}: measuring {} norm output(s) and {} Softmax output(s) on {}", kPass, norms.size(), softmaxes.size(),
                 ctx.calibration->describe());
    for (int64_t b = 0; b < batches; ++b) session.run(ctx.calibration->batch(b));
  }

  ReparamOptions o_;
};

}  // namespace

pipeline::PassInfo scaleReparamPassInfo() {
  using pipeline::OptionSpec;
  pipeline::PassInfo info;
  info.name = kPass;
  info.summary =
      "RepQ-ViT: per-channel post-LayerNorm activation ranges (from calibration data) turned into one per-tensor scale "
      "by adjusting the norm's γ, β and the next linears' weights and biases (function-preserving); with softmax_bits, "
      "attention probabilities fake-quantized on a log√2 or uniform grid (float ops; clip from percentiles by L2 error).";
  info.options = {
      OptionSpec::flag("norms", true, "reparameterize the post-LayerNorm activations"),
      OptionSpec::integer("softmax_bits", 0, 0, 8, "bits of the post-Softmax quantizer (0 = none)"),
      OptionSpec::choice("softmax_grid", "log_sqrt2", {"log_sqrt2", "uniform"},
                         "the post-Softmax grid: RepQ-ViT's log√2 (pays at 4 bits) or uniform on [0, clip] (pays at 8)"),
      OptionSpec::integer("softmax_samples", 1 << 20, 1024, 1 << 26, "calibration probabilities kept per Softmax for the clip search"),
  };
  info.traits.needs_calibration = true;
  info.traits.needs_float_weights = true;
  info.create = [](const pipeline::OptionValues& v) -> std::unique_ptr<pipeline::Pass> {
    ReparamOptions o;
    o.norms = v.flag("norms");
    o.softmax_bits = static_cast<int>(v.integer("softmax_bits"));
    o.softmax_samples = v.integer("softmax_samples");
    o.softmax_grid = v.text("softmax_grid") == "uniform" ? SoftmaxGrid::kUniform : SoftmaxGrid::kLogSqrt2;
    if (o.softmax_bits == 1) throwUsage("passes.scale-reparam.softmax_bits: 1 is not a log√2 grid (use 0 or 2..8)");
    return std::make_unique<ScaleReparamPass>(o);
  };
  return info;
}

}  // namespace ptq::passes
