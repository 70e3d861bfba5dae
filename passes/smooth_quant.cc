#include "passes/smooth_quant.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include <omp.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "lib/calib/calibration.h"
#include "lib/ir/patterns.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"
#include "passes/linear_rewrite.h"
#include "passes/smooth_search.h"

namespace ptq::passes {

namespace {

const char* kPass = "smooth-quant";

struct SmoothOptions {
  double alpha = 0.5;
  bool auto_alpha = false;
  double alpha_min = 0.0, alpha_max = 1.0, alpha_step = 0.1;
  bool linears = false;  // targets = linears: every linear input, not only norm outputs
  int64_t max_rows = 1024;
  int64_t max_columns = 512;
  std::vector<std::pair<std::string, double>> layer_alpha;  // glob -> alpha, later entries win
};

// "GLOB=ALPHA[,GLOB=ALPHA...]" -> pairs; `why` says what is wrong ("" when nothing).
std::vector<std::pair<std::string, double>> parseLayerAlpha(const std::string& text, std::string* why) {
  std::vector<std::pair<std::string, double>> out;
  size_t start = 0;
  while (start <= text.size() && !text.empty()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const size_t eq = item.rfind('=');
    double alpha = -1;
    if (eq != std::string::npos && eq > 0) {
      try {
        size_t used = 0;
        alpha = std::stod(item.substr(eq + 1), &used);
        if (used != item.size() - eq - 1) alpha = -1;
      } catch (const std::exception&) {
        alpha = -1;
      }
    }
    if (!(alpha >= 0.0 && alpha <= 1.0)) {
      *why = "'" + item + "' is not GLOB=ALPHA with ALPHA in [0, 1] (e.g. \"*/n2/*=0.8,/head/*=0.5\")";
      return {};
    }
    out.emplace_back(item.substr(0, eq), alpha);
    start = comma + 1;
  }
  return out;
}

// One tensor to smooth and everything needed to do it.
struct Site {
  ir::Value* x = nullptr;
  std::vector<ir::LinearMatch> linears;
  const ir::NormMatch* norm = nullptr;            // fold 1/s into its γ (and β)
  std::optional<ir::LinearMatch> producer;        // or into this linear's output columns
  int64_t channels = 0;
  // Calibration: per-channel statistics over every row, and up to max_rows sampled rows.
  smooth::ChannelStats stats;
  std::vector<float> rows;
  int64_t nrows = 0, seen = 0, stride = 0;
  std::string bad;                                // why the site cannot be smoothed after all

  std::string where() const {
    if (norm) return "norm '" + norm->name() + "'";
    if (producer) return producer->node->describe();
    return "'" + x->name() + "'";
  }
};

bool anyQuantized(pipeline::QuantPlan& plan, const std::vector<ir::LinearMatch>& ls) {
  for (const ir::LinearMatch& l : ls)
    if (const pipeline::LayerPlan* p = plan.findByWeight(l.weight); p && !p->skip) return true;
  return false;
}

class SmoothQuantPass final : public pipeline::Pass {
 public:
  explicit SmoothQuantPass(SmoothOptions o) : opts_(o) {}
  std::string name() const override { return kPass; }

  pipeline::PassResult run(ir::Model& model, pipeline::PassContext& ctx) override {
    if (!ctx.calibration) throwInternal("pass 'smooth-quant' runs without calibration data (checkPipeline lets it)");
    ir::Graph& g = *model.graph;
    norms_ = ir::matchNorms(g);
    findSites(g, ctx);
    calibrate(model, ctx);
    pipeline::PassResult result;
    int64_t smoothed = 0, kept = 0, into_norm = 0, into_linear = 0, muls = 0;
    for (Site& site : sites_) {
      if (!site.bad.empty()) {
        ctx.warnings.push_back(std::string(kPass) + ": " + site.where() + " not smoothed: " + site.bad);
        continue;
      }
      const Decision d = decide(site, ctx);
      if (d.s.empty()) {
        ++kept;
        for (const ir::LinearMatch& l : site.linears) noteLayer(ctx.plan, l, kPass, d.note);
        continue;
      }
      const std::string how = apply(g, site, d.s, ctx.plan);
      if (site.norm) ++into_norm;
      else if (site.producer) ++into_linear;
      else ++muls;
      ++smoothed;
      for (const ir::LinearMatch& l : site.linears) noteLayer(ctx.plan, l, kPass, d.note + ", " + how);
      spdlog::debug("smooth-quant: {}: {}, {}", site.where(), d.note, how);
    }
    spdlog::info("smooth-quant: smoothed {} tensor(s) ({} into norms, {} into linears, {} Mul inserted); {} kept as is",
                 smoothed, into_norm, into_linear, muls, kept);
    result.changed = smoothed > 0;
    result.counters["tensors_smoothed"] = smoothed;
    result.counters["tensors_kept_unsmoothed"] = kept;
    result.counters["folded_into_norms"] = into_norm;
    result.counters["folded_into_linears"] = into_linear;
    result.counters["muls_inserted"] = muls;
    result.counters["calibration_batches"] = ctx.calibration->numBatches();
    return result;
  }

