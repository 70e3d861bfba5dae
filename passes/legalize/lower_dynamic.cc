// Dynamic activation lowering of legalize (legalize.h), in the forms of lib/ir/dynamic_quant.h:
//   lowerIntegerLayers (before the weights): MatMul/Gemm/Conv with an integer form ->
//     DynamicQuantizeLinear (one per activation, shared) -> MatMulInteger / ConvInteger -> Cast ->
//     Mul(x_scale * W_scale) [-> Add(bias)]; the weight is written as its codes.
//   lowerDynamicActivations (after the static pairs): the other readers of a dynamic activation read
//     DequantizeLinear(DynamicQuantizeLinear(x)) (uint8 per tensor) or the float decomposition.
// Both forms need opset 11 (DynamicQuantizeLinear, Round, Clip with inputs); older models are raised.
#include <map>

#include "lib/ir/dynamic_quant.h"
#include "lib/util/error.h"
#include "passes/legalize/legalize.h"
#include "passes/legalize/opset_upgrade.h"

namespace ptq::legalize {

using ir::DType;
using ir::Tensor;
using ir::Value;

namespace {

constexpr int64_t kOpsetNeeded = 11;

void requireOpset(ir::Model& model, LegalizeResult& result) {
  const int64_t before = model.opsetVersion();
  if (before >= kOpsetNeeded) return;
  upgradeOpset(model, kOpsetNeeded);
  result.warnings.push_back("the model's opset was raised from " + std::to_string(before) + " to " +
                            std::to_string(kOpsetNeeded) + " for dynamic activation quantization");
}

// Builds nodes before `before`, named after `base`.
class Builder {
 public:
  Builder(ir::Graph& g, ir::Node* before, std::string base) : g_(g), before_(before), base_(std::move(base)) {}
  Value* op(const std::string& type, const std::vector<Value*>& in, const std::string& suffix, DType out = DType::kFloat32) {
    // The node takes its output's (unique) name: node names must be unique too.
    const std::string name = g_.uniqueName(base_ + "_" + suffix);
    ir::Node* n = g_.addNode(type, in, {name}, name, "", before_);
    n->output(0)->dtype = out;
    last_ = n;
    return n->output(0);
  }
  Value* scalar(const std::string& suffix, float v) {
    return g_.addInitializer(g_.uniqueName(base_ + "_" + suffix), Tensor::fromFloats({}, {v}));
  }
  ir::Node* last() const { return last_; }

