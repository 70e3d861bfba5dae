// Which weights get quantized, and how: the per-tensor policy, in one place (like llama.cpp's
// per-tensor type rules). Finds MatMul/Gemm/Conv layers with constant float weights (and embedding
// Gathers when asked), applies the config's skip list, size threshold and overrides, and records a
// "skipped: why" entry in the report for every layer it leaves alone.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lib/ir/graph.h"
#include "lib/pipeline/config.h"
#include "lib/pipeline/report.h"

namespace ptq::pipeline {

struct QuantTarget {
  ir::Node* node = nullptr;
  int weight_input = 1;        // which input of `node` is the weight
  ir::Value* weight = nullptr;
  int64_t reduce_axis = 0;     // the weight axis summed over (K); groups run along it
  int64_t channel_axis = 1;    // the output-channel axis (per-channel scales)
  WeightSettings settings;
};

// Targets in graph order. Each weight appears once, even when several nodes read it.
std::vector<QuantTarget> findQuantTargets(ir::Graph& graph, const QuantConfig& config, Report* report);

}  // namespace ptq::pipeline