 private:
  struct Decision {
    std::vector<double> s;  // empty: leave the tensor as it is
    std::string note;
  };

  void findSites(ir::Graph& g, pipeline::PassContext& ctx) {
    std::set<const ir::Value*> taken;
    auto addSite = [&](ir::Value* x, const ir::NormMatch* norm, bool report) {
      if (!x || taken.count(x)) return;
      ir::LinearReaders r = ir::linearReaders(x);
      std::string why = r.why;
      if (why.empty() && r.linears.empty()) why = "no linear layer reads it";
      for (const ir::LinearMatch& l : r.linears)
        if (why.empty() && l.in_features != r.linears.front().in_features)
          why = "its readers disagree on the number of input features";
      if (why.empty())  // a tied head reading Transpose(E) gets its own weight (and plan record) first
        for (ir::LinearMatch& l : r.linears) materializeWeight(l, ctx.plan, ctx.config, kPass);
      if (why.empty() && !anyQuantized(ctx.plan, r.linears)) why = "none of its readers is quantized";
      if (!why.empty()) {
        if (report) ctx.warnings.push_back(std::string(kPass) + ": output of " + (norm ? "norm '" + norm->name() + "'" : "'" + x->name() + "'") +
                                           " not smoothed: " + why);
        return;
      }
      taken.insert(x);
      for (const ir::Node* t : r.through) taken.insert(t->output(0));  // smoothed once, at x
      Site s;
      s.x = x;
      s.linears = r.linears;
      s.channels = r.linears.front().in_features;
      if (norm && norm->gamma_node && norm->channels == s.channels) s.norm = norm;
      if (!s.norm && x->producer()) {
        std::optional<ir::LinearMatch> p = ir::matchLinear(x->producer());
        if (!p && x->producer()->opType() == "Add") {  // x is MatMul + bias: find the MatMul behind it
          for (ir::Value* in : x->producer()->inputs())
            if (in && in->producer() && (p = ir::matchLinear(in->producer())) && p->output == x) break;
        }
        if (p && p->output == x && p->out_features == s.channels) s.producer = p;
      }
      sites_.push_back(std::move(s));
    };
    for (const ir::NormMatch& m : norms_) addSite(m.output, &m, true);
    if (!opts_.linears) return;
    for (ir::Node* n : g.nodes())
      if (std::optional<ir::LinearMatch> l = ir::matchLinear(n)) addSite(l->input, nullptr, false);
  }

