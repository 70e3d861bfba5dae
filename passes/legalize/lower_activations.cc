// Activation lowering of legalize (legalize.h): ActivationQuant annotations (set by the qdq pass)
// -> one QuantizeLinear -> DequantizeLinear pair per tensor, before its readers (a graph output keeps
// its float value; dynamic ones are lower_dynamic.cc's). Runs after the weights are lowered (it raises the opset for int4/int16
// activations when needed).
#include <unordered_map>

#include "lib/util/error.h"
#include "passes/legalize/legalize.h"
#include "passes/legalize/opset_upgrade.h"

namespace ptq::legalize {

using ir::DType;
using ir::Value;

void lowerActivations(ir::Model& model, LegalizeResult& result) {
  ir::Graph& g = *model.graph;
  std::vector<Value*> targets;
  int64_t opset_needed = 10;
  auto consider = [&](Value* v) {
    if (!v || !v->act_quant || v->act_quant->dynamic) return;  // dynamic: lower_dynamic.cc
    targets.push_back(v);
    const DType t = v->act_quant->dtype;
    if (t != DType::kInt8 && t != DType::kUInt8) opset_needed = 21;
  };
  for (Value* v : g.inputs()) consider(v);
  for (ir::Node* n : g.nodes())
    for (Value* out : n->outputs()) consider(out);
  if (targets.empty()) return;
  if (model.opsetVersion() < opset_needed) {
    const int64_t before = model.opsetVersion();
    upgradeOpset(model, opset_needed);
    result.warnings.push_back("the model's opset was raised from " + std::to_string(before) + " to " +
                              std::to_string(opset_needed) + " for the activations' QuantizeLinear form");
  }
  std::unordered_map<const ir::Node*, size_t> position;
  auto refreshPositions = [&] {
    position.clear();
    auto nodes = g.nodes();
    for (size_t i = 0; i < nodes.size(); ++i) position[nodes[i]] = i;
  };
  refreshPositions();
  for (Value* v : targets) {
    const auto uses = v->uses();
    if (uses.empty()) {
      v->act_quant.reset();
      continue;
    }
    // Insert before the earliest reader: after the producer by construction.
    ir::Node* first = uses[0].node;
    for (const auto& u : uses)
      if (position.at(u.node) < position.at(first)) first = u.node;
    const ir::ActivationQuant& aq = *v->act_quant;
    const std::string base = v->name();
    Value* scale = g.addInitializer(g.uniqueName(base + "_act_scale"), aq.scale);
    Value* zero = g.addInitializer(g.uniqueName(base + "_act_zero_point"), aq.zero_point);
    ir::Node* q = g.addNode("QuantizeLinear", {v, scale, zero}, {g.uniqueName(base + "_quantized")},
                            g.uniqueName(base + "_QuantizeLinear"), "", first);
    ir::Node* dq = g.addNode("DequantizeLinear", {q->output(0), scale, zero}, {g.uniqueName(base + "_dequantized")},
                             g.uniqueName(base + "_DequantizeLinear"), "", first);
    q->output(0)->dtype = aq.dtype;
    dq->output(0)->dtype = DType::kFloat32;
    for (const auto& u : uses) u.node->setInput(static_cast<size_t>(u.index), dq->output(0));
    v->act_quant.reset();
    ++result.activation_pairs;
    refreshPositions();
  }
}

}  // namespace ptq::legalize
