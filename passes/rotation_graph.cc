#include "passes/rotation_graph.h"

#include "lib/util/error.h"

namespace ptq::passes {

namespace {

ir::Value* floatMatrix(ir::Graph& g, const std::string& name, const std::vector<double>& m, int64_t f, bool transpose) {
  std::vector<float> v(static_cast<size_t>(f * f));
  for (int64_t r = 0; r < f; ++r)
    for (int64_t c = 0; c < f; ++c)
      v[static_cast<size_t>(r * f + c)] = static_cast<float>(transpose ? m[static_cast<size_t>(c * f + r)] : m[static_cast<size_t>(r * f + c)]);
  return g.addInitializer(g.uniqueName(name), ir::Tensor::fromFloats({f, f}, v));
}

ir::Value* ints(ir::Graph& g, const std::string& name, const std::vector<int64_t>& v) {
  return g.addInitializer(g.uniqueName(name), ir::Tensor::fromInt64s({static_cast<int64_t>(v.size())}, v));
}

ir::Value* addOp(ir::Graph& g, ir::Node* before, const std::string& op, const std::vector<ir::Value*>& in,
                 const std::string& base, int64_t* added) {
  ir::Node* n = g.addNode(op, in, {g.uniqueName(base + "_" + op + "_output")}, g.uniqueName(base + "/" + op), "", before);
  n->output(0)->dtype = ir::DType::kFloat32;
  ++*added;
  return n->output(0);
}

}  // namespace

ir::Value* insertOnlineHadamard(ir::Graph& g, ir::Node* before, ir::Value* x, const quant::HadamardTransform& t,
                                const std::vector<double>* signs, const std::string& base, int64_t* nodes_added) {
  int64_t local = 0;
  int64_t* added = nodes_added ? nodes_added : &local;
  const size_t k = t.sizes.size();
  if (signs) {
    std::vector<float> d(signs->begin(), signs->end());
    ir::Value* dv = g.addInitializer(g.uniqueName(base + "_hadamard_signs"), ir::Tensor::fromFloats({t.n}, d));
    x = addOp(g, before, "Mul", {x, dv}, base + "/hadamard_signs", added);
  }
  if (k == 0) return x;  // identity (no construction for any block size > 1)
  if (k == 1 && t.blocks == 1) {
    ir::Value* f = floatMatrix(g, base + "_hadamard_" + std::to_string(t.sizes[0]), t.factors[0], t.sizes[0], false);
    return addOp(g, before, "MatMul", {x, f}, base + "/hadamard", added);
  }
  ir::Node* shape_node = g.addNode("Shape", {x}, {g.uniqueName(base + "_hadamard_shape")}, g.uniqueName(base + "/hadamard/Shape"), "", before);
  shape_node->output(0)->dtype = ir::DType::kInt64;
  ++*added;
  ir::Value* cur = x;
  int64_t inner = t.blockSize();
  for (size_t i = 0; i < k; ++i) {
    const int64_t f = t.sizes[i];
    inner /= f;
    const std::string b = base + "/hadamard_" + std::to_string(i);
    if (i + 1 == k) {  // the fastest axis: right-multiply
      ir::Value* r = addOp(g, before, "Reshape", {cur, ints(g, b + "_shape", {-1, f})}, b, added);
      cur = addOp(g, before, "MatMul", {r, floatMatrix(g, b + "_factor", t.factors[i], f, false)}, b, added);
    } else {  // a middle axis: left-multiply [f, f] · [B, f, inner]
      ir::Value* r = addOp(g, before, "Reshape", {cur, ints(g, b + "_shape", {-1, f, inner})}, b, added);
      cur = addOp(g, before, "MatMul", {floatMatrix(g, b + "_factor_t", t.factors[i], f, true), r}, b, added);
    }
  }
  return addOp(g, before, "Reshape", {cur, shape_node->output(0)}, base + "/hadamard", added);
}

bool canRewriteAsRms(const ir::NormMatch& m, std::string* why) {
  if (m.kind != ir::NormKind::kLayerNorm) return true;
  const ir::Node* first = m.nodes.front();
  if (m.form == "LayerNormalization") {
    for (size_t i = 1; i < first->numOutputs(); ++i)
      if (first->output(i) && (!first->output(i)->uses().empty() || first->graph()->isGraphOutput(first->output(i)))) {
        *why = first->describe() + " exposes its Mean / InvStdDev outputs";
        return false;
      }
    return true;
  }
  for (const ir::Node* n : m.nodes)
    if (n->opType() == "Sub") return true;
  *why = "norm '" + m.name() + "' has no mean subtraction to remove";
  return false;
}

void rewriteAsRms(ir::Graph& g, const ir::NormMatch& m, int64_t opset) {
  if (m.kind != ir::NormKind::kLayerNorm) return;
  ir::Node* first = m.nodes.front();
  if (m.form != "LayerNormalization") {  // decomposed: x − mean(x) → x
    for (ir::Node* n : m.nodes)
      if (n->opType() == "Sub") {
        g.replaceAllUses(n->output(0), m.input);
        return;  // the mean and the Sub are dead now (removed with the pass's dead-code sweep)
      }
    throwInternal("rewriteAsRms: decomposed LayerNorm '" + m.name() + "' has no Sub");
  }
  const int64_t axis = first->attrInt("axis", -1);
  const float eps = first->attrFloat("epsilon", 1e-5f);
  const std::string base = first->name.empty() ? first->output(0)->name() : first->name;  // unique either way
  int64_t added = 0;
  ir::Value* x = m.input;
  ir::Value* sq = addOp(g, first, "Mul", {x, x}, base, &added);
  ir::Value* mean;
  if (opset >= 18) {
    mean = addOp(g, first, "ReduceMean", {sq, ints(g, base + "_axes", {axis})}, base, &added);
  } else {
    mean = addOp(g, first, "ReduceMean", {sq}, base, &added);
    mean->producer()->attrs["axes"] = ir::Attribute::ofInts({axis});
  }
  mean->producer()->attrs["keepdims"] = ir::Attribute::ofInt(1);
  ir::Value* e = g.addInitializer(g.uniqueName(base + "_epsilon"), ir::Tensor::fromFloats({}, {eps}));
  ir::Value* var = addOp(g, first, "Add", {mean, e}, base, &added);
  ir::Value* rms = addOp(g, first, "Sqrt", {var}, base, &added);
  ir::Value* y = addOp(g, first, "Div", {x, rms}, base, &added);
  g.replaceAllUses(first->output(0), y);
  std::vector<ir::Value*> outs = first->outputs();
  g.eraseNode(first);
  for (ir::Value* v : outs)
    if (v && v->uses().empty() && !g.isGraphOutput(v)) g.eraseValue(v);
}

}  // namespace ptq::passes
