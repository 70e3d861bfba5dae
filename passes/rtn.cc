#include "passes/rtn.h"

#include <spdlog/spdlog.h>

#include "lib/util/error.h"
#include "passes/weight_quantizer.h"

namespace ptq::passes {

namespace {

struct RtnOptions {
  int clip_steps = 20;
  float clip_min_ratio = 0.5f;
};

class RtnPass final : public pipeline::Pass {
 public:
  explicit RtnPass(RtnOptions o) : opts_(o) {}
  std::string name() const override { return "rtn"; }

  pipeline::PassResult run(ir::Model&, pipeline::PassContext& ctx) override {
    pipeline::PassResult result;
    int64_t quantized = 0, already = 0, clamped_scales = 0;
    for (pipeline::LayerPlan* l : ctx.plan.active()) {
      if (l->weight->quant) {  // an earlier pass (e.g. gptq) already decided this weight
        ++already;
        continue;
      }
      try {
        l->weight->quant = quantizeWeight(l->weight->initializer, l->reduce_axis, l->channel_axis, l->weights,
                                          opts_.clip_steps, opts_.clip_min_ratio);
      } catch (const Error& e) {
        throw e.withContext(l->label());
      }
      l->weight->quant->method = "rtn";
      // Done with the float weight: a weight mapped from the model's file gives its pages back (and an
      // unaligned one its aligned copy); it is read again if a later stage looks at it.
      l->weight->initializer.releaseMemory();
      ++quantized;
      int64_t clamped = 0;
      const ir::Tensor& s = l->weight->quant->scales;
      for (int64_t i = 0; i < s.numel(); ++i) clamped += quant::isClampedScale(s.data<float>()[i]);
      if (clamped) {
        clamped_scales += clamped;
        ctx.warnings.push_back("rtn: " + l->label() + ": " + std::to_string(clamped) + " of " + std::to_string(s.numel()) +
                               " weight scales would be denormal or 0 (values below ~1e-36): clamped to 2^-126");
      }
      spdlog::debug("rtn: {} -> {}-bit {} sqnr {:.1f} dB", l->label(), l->weights.bits,
                    quant::granularityName(l->weights.granularity), l->weight->quant->sqnr_db);
    }
    result.changed = quantized > 0;
    result.counters["weights_quantized"] = quantized;
    result.counters["weights_already_quantized"] = already;
    result.counters["scales_clamped"] = clamped_scales;
    return result;
  }

 private:
  RtnOptions opts_;
};

}  // namespace

pipeline::PassInfo rtnPassInfo() {
  using pipeline::OptionSpec;
  pipeline::PassInfo info;
  info.name = "rtn";
  info.summary =
      "Round-to-nearest weight quantization with the plan's per-layer settings (the config's weights section, "
      "overrides, and whatever earlier passes decided); skips weights an earlier pass already quantized.";
  info.options = {
      OptionSpec::integer("clip_steps", 20, 1, 1000, "ratios the MSE clip search tries (weights.clip_search = mse)"),
      OptionSpec::real("clip_min_ratio", 0.5, 0.0, 1.0, true, false,
                       "smallest fraction of a group's range the MSE clip search tries"),
  };
  info.traits.quantizes_weights = true;
  info.in_default_pipeline = true;
  info.create = [](const pipeline::OptionValues& v) -> std::unique_ptr<pipeline::Pass> {
    RtnOptions o;
    o.clip_steps = static_cast<int>(v.integer("clip_steps"));
    o.clip_min_ratio = static_cast<float>(v.real("clip_min_ratio"));
    return std::make_unique<RtnPass>(o);
  };
  return info;
}

}  // namespace ptq::passes
