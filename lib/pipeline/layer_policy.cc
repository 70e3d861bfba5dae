#include "lib/pipeline/layer_policy.h"

#include <algorithm>
#include <set>

namespace ptq::pipeline {

namespace {

bool wanted(const QuantConfig& c, const std::string& op) {
  if (op == "Gather" && c.layers.quantize_embeddings) return true;
  return std::find(c.layers.op_types.begin(), c.layers.op_types.end(), op) != c.layers.op_types.end();
}

// Fills reduce/channel axes for a node whose weight input is constant; returns "" when the node is a
// quantizable layer, else why not.
std::string classify(ir::Node* n, QuantTarget& t) {
  const std::string& op = n->opType();
  if (!n->domain().empty()) return "not an ai.onnx op";
  if (op == "MatMul") {
    t.weight_input = 1;
    ir::Value* b = n->input(1);
    if (!b || !b->isConstant()) return "weight is not a constant";
    if (b->initializer.rank() != 2) return "weight is not 2-D";
    if (n->input(0) && n->input(0)->isConstant()) return "both inputs are constant";
    t.reduce_axis = 0;
    t.channel_axis = 1;
  } else if (op == "Gemm") {
    t.weight_input = 1;
    ir::Value* b = n->input(1);
    if (!b || !b->isConstant()) return "weight is not a constant";
    if (b->initializer.rank() != 2) return "weight is not 2-D";
    const bool trans_b = n->attrInt("transB", 0) != 0;
    t.reduce_axis = trans_b ? 1 : 0;
    t.channel_axis = trans_b ? 0 : 1;
  } else if (op == "Conv") {
    t.weight_input = 1;
    ir::Value* w = n->input(1);
    if (!w || !w->isConstant()) return "weight is not a constant";
    if (w->initializer.rank() < 3) return "weight rank < 3";
    t.reduce_axis = 1;
    t.channel_axis = 0;
  } else if (op == "Gather") {
    t.weight_input = 0;
    ir::Value* table = n->input(0);
    if (!table || !table->isConstant()) return "table is not a constant";
    if (table->initializer.rank() != 2) return "table is not 2-D";
    if (n->attrInt("axis", 0) != 0) return "gathers along axis != 0";
    t.reduce_axis = 1;   // one scale per row (token) or per group of a row
    t.channel_axis = 0;
  } else {
    return "not a quantizable op";
  }
  t.node = n;
  t.weight = n->input(static_cast<size_t>(t.weight_input));
  if (t.weight->initializer.dtype() != ir::DType::kFloat32) return "weight is not float32";
  return "";
}

}  // namespace

std::vector<QuantTarget> findQuantTargets(ir::Graph& graph, const QuantConfig& config, Report* report) {
  std::vector<QuantTarget> targets;
  std::set<const ir::Value*> seen;
  auto skip = [&](ir::Node* n, ir::Value* w, const std::string& why) {
    if (!report || report->findLayer(w->name())) return;
    LayerRecord r;
    r.node = n->name;
    r.op_type = n->opType();
    r.weight = w->name();
    r.shape = w->initializer.shape();
    r.action = "skipped: " + why;
    report->layers.push_back(r);
  };
  for (ir::Node* n : graph.nodes()) {
    if (!wanted(config, n->opType())) continue;
    QuantTarget t;
    const std::string why = classify(n, t);
    if (!why.empty()) {
      if (t.weight) skip(n, t.weight, why);
      continue;
    }
    if (seen.count(t.weight)) {
      // A weight shared by several layers is quantized once, with the first layer's axes; a later
      // reader that needs other axes keeps reading the same (dequantized) values, which is correct.
      continue;
    }
    seen.insert(t.weight);
    if (t.weight->initializer.numel() < config.layers.min_elements) {
      skip(n, t.weight, "smaller than layers.min_elements");
      continue;
    }
    auto s = config.settingsFor(n->name, t.weight->name(), n->opType());
    if (!s) {
      skip(n, t.weight, "excluded by config");
      continue;
    }
    t.settings = *s;
    targets.push_back(t);
  }
  return targets;
}

}  // namespace ptq::pipeline
