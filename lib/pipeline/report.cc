#include "lib/pipeline/report.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace ptq::pipeline {

LayerRecord* Report::findLayer(const std::string& weight) {
  for (auto& l : layers)
    if (l.weight == weight) return &l;
  return nullptr;
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
    json e{{"node", l.node}, {"op_type", l.op_type}, {"weight", l.weight}, {"shape", l.shape}, {"action", l.action}};
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
  for (const auto& p : passes)
    passes_j.push_back({{"name", p.name}, {"changed", p.changed}, {"counters", p.counters}, {"seconds", p.seconds}});
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