  // One float run over the calibration data with a tap on every site.
  void calibrate(ir::Model& model, pipeline::PassContext& ctx) {
    runtime::SessionOptions so;
    so.threads = ctx.threads;
    runtime::Session session(model, so);
    const int64_t batches = ctx.calibration->numBatches();
    for (Site& site : sites_) {
      const int64_t c = site.channels;
      site.stats.absmax.assign(static_cast<size_t>(c), 0.0f);
      site.stats.min.assign(static_cast<size_t>(c), 0.0f);
      site.stats.max.assign(static_cast<size_t>(c), 0.0f);
      Site* sp = &site;
      const int64_t max_rows = opts_.max_rows;
      session.tap(site.x->name(), [sp, c, batches, max_rows](const std::string&, const ir::Tensor& t) {
        if (t.dtype() != ir::DType::kFloat32 || t.rank() < 1 || t.shape().back() != c) {
          if (sp->bad.empty()) sp->bad = "its last axis is not the " + std::to_string(c) + " input features";
          return;
        }
        const int64_t n = t.numel() / c;
        // Rows are sampled at a fixed stride chosen from the first batch: deterministic, spread over the data.
        if (sp->stride == 0) sp->stride = std::max<int64_t>(1, (n * batches + max_rows - 1) / max_rows);
        const float* p = t.data<float>();
        for (int64_t r = 0; r < n; ++r, ++sp->seen) {
          const float* row = p + r * c;
          for (int64_t j = 0; j < c; ++j) {
            const size_t k = static_cast<size_t>(j);
            sp->stats.absmax[k] = std::max(sp->stats.absmax[k], std::fabs(row[j]));
            sp->stats.min[k] = std::min(sp->stats.min[k], row[j]);
            sp->stats.max[k] = std::max(sp->stats.max[k], row[j]);
          }
          if (sp->seen % sp->stride == 0 && sp->nrows < max_rows) {
            sp->rows.insert(sp->rows.end(), row, row + c);
            ++sp->nrows;
          }
        }
      });
    }
    spdlog::info("smooth-quant: measuring {} tensor(s) on {}", sites_.size(), ctx.calibration->describe());
    for (int64_t b = 0; b < batches; ++b) session.run(ctx.calibration->batch(b));
    for (Site& site : sites_)
      for (float v : site.stats.absmax)
        if (!std::isfinite(v) && site.bad.empty()) site.bad = "its calibration values are not finite";
  }

  Decision decide(Site& site, pipeline::PassContext& ctx) const {
    const int64_t c = site.channels;
    std::vector<smooth::LinearTerm> terms;
    std::vector<float> wmax(static_cast<size_t>(c), 0.0f);  // over every output column of every reader
    for (const ir::LinearMatch& l : site.linears) {
      const float* w = l.weight->initializer.data<float>();
      for (int64_t i = 0; i < c; ++i)
        for (int64_t o = 0; o < l.out_features; ++o)
          wmax[static_cast<size_t>(i)] = std::max(wmax[static_cast<size_t>(i)], std::fabs(w[l.index(i, o)]));
      // The search's error is estimated on evenly spaced output columns (at most max_columns of
      // them): columns are quantized independently, so this is a sample of the same sum, and it
      // keeps a 50k-wide LM head from dominating the pass.
      smooth::LinearTerm t;
      t.out = std::min(l.out_features, opts_.max_columns);
      t.w.resize(static_cast<size_t>(c * t.out));
      for (int64_t k = 0; k < t.out; ++k) {
        const int64_t o = k * l.out_features / t.out;
        for (int64_t i = 0; i < c; ++i) t.w[static_cast<size_t>(i * t.out + k)] = w[l.index(i, o)];
      }
      if (const pipeline::LayerPlan* p = ctx.plan.findByWeight(l.weight); p && !p->skip) t.settings = &p->weights;
      terms.push_back(std::move(t));
    }
    std::vector<double> act(site.stats.absmax.begin(), site.stats.absmax.end());
    const double ratio_before = smooth::maxOverMean(act);
    auto ratioAfter = [&](const std::vector<double>& s) {
      std::vector<double> a(act.size());
      for (size_t j = 0; j < a.size(); ++j) a[j] = act[j] / s[j];
      return smooth::maxOverMean(a);
    };
    Decision d;
    if (const std::optional<double> given = layerAlpha(site)) {
      d.s = smooth::smoothingScales(site.stats.absmax, wmax, *given);
      d.note = fmt::format("alpha {:.2f} (layer_alpha), activation max/mean {:.1f} -> {:.1f}", *given, ratio_before,
                           ratioAfter(d.s));
      return d;
    }
    if (!opts_.auto_alpha) {
      d.s = smooth::smoothingScales(site.stats.absmax, wmax, opts_.alpha);
      d.note = fmt::format("alpha {:.2f} (fixed), activation max/mean {:.1f} -> {:.1f}", opts_.alpha, ratio_before,
                           ratioAfter(d.s));
      return d;
    }
    smooth::ActivationGrid grid;
    const pipeline::ActivationSettings& a = ctx.config.activations;
    if (a.present) {
      grid.bits = a.bits;
      grid.symmetric = a.symmetric;
      grid.observer = a.dynamic ? "" : a.observer;  // dynamic: each tensor's own min/max
      grid.observer_options.percentile = a.percentile;
      grid.observer_options.momentum = a.momentum;
      grid.observer_options.bins = a.bins;
    }
    grid.per_token = perToken(a);
    const auto ref = smooth::referenceOutputs(site.rows, site.nrows, c, terms);
    std::vector<double> alphas;
    for (int i = 0;; ++i) {
      const double al = opts_.alpha_min + opts_.alpha_step * i;
      if (al > opts_.alpha_max + 1e-9) break;
      alphas.push_back(std::min(al, opts_.alpha_max));
    }
    // Candidate 0 is the unsmoothed tensor; each candidate is independent, so they run in parallel
    // and the choice (lowest error, ties to the earlier candidate) does not depend on the thread count.
    std::vector<double> err(alphas.size() + 1, 0.0);
    const int n = static_cast<int>(err.size());
    const int threads = ctx.threads > 0 ? ctx.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int i = 0; i < n; ++i) {
      const std::vector<double> s = i == 0 ? std::vector<double>{} : smooth::smoothingScales(site.stats.absmax, wmax, alphas[static_cast<size_t>(i - 1)]);
      err[static_cast<size_t>(i)] = smooth::quantizedOutputError(site.rows, site.nrows, c, site.stats, terms, ref, s, grid);
    }
    size_t best = 0;
    for (size_t i = 1; i < err.size(); ++i)
      if (err[i] < err[best]) best = i;
    const std::string searched = fmt::format("searched {:.2f}..{:.2f} step {:.2f} on {} rows", opts_.alpha_min,
                                             opts_.alpha_max, opts_.alpha_step, site.nrows);
    if (best == 0) {
      d.note = fmt::format("kept unsmoothed: no alpha lowered the quantized output error ({:.4g}; {}), activation "
                           "max/mean {:.1f}", err[0], searched, ratio_before);
      return d;
    }
    const double alpha = alphas[best - 1];
    d.s = smooth::smoothingScales(site.stats.absmax, wmax, alpha);
    d.note = fmt::format("alpha {:.2f} (auto, {}; quantized output error {:.4g} vs {:.4g} unsmoothed), activation "
                         "max/mean {:.1f} -> {:.1f}", alpha, searched, err[best], err[0], ratio_before, ratioAfter(d.s));
    return d;
  }