 private:
  ir::Graph& g_;
  ir::Node* before_;
  std::string base_;
  ir::Node* last_ = nullptr;
};

// The DynamicQuantizeLinear reading `x` (one per activation), created before `first_reader` if absent.
ir::Node* dynamicQuantizeOf(ir::Graph& g, Value* x, ir::Node* first_reader) {
  for (const auto& u : x->uses())
    if (u.node->opType() == "DynamicQuantizeLinear" && u.node->domain().empty()) return u.node;
  const std::string base = x->name();
  ir::Node* q = g.addNode("DynamicQuantizeLinear", {x},
                          {g.uniqueName(base + "_quantized"), g.uniqueName(base + "_scale"), g.uniqueName(base + "_zero_point")},
                          g.uniqueName(base + "_DynamicQuantizeLinear"), "", first_reader);
  q->output(0)->dtype = DType::kUInt8;
  q->output(1)->dtype = DType::kFloat32;
  q->output(2)->dtype = DType::kUInt8;
  return q;
}

// Reduction over the last axis (per token) or all axes, keepdims = 1, at the model's opset.
Value* reduce(Builder& b, ir::Graph& g, const std::string& type, Value* x, bool per_token, int64_t opset,
              const std::string& suffix) {
  if (!per_token) return b.op(type, {x}, suffix);
  if (opset >= 18) {
    Value* axes = g.addInitializer(g.uniqueName(x->name() + "_last_axis"), Tensor::fromInt64s({1}, {-1}));
    return b.op(type, {x, axes}, suffix);
  }
  Value* r = b.op(type, {x}, suffix);
  b.last()->attrs["axes"] = ir::Attribute::ofInts({-1});
  return r;
}

// The float decomposition of dynamic_quant.h; returns the fake-quantized value.
Value* decompose(ir::Graph& g, Value* x, const ir::ActivationQuant& aq, int64_t opset, ir::Node* before) {
  int32_t qmin_i, qmax_i;
  ir::dynamicRange(aq.dtype, &qmin_i, &qmax_i);
  Builder b(g, before, x->name());
  Value* qmin = b.scalar("qmin", static_cast<float>(qmin_i));
  Value* qmax = b.scalar("qmax", static_cast<float>(qmax_i));
  Value* floor = b.scalar("scale_floor", ir::kDynamicScaleFloor);
  if (qmin_i < 0) {  // symmetric
    Value* amax = reduce(b, g, "ReduceMax", b.op("Abs", {x}, "abs"), aq.per_token, opset, "absmax");
    Value* s = b.op("Max", {b.op("Div", {amax, qmax}, "scale_raw"), floor}, "scale");
    Value* q = b.op("Clip", {b.op("Round", {b.op("Div", {x, s}, "scaled")}, "rounded"), qmin, qmax}, "codes");
    return b.op("Mul", {q, s}, "fake_quantized");
  }
  Value* zero = b.scalar("zero", 0.0f);
  Value* lo = b.op("Min", {reduce(b, g, "ReduceMin", x, aq.per_token, opset, "min"), zero}, "lo");
  Value* hi = b.op("Max", {reduce(b, g, "ReduceMax", x, aq.per_token, opset, "max"), zero}, "hi");
  Value* s = b.op("Max", {b.op("Div", {b.op("Sub", {hi, lo}, "range"), qmax}, "scale_raw"), floor}, "scale");
  Value* z = b.op("Round", {b.op("Clip", {b.op("Div", {b.op("Neg", {lo}, "neg_lo"), s}, "zero_raw"), zero, qmax}, "zero_clipped")},
                  "zero_point");
  Value* q = b.op("Clip", {b.op("Add", {b.op("Round", {b.op("Div", {x, s}, "scaled")}, "rounded"), z}, "shifted"), qmin, qmax},
                  "codes");
  return b.op("Mul", {b.op("Sub", {q, z}, "centered"), s}, "fake_quantized");
}

int64_t bytesOf(const Tensor& t) { return t.empty() ? 0 : static_cast<int64_t>(t.nbytes()); }

}  // namespace

void lowerIntegerLayers(ir::Model& model, LegalizeResult& result) {
  ir::Graph& g = *model.graph;
  std::vector<ir::Node*> layers;
  for (ir::Node* n : g.nodes())
    if (ir::integerLayerForm(*n) != ir::IntegerLayerForm::kNone) layers.push_back(n);
  if (layers.empty()) return;
  requireOpset(model, result);
  for (ir::Node* n : layers) {
    const bool conv = ir::integerLayerForm(*n) == ir::IntegerLayerForm::kConvInteger;
    const ir::IntegerLayerWeight w = ir::integerLayerWeight(*n);
    Value* x = n->input(0);
    Value* weight = n->input(1);
    Value* bias = n->input(2);
    const std::string base = weight->name();
    ir::Node* q = dynamicQuantizeOf(g, x, n);
    Value* codes = g.addInitializer(g.uniqueName(base + "_quantized"), w.codes);
    std::vector<Value*> int_in{q->output(0), codes, q->output(2)};
    if (!w.zero_point.empty()) int_in.push_back(g.addInitializer(g.uniqueName(base + "_zero_point"), w.zero_point));
    Builder b(g, n, n->name.empty() ? base : n->name);
    Value* acc = b.op(conv ? "ConvInteger" : "MatMulInteger", int_in, "int32", DType::kInt32);
    if (conv)
      for (const auto& [key, attr] : n->attrs) b.last()->attrs[key] = attr;  // Conv's window is ConvInteger's
    Value* f = b.op("Cast", {acc}, "float");
    b.last()->attrs["to"] = ir::Attribute::ofInt(static_cast<int64_t>(DType::kFloat32));
    Value* scale = g.addInitializer(g.uniqueName(base + "_scale"), w.scale);
    Value* prod = b.op("Mul", {q->output(1), scale}, "scale_product");
    result.weights.push_back({weight, base, conv ? "ConvInteger" : "MatMulInteger",
                              bytesOf(w.codes) + bytesOf(w.scale) + bytesOf(w.zero_point)});
    if (bias) {
      Value* y = b.op("Mul", {f, prod}, "scaled");
      Value* bv = bias;
      if (conv) {  // [M] -> [M, 1(, 1)] to broadcast over the output channels
        ir::Shape s(static_cast<size_t>(w.codes.rank() - 1), 1);
        s[0] = bias->initializer.numel();
        bv = g.addInitializer(g.uniqueName(bias->name() + "_channels"), bias->initializer.reshaped(s));
      }
      g.replaceNode(n, "Add", {y, bv});
    } else {
      g.replaceNode(n, "Mul", {f, prod});
    }
    weight->quant.reset();
    if (weight->uses().empty() && !g.isGraphOutput(weight)) g.eraseValue(weight);
    if (bias && bias->uses().empty() && !g.isGraphOutput(bias)) g.eraseValue(bias);
    ++result.integer_layers;
  }
  g.topoSort();
}

void lowerDynamicActivations(ir::Model& model, LegalizeResult& result) {
  ir::Graph& g = *model.graph;
  std::vector<Value*> targets;
  auto consider = [&](Value* v) {
    if (v && v->act_quant && v->act_quant->dynamic) targets.push_back(v);
  };
  for (Value* v : g.inputs()) consider(v);
  for (ir::Node* n : g.nodes())
    for (Value* out : n->outputs()) consider(out);
  bool any = false;
  for (Value* v : targets) {
    std::vector<Value::Use> readers;
    // Shape/Size read only the shape, which quantization keeps: they stay on the float value.
    for (const auto& u : v->uses()) {
      const std::string& op = u.node->opType();
      if (op != "DynamicQuantizeLinear" && op != "Shape" && op != "Size") readers.push_back(u);
    }
    const ir::ActivationQuant aq = *v->act_quant;
    v->act_quant.reset();
    if (readers.empty()) continue;
    if (!any) requireOpset(model, result);
    any = true;
    ir::Node* first = readers[0].node;  // topoSort below puts the new nodes before every reader
    Value* fake = nullptr;
    if (ir::usesDynamicQuantizeLinear(aq)) {
      ir::Node* q = dynamicQuantizeOf(g, v, first);
      ir::Node* dq = g.addNode("DequantizeLinear", {q->output(0), q->output(1), q->output(2)},
                               {g.uniqueName(v->name() + "_dequantized")}, g.uniqueName(v->name() + "_DequantizeLinear"), "",
                               first);
      fake = dq->output(0);
      fake->dtype = DType::kFloat32;
    } else {
      fake = decompose(g, v, aq, model.opsetVersion(), first);
    }
    for (const auto& u : readers) u.node->setInput(static_cast<size_t>(u.index), fake);
    ++result.dynamic_activations;
  }
  if (any) g.topoSort();
}

}  // namespace ptq::legalize
