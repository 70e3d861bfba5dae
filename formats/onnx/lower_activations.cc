#include "formats/onnx/lower_activations.h"

#include <cmath>
#include <limits>
#include <unordered_map>

#include "formats/onnx/opset_upgrade.h"
#include "lib/util/error.h"

namespace ptq::onnx_io {

using ir::DType;
using ir::Tensor;
using ir::Value;
using QW = ir::QuantizedWeight;

void quantizeBiases(ir::Model& model, pipeline::Report& report) {
  ir::Graph& g = *model.graph;
  int64_t count = 0;
  for (ir::Node* n : g.nodes()) {
    if (n->opType() != "Conv" && n->opType() != "Gemm") continue;
    Value* x = n->input(0);
    Value* w = n->input(1);
    Value* b = n->input(2);
    if (!x || !x->act_quant || !w || !w->quant || !b || !b->isConstant()) continue;
    if (b->initializer.dtype() != DType::kFloat32 || b->initializer.rank() != 1 || b->uses().size() != 1) continue;
    const QW& q = *w->quant;
    if (q.granularity == QW::Granularity::kBlocked) continue;  // no integer kernel takes blocked weights
    if (n->opType() == "Gemm" && (n->attrFloat("alpha", 1.f) != 1.f || n->attrFloat("beta", 1.f) != 1.f)) continue;
    const int64_t channels = b->initializer.numel();
    const float sx = x->act_quant->scale.data<float>()[0];
    const float* sw = q.scales.data<float>();
    const bool per_channel = q.granularity == QW::Granularity::kPerChannel;
    if (per_channel && q.scales.numel() != channels) continue;
    Tensor codes(DType::kInt32, {channels});
    // Per-tensor weights give one bias scale (a scalar DequantizeLinear, valid at opset 10);
    // per-channel ones a vector along axis 0 (opset 13, which their own DequantizeLinear needs too).
    Tensor scales(DType::kFloat32, per_channel ? ir::Shape{channels} : ir::Shape{});
    const float* bf = b->initializer.data<float>();
    for (int64_t c = 0; c < channels; ++c) {
      const float s = sx * sw[per_channel ? c : 0];
      scales.mutableData<float>()[per_channel ? c : 0] = s;
      const double v = s > 0 ? std::nearbyint(static_cast<double>(bf[c]) / s) : 0.0;
      const double lim = static_cast<double>(std::numeric_limits<int32_t>::max());
      codes.mutableData<int32_t>()[c] = static_cast<int32_t>(std::max(-lim, std::min(lim, v)));
    }
    const std::string base = b->name();
    Value* qb = g.addInitializer(g.uniqueName(base + "_quantized"), codes);
    Value* sb = g.addInitializer(g.uniqueName(base + "_scale"), scales);
    ir::Node* dq = g.addNode("DequantizeLinear", {qb, sb}, {g.uniqueName(base + "_dequantized")},
                             g.uniqueName(base + "_DequantizeLinear"), "", n);
    if (per_channel) dq->attrs["axis"] = ir::Attribute::ofInt(0);
    dq->output(0)->dtype = DType::kFloat32;
    n->setInput(2, dq->output(0));
    if (b->uses().empty() && !g.isGraphOutput(b)) g.eraseValue(b);
    ++count;
  }
  if (count) report.warnings.push_back(std::to_string(count) + " Conv/Gemm biases stored as int32 with scale s_x * s_w");
}

void lowerActivations(ir::Model& model, pipeline::Report& report) {
  ir::Graph& g = *model.graph;
  std::vector<Value*> targets;
  int64_t opset_needed = 10;
  auto consider = [&](Value* v) {
    if (!v || !v->act_quant) return;
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
    report.warnings.push_back("the model's opset was raised from " + std::to_string(before) + " to " +
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
    refreshPositions();
  }
}

}  // namespace ptq::onnx_io
