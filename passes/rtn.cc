#include "passes/rtn.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "lib/pipeline/layer_policy.h"
#include "lib/util/error.h"
#include "passes/weight_quantizer.h"

namespace ptq::passes {

namespace {

class RtnPass final : public pipeline::Pass {
 public:
  std::string name() const override { return "rtn"; }

  pipeline::PassResult run(ir::Model& model, pipeline::PassContext& ctx) override {
    pipeline::PassResult result;
    auto targets = pipeline::findQuantTargets(*model.graph, ctx.config, &ctx.report);
    int64_t quantized = 0, already = 0;
    for (const auto& t : targets) {
      if (t.weight->quant) {  // an earlier pass (e.g. gptq) already decided this weight
        ++already;
        continue;
      }
      try {
        t.weight->quant = quantizeWeight(t.weight->initializer, t.reduce_axis, t.channel_axis, t.settings);
      } catch (const Error& e) {
        throw e.withContext(t.node->describe() + " weight '" + t.weight->name() + "'");
      }
      t.weight->quant->method = "rtn";
      ++quantized;
      spdlog::debug("rtn: {} {} -> {}-bit {} sqnr {:.1f} dB", t.node->describe(), t.weight->name(), t.settings.bits,
                    pipeline::granularityName(t.settings.granularity), t.weight->quant->sqnr_db);
    }
    result.changed = quantized > 0;
    result.counters["weights_quantized"] = quantized;
    result.counters["weights_already_quantized"] = already;
    return result;
  }
};

}  // namespace

std::unique_ptr<pipeline::Pass> createRtnPass(const std::string&) { return std::make_unique<RtnPass>(); }

}  // namespace ptq::passes
