#include "lib/pipeline/report.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "lib/pipeline/quant_plan.h"

namespace ptq::pipeline {

std::vector<LayerRecord> layerRecords(const QuantPlan& plan) {
  std::vector<LayerRecord> out;
  for (const LayerPlan& l : plan.layers()) {
    LayerRecord r;
    r.node = l.node->name;
    r.op_type = l.node->opType();
    r.scope = l.scope;
    r.weight = l.weight->name();
    r.shape = l.weight->initializer.shape();
    r.decided_by = l.decided_by;
    r.history = l.history;
    r.metrics = l.metrics;
    r.activations = l.quantize_activations;
    r.bytes_before = static_cast<int64_t>(l.weight->initializer.nbytes());
    const ir::QuantizedWeight* q = l.weight->quant.get();
    if (l.skip || !q) {
      r.action = "skipped: " + (l.skip ? l.skip_reason : std::string("no pass quantized it"));
    } else {
      r.action = q->method.empty() ? std::string("quantized") : "quantized (" + q->method + ")";
      r.bits = q->bits;
      r.granularity = quant::granularityName(q->granularity);
      r.group_size = q->block_size;
      r.symmetric = q->symmetric;
      r.mse = q->mse;
      r.sqnr_db = q->sqnr_db;
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::string Report::toJson() const {
  using nlohmann::json;
  json j;
  j["tool"] = "ptq-tool";
  j["tool_version"] = tool_version;
  j["input"] = input;
  j["output"] = output;
  j["format"] = format;
  j["config"] = json::parse(config_json.empty() ? "{}" : config_json);
  j["seed"] = seed;
  j["threads"] = threads;
  if (!calibration.empty()) j["calibration"] = calibration;
  int64_t before = 0, after = 0, quantized = 0;
  json layers_j = json::array();
  for (const auto& l : layers) {
    json e{{"node", l.node}, {"op_type", l.op_type}, {"weight", l.weight}, {"shape", l.shape}, {"action", l.action},
           {"decided_by", l.decided_by}};
    if (!l.scope.empty()) e["scope"] = l.scope;
    if (!l.history.empty()) e["history"] = l.history;
    if (!l.metrics.empty()) e["metrics"] = l.metrics;
    if (l.activations) e["activations"] = "quantized";
    if (l.bits) {
      ++quantized;
      e["bits"] = l.bits;
      e["granularity"] = l.granularity;
      if (l.granularity == "group") e["group_size"] = l.group_size;
      e["symmetric"] = l.symmetric;
      e["mse"] = l.mse;
      e["sqnr_db"] = std::isfinite(l.sqnr_db) ? l.sqnr_db : 999.0;
      e["bytes_before"] = l.bytes_before;
      e["bytes_after"] = l.bytes_after;
      e["form"] = l.form;
      before += l.bytes_before;
      after += l.bytes_after;
    }
    layers_j.push_back(e);
  }
  j["layers"] = layers_j;
  json passes_j = json::array();
  for (const auto& p : passes) {
    json e{{"name", p.name}, {"changed", p.changed}, {"counters", p.counters}, {"seconds", p.seconds}};
    if (!p.figures.empty()) e["figures"] = p.figures;
    passes_j.push_back(e);
  }
  j["passes"] = passes_j;
  j["warnings"] = warnings;
  j["summary"] = {{"layers_quantized", quantized},
                  {"layers_total", static_cast<int64_t>(layers.size())},
                  {"weight_bytes_before", before},
                  {"weight_bytes_after", after},
                  {"input_bytes", input_bytes},
                  {"output_bytes", output_bytes},
                  {"seconds", seconds}};
  return j.dump(2);
}

}  // namespace ptq::pipeline
