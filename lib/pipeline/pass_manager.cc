#include "lib/pipeline/pass_manager.h"

#include <chrono>

#include "lib/ir/verifier.h"
#include "lib/pipeline/pass_registry.h"
#include "lib/util/error.h"

namespace ptq::pipeline {

PassManager PassManager::fromConfig(const QuantConfig& config, bool verify_each) {
  PassManager pm(verify_each);
  for (const auto& name : config.pipeline) {
    const PassInfo* info = findPass(name);
    if (!info) throwUsage(config.source + ": pipeline: unknown pass '" + name + "'");
    pm.add(info->create(config.passOptionsJson(name)));
  }
  return pm;
}

void PassManager::run(ir::Model& model, PassContext& ctx) {
  if (verify_each_) ir::verifyOrThrow(*model.graph, "input model");
  for (size_t i = 0; i < passes_.size(); ++i) {
    Pass& p = *passes_[i];
    if (on_pass_start) on_pass_start(p.name(), i, passes_.size());
    const auto t0 = std::chrono::steady_clock::now();
    PassResult r;
    try {
      r = p.run(model, ctx);
    } catch (const Error& e) {
      throw e.withContext("pass '" + p.name() + "'");
    }
    PassRecord rec;
    rec.name = p.name();
    rec.changed = r.changed;
    rec.counters = r.counters;
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ctx.report.passes.push_back(rec);
    if (verify_each_) ir::verifyOrThrow(*model.graph, "after pass '" + p.name() + "'");
  }
}

}  // namespace ptq::pipeline