  static bool perToken(const pipeline::ActivationSettings& a) {
    return a.present && a.dynamic && a.granularity == pipeline::ActivationGranularity::kToken;
  }

  // The layer_alpha entry for a site: the last glob matching the norm's name or a reader's node or weight name.
  std::optional<double> layerAlpha(const Site& site) const {
    std::optional<double> found;
    for (const auto& [glob, alpha] : opts_.layer_alpha) {
      bool hit = site.norm && pipeline::globMatch(glob, site.norm->name());
      for (const ir::LinearMatch& l : site.linears)
        hit = hit || pipeline::globMatch(glob, l.node->name) || pipeline::globMatch(glob, l.weight->name());
      if (hit) found = alpha;
    }
    return found;
  }

  // Divides the tensor by s (folded into its producer, or a Mul) and multiplies its readers' weight rows by s.
  std::string apply(ir::Graph& g, Site& site, const std::vector<double>& s, pipeline::QuantPlan& plan) const {
    std::vector<double> inv(s.size());
    for (size_t j = 0; j < s.size(); ++j) inv[j] = 1.0 / s[j];
    std::string how;
    if (site.norm) {
      scaleChannelVector(site.norm->gamma_node, site.norm->gamma_input, inv, plan, kPass);
      if (site.norm->beta_node) scaleChannelVector(site.norm->beta_node, site.norm->beta_input, inv, plan, kPass);
      how = "1/s folded into norm '" + site.norm->name() + "'";
    } else if (site.producer) {
      ir::LinearMatch p = *ir::matchLinear(site.producer->node);  // fresh: an earlier site may have untied its weight
      scaleOutputColumns(p, inv, plan, kPass);
      how = "1/s folded into the output columns of " + p.node->describe();
    } else {
      std::vector<float> values(inv.begin(), inv.end());
      ir::Value* scale = g.addInitializer(g.uniqueName(site.x->name() + "_smooth_scale"),
                                          ir::Tensor::fromFloats({site.channels}, values));
      const auto uses = ir::dataUses(site.x);
      ir::Node* first = uses.front().node;
      for (ir::Node* n : g.nodes())
        if (std::any_of(uses.begin(), uses.end(), [&](const ir::Value::Use& u) { return u.node == n; })) {
          first = n;
          break;
        }
      ir::Node* mul = g.addNode("Mul", {site.x, scale}, {g.uniqueName(site.x->name() + "_smoothed")},
                                g.uniqueName(site.x->name() + "_SmoothMul"), "", first);
      mul->output(0)->dtype = ir::DType::kFloat32;
      for (const ir::Value::Use& u : uses) u.node->setInput(static_cast<size_t>(u.index), mul->output(0));
      how = "1/s applied by an inserted Mul '" + mul->name + "'";
    }
    for (ir::LinearMatch& l : site.linears) {
      ir::LinearMatch fresh = *ir::matchLinear(l.node);
      scaleInputRows(fresh, s, plan, kPass);
      l = fresh;
    }
    return how;
  }

