#include "passes/linear_rewrite.h"

#include "lib/util/error.h"

namespace ptq::passes {

ir::Value* ownConstant(ir::Node* n, int slot, pipeline::QuantPlan& plan, const std::string& pass) {
  ir::Value* v = n->input(static_cast<size_t>(slot));
  if (!v || !v->isConstant()) throwInternal(pass + ": " + n->describe() + " input " + std::to_string(slot) + " is not a constant");
  if (ir::usedOnlyBy(v, {n}) && v->uses().size() == 1) return v;
  ir::Graph& g = *n->graph();
  ir::Tensor copy = v->initializer;
  copy.mutableData();  // a private buffer, not shared with the original
  ir::Value* mine = g.addInitializer(g.uniqueName(v->name() + "_" + pass), std::move(copy));
  n->setInput(static_cast<size_t>(slot), mine);
  plan.untie(v, n, mine, pass);
  return mine;
}

float* ownedWeightData(ir::LinearMatch& l, pipeline::QuantPlan& plan, const std::string& pass) {
  if (l.weight_view) throwInternal(pass + ": " + l.node->describe() + " reads its weight through a Transpose: materialize it first");
  l.weight = ownConstant(l.node, 1, plan, pass);
  return l.weight->initializer.mutableData<float>();
}

float* ownedBiasData(ir::LinearMatch& l, pipeline::QuantPlan& plan, const std::string& pass) {
  l.bias = ownConstant(l.bias_add ? l.bias_add : l.node, l.bias_input, plan, pass);
  return l.bias->initializer.mutableData<float>();
}

void materializeWeight(ir::LinearMatch& l, pipeline::QuantPlan& plan, const pipeline::QuantConfig& config,
                       const std::string& pass) {
  if (!l.weight_view) return;
  const ir::Tensor& e = l.weight->initializer;  // [out, in]
  ir::Tensor w(ir::DType::kFloat32, {l.in_features, l.out_features});
  float* dst = w.mutableData<float>();
  const float* src = e.data<float>();
  for (int64_t i = 0; i < l.in_features; ++i)
    for (int64_t o = 0; o < l.out_features; ++o) dst[i * l.out_features + o] = src[o * l.in_features + i];
  ir::Graph& g = *l.node->graph();
  ir::Value* mine = g.addInitializer(g.uniqueName(l.weight->name() + "_transposed"), std::move(w));
  l.node->setInput(1, mine);
  if (l.weight_view->output(0)->uses().empty() && !g.isGraphOutput(l.weight_view->output(0))) {
    ir::Value* out = l.weight_view->output(0);
    g.eraseNode(l.weight_view);
    g.eraseValue(out);
  }
  l.weight = mine;
  l.weight_view = nullptr;
  l.weight_transposed = false;
  plan.adopt(l.node, config, pass);
}

void scaleInputRows(ir::LinearMatch& l, const std::vector<double>& s, pipeline::QuantPlan& plan, const std::string& pass) {
  float* w = ownedWeightData(l, plan, pass);
  for (int64_t i = 0; i < l.in_features; ++i)
    for (int64_t o = 0; o < l.out_features; ++o) {
      float& x = w[l.index(i, o)];
      x = static_cast<float>(static_cast<double>(x) * s[static_cast<size_t>(i)]);
    }
}

void scaleOutputColumns(ir::LinearMatch& l, const std::vector<double>& s, pipeline::QuantPlan& plan,
                        const std::string& pass) {
  float* w = ownedWeightData(l, plan, pass);
  for (int64_t i = 0; i < l.in_features; ++i)
    for (int64_t o = 0; o < l.out_features; ++o) {
      float& x = w[l.index(i, o)];
      x = static_cast<float>(static_cast<double>(x) * s[static_cast<size_t>(o)]);
    }
  if (l.bias) {
    float* b = ownedBiasData(l, plan, pass);
    for (int64_t o = 0; o < l.out_features; ++o)
      b[o] = static_cast<float>(static_cast<double>(b[o]) * s[static_cast<size_t>(o)]);
  }
}

void addToBias(ir::LinearMatch& l, const std::vector<double>& delta, pipeline::QuantPlan& plan, const std::string& pass) {
  // Gemm computes alpha·x·W + beta·C, so y += delta is C += delta / beta.
  const bool gemm = l.node->opType() == "Gemm";
  ir::Graph& g = *l.node->graph();
  if (gemm && l.beta == 0.0f) {
    if (l.bias) l.node->setInput(2, nullptr);  // ignored by the op anyway
    l.node->attrs["beta"] = ir::Attribute::ofFloat(1.0f);
    l.beta = 1.0f;
    l.bias = nullptr;
  }
  const double div = gemm ? static_cast<double>(l.beta) : 1.0;
  if (l.bias) {
    float* b = ownedBiasData(l, plan, pass);
    for (int64_t o = 0; o < l.out_features; ++o)
      b[o] = static_cast<float>(static_cast<double>(b[o]) + delta[static_cast<size_t>(o)] / div);
    return;
  }
  std::vector<float> values(static_cast<size_t>(l.out_features));
  for (int64_t o = 0; o < l.out_features; ++o) values[static_cast<size_t>(o)] = static_cast<float>(delta[static_cast<size_t>(o)] / div);
  const std::string base = l.weight->name() + "_bias";
  ir::Value* bias = g.addInitializer(g.uniqueName(base), ir::Tensor::fromFloats({l.out_features}, values));
  if (gemm) {
    while (l.node->numInputs() < 2) l.node->addInput(nullptr);
    if (l.node->numInputs() == 2) l.node->addInput(bias);
    else l.node->setInput(2, bias);
    l.bias = bias;
    l.bias_input = 2;
    return;
  }
  // MatMul: a new MatMul (same name and inputs) writes a fresh value, and an Add takes the old
  // node's place writing its output, so readers and graph outputs need no rewiring.
  ir::Node* old = l.node;
  const std::string name = old->name;
  ir::Node* mm = g.addNode("MatMul", {old->input(0), old->input(1)}, {g.uniqueName(old->output(0)->name() + "_matmul")},
                           name, "", old);
  mm->output(0)->dtype = old->output(0)->dtype;
  plan.replaceNode(old, mm);
  ir::Node* add = g.replaceNode(old, "Add", {mm->output(0), bias});
  add->name = name.empty() ? "" : name + "_bias";
  l.node = mm;
  l.bias_add = add;
  l.bias_input = 1;
  l.bias = bias;
  l.output = add->output(0);
}

void scaleChannelVector(ir::Node* n, int slot, const std::vector<double>& s, pipeline::QuantPlan& plan,
                        const std::string& pass) {
  ir::Value* v = ownConstant(n, slot, plan, pass);
  float* p = v->initializer.mutableData<float>();
  const int64_t c = v->initializer.numel();
  for (int64_t i = 0; i < c; ++i) p[i] = static_cast<float>(static_cast<double>(p[i]) * s[static_cast<size_t>(i)]);
}

void fillChannelVector(ir::Node* n, int slot, float value, pipeline::QuantPlan& plan, const std::string& pass) {
  ir::Value* v = ownConstant(n, slot, plan, pass);
  float* p = v->initializer.mutableData<float>();
  for (int64_t i = 0; i < v->initializer.numel(); ++i) p[i] = value;
}

void noteLayer(pipeline::QuantPlan& plan, const ir::LinearMatch& l, const std::string& pass, const std::string& text) {
  if (pipeline::LayerPlan* layer = plan.findByWeight(l.weight)) plan.note(*layer, pass, text);
}

}  // namespace ptq::passes