  SmoothOptions opts_;
  std::vector<ir::NormMatch> norms_;
  std::vector<Site> sites_;
};

}  // namespace

pipeline::PassInfo smoothQuantPassInfo() {
  using pipeline::OptionSpec;
  pipeline::PassInfo info;
  info.name = kPass;
  info.summary =
      "SmoothQuant: measures per-channel activation maxima on the calibration data and moves them into the weights "
      "(x/s, diag(s)·W; s = max|x|^alpha / max|W|^(1-alpha) shared by the linears reading one tensor), folding 1/s "
      "into the producing norm or linear, else an inserted Mul; function-preserving. auto_alpha searches alpha per "
      "tensor by the quantized output error (the unsmoothed tensor is a candidate).";
  info.options = {
      OptionSpec::real("alpha", 0.5, 0.0, 1.0, false, false, "migration strength when auto_alpha is off"),
      OptionSpec::flag("auto_alpha", false, "search alpha per tensor by the quantized output error of its linears"),
      OptionSpec::real("alpha_min", 0.0, 0.0, 1.0, false, false, "smallest alpha auto_alpha tries"),
      OptionSpec::real("alpha_max", 1.0, 0.0, 1.0, false, false, "largest alpha auto_alpha tries"),
      OptionSpec::real("alpha_step", 0.1, 0.0, 1.0, true, false, "step of the auto_alpha grid"),
      OptionSpec::choice("targets", "norms", {"norms", "linears"},
                         "which tensors: norm outputs (q/k/v, fc1, gate/up inputs), or every linear layer's input"),
      OptionSpec::integer("max_rows", 1024, 16, 1 << 20, "calibration rows per tensor kept for the auto_alpha search"),
      OptionSpec::integer("max_columns", 512, 16, 1 << 20,
                          "output columns per linear (evenly spaced) on which the auto_alpha search measures the error"),
      OptionSpec::text(
          "layer_alpha", "",
          [](const std::string& t) {
            std::string why;
            parseLayerAlpha(t, &why);
            return why;
          },
          "per-tensor alpha, \"GLOB=ALPHA,...\" over the norm's or a reader's node or weight name; beats auto_alpha"),
  };
  info.traits.needs_calibration = true;
  info.traits.needs_float_weights = true;
  info.create = [](const pipeline::OptionValues& v) -> std::unique_ptr<pipeline::Pass> {
    SmoothOptions o;
    o.alpha = v.real("alpha");
    o.auto_alpha = v.flag("auto_alpha");
    o.alpha_min = v.real("alpha_min");
    o.alpha_max = v.real("alpha_max");
    o.alpha_step = v.real("alpha_step");
    o.linears = v.text("targets") == "linears";
    o.max_rows = v.integer("max_rows");
    o.max_columns = v.integer("max_columns");
    std::string why;
    o.layer_alpha = parseLayerAlpha(v.text("layer_alpha"), &why);
    if (o.alpha_min > o.alpha_max)
      throwUsage("passes.smooth-quant: alpha_min " + std::to_string(o.alpha_min) + " is larger than alpha_max " +
                 std::to_string(o.alpha_max));
    return std::make_unique<SmoothQuantPass>(o);
  };
  return info;
}

}  // namespace ptq::passes
