// Default-domain opset upgrade (see opset_upgrade.h for the list of rewrites).
//
// Shape of the code: one rewrite function per op family, each written as
//     <checks: fail() on anything that cannot be expressed>
//     if (!u.apply) return;
//     <rewrite>
// and a table mapping op type -> (opset versions where the op changed, rewrite function). The model
// is walked twice: a check pass (u.apply == false) that throws before anything is touched, then the
// rewrite pass. Facts the checks rely on (value types, constness, uses) are not changed by other
// rewrites, so the second pass sees the same answers; value types are memoized across both passes.
#include "passes/legalize/opset_upgrade.h"


#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "lib/util/error.h"

namespace ptq::legalize {

using ir::Attribute;
using ir::DType;
using ir::Graph;
using ir::Model;
using ir::Node;
using ir::Tensor;
using ir::Value;

namespace {

bool isDefaultDomain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

std::string joinFloats(const std::vector<float>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v[i]));
    s += (i ? "," : "") + std::string(buf);
  }
  return "[" + s + "]";
}

uint16_t floatToBFloat16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if (std::isnan(f)) return 0x7FC0;
  bits += 0x7FFF + ((bits >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(bits >> 16);
}

// A 0-d tensor of a floating dtype holding `v`; empty for other dtypes.
Tensor floatScalar(DType t, float v) {
  if (t != DType::kFloat32 && t != DType::kFloat64 && t != DType::kFloat16 && t != DType::kBFloat16) return Tensor();
  Tensor s(t, {});
  if (t == DType::kFloat32) *s.mutableData<float>() = v;
  if (t == DType::kFloat64) *s.mutableData<double>() = v;
  if (t == DType::kFloat16) *s.mutableData<uint16_t>() = ir::floatToHalf(v);
  if (t == DType::kBFloat16) *s.mutableData<uint16_t>() = floatToBFloat16(v);
  return s;
}

// Ops whose output 0 has the element type of input 0 (used to find the type of an untyped value).
const std::unordered_set<std::string>& typePreservingOps() {
  static const std::unordered_set<std::string> ops = {
      "Abs", "Acos", "Acosh", "Add", "Asin", "Asinh", "Atan", "Atanh", "AveragePool", "BatchNormalization",
      "Ceil", "Celu", "Clip", "Compress", "Concat", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum",
      "DepthToSpace", "Div", "Dropout", "Einsum", "Elu", "Erf", "Exp", "Expand", "Flatten", "Floor", "Gather",
      "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool",
      "GroupNormalization", "HardSigmoid", "HardSwish", "Hardmax", "Identity", "InstanceNormalization",
      "LRN", "LayerNormalization", "LeakyRelu", "Log", "LogSoftmax", "LpNormalization", "LpPool", "MatMul",
      "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg", "PRelu",
      "Pad", "Pow", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
      "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize",
      "ReverseSequence", "Round", "Scatter", "ScatterElements", "ScatterND", "Selu", "Shrink", "Sigmoid",
      "Sign", "Sin", "Sinh", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt",
      "Squeeze", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu",
      "Unsqueeze", "Upsample"};
  return ops;
}

// Shared state of one upgradeOpset call.
struct Upgrade {
  int64_t from = 0;
  int64_t to = 0;
  bool apply = false;  // false: check pass (throw, touch nothing); true: rewrite pass

  // Did the op change at opset `v` between the model's opset and the target?
  bool crosses(int64_t v) const { return from < v && v <= to; }

  [[noreturn]] void fail(const Node& n, const std::string& why) const {
    const std::string msg = n.describe() + ": cannot upgrade from opset " + std::to_string(from) + " to " +
                            std::to_string(to) + ": " + why;
    // The check pass vets every node first, so a failure while rewriting is a bug here.
    if (apply) throwInternal(msg + " (found only while rewriting)");
    throwInput(msg);
  }

  // ---- fresh names: unique across the whole model (subgraphs included) and in the graph `g`
  std::unordered_set<std::string> names;
  std::string freshName(const Graph& g, const std::string& base) {
    std::string n = base;
    for (uint64_t i = 1; names.count(n) || g.findValue(n); ++i) n = base + "_" + std::to_string(i);
    names.insert(n);
    return n;
  }

  // ---- element types of values without one, following type-preserving producers
  std::unordered_map<const Value*, DType> dtype_memo;
  DType dtypeOf(const Graph& graph, const Value* value) {
    std::vector<const Value*> path;
    const Graph* g = &graph;
    const Value* v = value;
    DType t = DType::kUndefined;
    while (v) {
      if (auto it = dtype_memo.find(v); it != dtype_memo.end()) { t = it->second; break; }
      path.push_back(v);
      if (v->dtype != DType::kUndefined) { t = v->dtype; break; }
      if (v->isConstant()) { t = v->initializer.dtype(); break; }
      if (v->kind() == Value::Kind::kOuterScope) {
        const Value* outer = nullptr;
        for (const Graph* p = g->parent; p && !outer; p = p->parent)
          if ((outer = p->findValue(v->name()))) g = p;
        if (!outer) break;
        v = outer;
        continue;
      }
      const Node* p = v->producer();
      if (!p || !isDefaultDomain(p->domain())) break;
      g = p->graph();
      const std::string& op = p->opType();
      const int out = v->producerOutputIndex();
      if (op == "Cast") { t = static_cast<DType>(p->attrInt("to", 0)); break; }
      if (op == "CastLike") { v = p->input(1); continue; }
      if (op == "Where") { v = p->input(1); continue; }
      if (op == "DequantizeLinear") { v = p->input(1); continue; }
      if (op == "Shape" || op == "Size" || op == "NonZero" || op == "ArgMax" || op == "ArgMin" ||
          (op == "TopK" && out == 1) || (op == "MaxPool" && out == 1)) {
        t = DType::kInt64;
        break;
      }
      if (op == "Equal" || op == "Less" || op == "Greater" || op == "LessOrEqual" || op == "GreaterOrEqual" ||
          op == "Not" || op == "And" || op == "Or" || op == "Xor" || op == "IsNaN" || op == "IsInf") {
        t = DType::kBool;
        break;
      }
      if (typePreservingOps().count(op) && (out == 0 || op == "Split")) { v = p->input(0); continue; }
      break;
    }
    for (const Value* pv : path) dtype_memo[pv] = t;
    return t;
  }

  // ---- is a value read by anything (node, graph output, or by name from a subgraph)?
  std::unordered_map<const Graph*, std::unordered_set<std::string>> subgraph_reads;
  bool isUsed(const Graph& g, const Value* v) {
    if (!v) return false;
    if (!v->uses().empty() || g.isGraphOutput(v)) return true;
    auto it = subgraph_reads.find(&g);
    if (it == subgraph_reads.end()) {
      std::unordered_set<std::string> reads;
      std::function<void(const Graph&)> collect = [&](const Graph& sg) {
        for (const Node* n : sg.nodes())
          for (const auto& [key, a] : n->attrs) {
            (void)key;
            std::vector<std::shared_ptr<Graph>> subs = a.graphs;
            if (a.g) subs.push_back(a.g);
            for (const auto& sub : subs) {
              for (const Node* sn : sub->nodes())
                for (const Value* in : sn->inputs())
                  if (in && in->kind() == Value::Kind::kOuterScope) reads.insert(in->name());
              for (const Value* out : sub->outputs())
                if (out->kind() == Value::Kind::kOuterScope) reads.insert(out->name());
              collect(*sub);
            }
          }
      };
      collect(g);
      it = subgraph_reads.emplace(&g, std::move(reads)).first;
    }
    return it->second.count(v->name()) != 0;
  }
};

// ---------------------------------------------------------------- graph editing helpers

std::string baseName(const Node& n) {
  if (!n.name.empty()) return n.name;
  if (n.output(0)) return n.output(0)->name();
  return n.opType();
}

Value* addConstant(Node& n, Upgrade& u, const std::string& suffix, Tensor t) {
  Graph& g = *n.graph();
  return g.addInitializer(u.freshName(g, baseName(n) + "_" + suffix), std::move(t));
}

Value* addInt64s(Node& n, Upgrade& u, const std::string& suffix, const std::vector<int64_t>& v) {
  return addConstant(n, u, suffix, Tensor::fromInt64s({static_cast<int64_t>(v.size())}, v));
}

// Adds a single-output node before `before`; returns its output.
Value* addNodeBefore(Node& before, Upgrade& u, const std::string& op, const std::vector<Value*>& inputs,
                     const std::string& suffix, std::map<std::string, Attribute> attrs = {}) {
  Graph& g = *before.graph();
  const std::string base = baseName(before) + "_" + suffix;
  const std::string out = u.freshName(g, base);
  Node* m = g.addNode(op, inputs, {out}, u.freshName(g, base), "", &before);
  m->attrs = std::move(attrs);
  return m->output(0);
}

Node* nodeAfter(const Node& n) {
  const std::vector<Node*> order = n.graph()->nodes();
  auto it = std::find(order.begin(), order.end(), &n);
  return (it == order.end() || it + 1 == order.end()) ? nullptr : *(it + 1);
}

// Replaces `n` by a node of type `op` at the same place, keeping name, attributes and doc string,
// with the given inputs and outputs (outputs of `n` not passed on are left without a producer).
// Arguments by value: callers pass n's own op type and input list, which die with n.
Node* rebuildNode(Node* n, std::string op, std::vector<Value*> inputs, std::vector<Value*> outputs) {
  Graph& g = *n->graph();
  Node* next = nodeAfter(*n);
  auto attrs = n->attrs;
  const std::string name = n->name, doc = n->doc_string, domain = n->domain();
  g.eraseNode(n);
  Node* m = g.addNodeWithOutputs(op, inputs, outputs, name, domain, next);
  m->attrs = std::move(attrs);
  m->doc_string = doc;
  return m;
}

// A scalar of the element type of `like` holding `v`, for Clip bounds and Pad values: a constant when
// the type is known, else CastLike of a float constant (opset >= 15). Check canMakeScalarLike first.
bool canMakeScalarLike(Upgrade& u, const Graph& g, const Value* like) {
  return !floatScalar(u.dtypeOf(g, like), 0).empty() || u.to >= 15;
}
Value* scalarLike(Node& n, Upgrade& u, Value* like, float v, const std::string& suffix) {
  Tensor t = floatScalar(u.dtypeOf(*n.graph(), like), v);
  if (!t.empty()) return addConstant(n, u, suffix, std::move(t));
  Value* f = addConstant(n, u, suffix, floatScalar(DType::kFloat32, v));
  return addNodeBefore(n, u, "CastLike", {f, like}, suffix + "_cast");
}

// ---------------------------------------------------------------- rewrites, one per op family

using RewriteFn = void (*)(Node&, Upgrade&);

// Attribute -> int64 input: Squeeze/Unsqueeze/ReduceSum (13), the other Reduce* (18). An absent or
// empty `axes` attribute means "all axes" before and after (noop_with_empty_axes defaults to 0).
void axesToInput(Node& n, Upgrade& u) {
  if (n.opType() == "Unsqueeze" && n.attrInts("axes").empty()) u.fail(n, "Unsqueeze without 'axes'");
  if (!u.apply || !n.hasAttr("axes")) return;
  const std::vector<int64_t> axes = n.attrInts("axes");
  n.attrs.erase("axes");
  if (!axes.empty()) n.setInput(1, addInt64s(n, u, "axes", axes));
}

// Split (13): `split` attribute -> input. Split (18): without `split`, num_outputs must be given.
void upgradeSplit(Node& n, Upgrade& u) {
  if (!u.apply) return;
  if (u.crosses(13) && n.hasAttr("split")) {
    const std::vector<int64_t> split = n.attrInts("split");
    n.attrs.erase("split");
    if (!split.empty()) n.setInput(1, addInt64s(n, u, "split", split));
  }
  if (u.crosses(18) && !n.input(1) && !n.hasAttr("num_outputs"))
    n.attrs["num_outputs"] = Attribute::ofInt(static_cast<int64_t>(n.numOutputs()));
}

// Slice (10): starts/ends/axes attributes -> inputs.
void upgradeSlice(Node& n, Upgrade& u) {
  if (!n.hasAttr("starts") || !n.hasAttr("ends")) u.fail(n, "Slice-1 without 'starts'/'ends'");
  if (!u.apply) return;
  n.setInput(1, addInt64s(n, u, "starts", n.attrInts("starts")));
  n.setInput(2, addInt64s(n, u, "ends", n.attrInts("ends")));
  if (n.hasAttr("axes")) n.setInput(3, addInt64s(n, u, "axes", n.attrInts("axes")));
  n.attrs.erase("starts");
  n.attrs.erase("ends");
  n.attrs.erase("axes");
}

// TopK (10): k attribute -> K input (int64 [1]).
void upgradeTopK(Node& n, Upgrade& u) {
  if (!n.hasAttr("k")) u.fail(n, "TopK-1 without 'k'");
  if (!u.apply) return;
  n.setInput(1, addInt64s(n, u, "k", {n.attrInt("k", 0)}));
  n.attrs.erase("k");
}

// Dropout: the mask became bool at 10 and `ratio` an input at 12. At inference Dropout is the identity,
// so it becomes Identity; a used mask keeps a Dropout, cast back to the pre-10 type. The inference mask
// is all-true from opset 12 (the spec); ONNX Runtime returns all-false for Dropout 7-11.
void upgradeDropout(Node& n, Upgrade& u) {
  Graph& g = *n.graph();
  Value* mask = n.output(1);
  const bool mask_used = u.isUsed(g, mask);
  const bool cast_mask = mask_used && u.from < 10;
  if (cast_mask && u.dtypeOf(g, n.input(0)) == DType::kUndefined && u.to < 15)
    u.fail(n, "its mask output is used and the input's element type is unknown (needed to cast the bool mask)");
  if (!u.apply) return;
  if (!mask_used) {
    Node* m = rebuildNode(&n, "Identity", {n.input(0)}, {n.output(0)});
    m->attrs.clear();
    if (mask) g.eraseValue(mask);
    return;
  }
  Value* new_mask = mask;
  if (cast_mask) new_mask = g.addValue(u.freshName(g, mask->name() + "_bool"));
  Node* m = rebuildNode(&n, "Dropout", {n.input(0)}, {n.output(0), new_mask});
  if (u.to >= 12) m->attrs.erase("ratio");
  if (!cast_mask) return;
  const DType t = u.dtypeOf(g, m->input(0));
  Node* after = nodeAfter(*m);
  if (t != DType::kUndefined) {
    Node* c = g.addNodeWithOutputs("Cast", {new_mask}, {mask}, u.freshName(g, baseName(*m) + "_mask_cast"), "", after);
    c->attrs["to"] = Attribute::ofInt(static_cast<int64_t>(t));
  } else {
    g.addNodeWithOutputs("CastLike", {new_mask, m->input(0)}, {mask}, u.freshName(g, baseName(*m) + "_mask_cast"), "",
                         after);
  }
}

// Clip (11): min/max attributes -> optional inputs of the input's type (absent = no bound).
void upgradeClip(Node& n, Upgrade& u) {
  if ((n.hasAttr("min") || n.hasAttr("max")) && !canMakeScalarLike(u, *n.graph(), n.input(0)))
    u.fail(n, "the input's element type is unknown (needed for the min/max inputs; CastLike needs opset 15)");
  if (!u.apply) return;
  if (n.hasAttr("min")) n.setInput(1, scalarLike(n, u, n.input(0), n.attrFloat("min", 0), "min"));
  if (n.hasAttr("max")) n.setInput(2, scalarLike(n, u, n.input(0), n.attrFloat("max", 0), "max"));
  n.attrs.erase("min");
  n.attrs.erase("max");
}

// Pad (11): pads/value attributes -> pads (int64) and constant_value inputs.
void upgradePad(Node& n, Upgrade& u) {
  if (!n.hasAttr("pads")) u.fail(n, "Pad-2 without 'pads'");
  const bool needs_value = n.attrString("mode", "constant") == "constant" && n.attrFloat("value", 0) != 0;
  if (needs_value && !canMakeScalarLike(u, *n.graph(), n.input(0)))
    u.fail(n, "the input's element type is unknown (needed for the constant_value input; CastLike needs opset 15)");
  if (!u.apply) return;
  n.setInput(1, addInt64s(n, u, "pads", n.attrInts("pads")));
  if (needs_value) n.setInput(2, scalarLike(n, u, n.input(0), n.attrFloat("value", 0), "value"));
  n.attrs.erase("pads");
  n.attrs.erase("value");
}

// Before opset 11, nearest resizing picked floor(x / scale) when upsampling and ceil(x / scale) when
// downsampling a dimension (asymmetric coordinates; ONNX Runtime's rule). One nearest_mode must
// cover all dimensions; dimensions with scale 1 map exactly either way.
std::string legacyNearestMode(const std::vector<float>& scales, std::string* why) {
  bool up = false, down = false;
  for (float s : scales) {
    if (s > 1) up = true;
    if (s < 1) down = true;
  }
  if (up && down) {
    *why = "scales " + joinFloats(scales) + " mix up- and down-sampling, which no single nearest_mode reproduces";
    return "";
  }
  return down ? "ceil" : "floor";
}

// Constant scales of an Upsample / Resize-10 node (attribute for Upsample-7); false when dynamic.
bool legacyScales(const Node& n, std::vector<float>* scales) {
  if (n.hasAttr("scales")) {
    *scales = n.attrs.at("scales").floats;
    return true;
  }
  const Tensor* t = Graph::constantOf(n.input(1));
  if (!t) return false;
  *scales = t->toFloats();
  return true;
}

// Checks shared by Upsample and Resize-10; returns the new mode and nearest_mode ("" for linear).
void checkLegacyResize(Node& n, Upgrade& u, std::string* mode, std::string* nearest_mode) {
  *mode = n.attrString("mode", "nearest");
  if (*mode == "bilinear") *mode = "linear";
  if (*mode != "nearest" && *mode != "linear") u.fail(n, "unknown mode '" + *mode + "'");
  nearest_mode->clear();
  if (*mode != "nearest") return;
  std::vector<float> scales;
  if (!legacyScales(n, &scales)) u.fail(n, "mode=nearest needs constant scales to choose the equivalent nearest_mode");
  std::string why;
  *nearest_mode = legacyNearestMode(scales, &why);
  if (nearest_mode->empty()) u.fail(n, why);
}

// Resize-10 form (X, scales) -> Resize-11+ form (X, roi, scales) with the old coordinate rule.
void setLegacyResizeForm(Node& n, Upgrade& u, Value* scales, const std::string& mode, const std::string& nearest) {
  // roi is a required input at 11/12 (ignored unless tf_crop_and_resize); optional from 13.
  Value* roi = u.to >= 13 ? nullptr : addConstant(n, u, "roi", Tensor(DType::kFloat32, {0}));
  n.setInput(1, roi);
  n.setInput(2, scales);
  n.attrs["mode"] = Attribute::ofString(mode);
  n.attrs["coordinate_transformation_mode"] = Attribute::ofString("asymmetric");
  if (!nearest.empty()) n.attrs["nearest_mode"] = Attribute::ofString(nearest);
}

// Upsample (deprecated at 10) -> Resize.
void upgradeUpsample(Node& n, Upgrade& u) {
  std::string mode, nearest;
  checkLegacyResize(n, u, &mode, &nearest);
  if (!u.apply) return;
  Value* scales = n.hasAttr("scales") ? addConstant(n, u, "scales", Tensor::fromFloats(
                                                         {static_cast<int64_t>(n.attrs.at("scales").floats.size())},
                                                         n.attrs.at("scales").floats))
                                      : n.input(1);
  Node* r = rebuildNode(&n, "Resize", {n.input(0), scales}, {n.output(0)});
  r->attrs.clear();
  if (u.to == 10) {
    r->attrs["mode"] = Attribute::ofString(mode);
    return;
  }
  setLegacyResizeForm(*r, u, scales, mode, nearest);
}

// Resize: 10 -> 11 gains roi and coordinate modes; 13 drops "tf_half_pixel_for_nn".
void upgradeResize(Node& n, Upgrade& u) {
  std::string mode, nearest;
  if (u.crosses(11)) checkLegacyResize(n, u, &mode, &nearest);
  // tf_half_pixel_for_nn: x_orig = (x + 0.5) / s. With z = x_orig - 0.5 (half_pixel):
  // floor(x_orig) == round_half_up(z) and round_half_down(x_orig) == ceil(z).
  const bool tf_nn = u.crosses(13) && n.attrString("coordinate_transformation_mode", "") == "tf_half_pixel_for_nn";
  std::string tf_nearest;
  if (tf_nn) {
    if (n.attrString("mode", "nearest") != "nearest")
      u.fail(n, "coordinate_transformation_mode=tf_half_pixel_for_nn with mode=" + n.attrString("mode", "") +
                    " has no equivalent at opset 13");
    const std::string nm = n.attrString("nearest_mode", "round_prefer_floor");
    if (nm == "floor") tf_nearest = "round_prefer_ceil";
    else if (nm == "round_prefer_floor") tf_nearest = "ceil";
    else
      u.fail(n, "coordinate_transformation_mode=tf_half_pixel_for_nn with nearest_mode=" + nm +
                    " has no equivalent at opset 13");
  }
  if (!u.apply) return;
  if (u.crosses(11)) setLegacyResizeForm(n, u, n.input(1), mode, nearest);
  if (tf_nn) {
    n.attrs["coordinate_transformation_mode"] = Attribute::ofString("half_pixel");
    n.attrs["nearest_mode"] = Attribute::ofString(tf_nearest);
  }
}

// Scatter (deprecated at 11) -> ScatterElements (same semantics).
void upgradeScatter(Node& n, Upgrade& u) {
  if (!u.apply) return;
  std::vector<Value*> ins(n.inputs()), outs(n.outputs());
  rebuildNode(&n, "ScatterElements", ins, outs);
}

// Softmax / LogSoftmax / Hardmax (13): before 13 the input is coerced to 2-D at `axis` (default 1)
// and normalised over the flattened trailing dims; from 13 over the one `axis` (default -1).
void upgradeSoftmaxFamily(Node& n, Upgrade& u) {
  if (!u.apply) return;
  const int64_t axis = n.attrInt("axis", 1);
  const Value* x = n.input(0);
  const int64_t rank = x->shape ? static_cast<int64_t>(x->shape->size()) : -1;
  if (axis == -1 || (rank > 0 && axis == rank - 1)) {
    n.attrs["axis"] = Attribute::ofInt(axis);  // the last axis: same meaning, explicit
    return;
  }
  // Y = Reshape(Op(Flatten(X, axis), axis=-1), Shape(X))
  Graph& g = *n.graph();
  Value* flat = addNodeBefore(n, u, "Flatten", {n.input(0)}, "flatten", {{"axis", Attribute::ofInt(axis)}});
  Value* shape = addNodeBefore(n, u, "Shape", {n.input(0)}, "shape");
  Value* y = n.output(0);
  Value* y2d = g.addValue(u.freshName(g, y->name() + "_2d"));
  Node* m = rebuildNode(&n, n.opType(), {flat}, {y2d});
  m->attrs["axis"] = Attribute::ofInt(-1);
  g.addNodeWithOutputs("Reshape", {y2d, shape}, {y}, u.freshName(g, baseName(*m) + "_reshape"), "", nodeAfter(*m));
}

// BatchNormalization: `spatial` removed at 9 (1 was the only value with today's meaning). Before 14
// the number of outputs chose the mode: Y alone is inference, Y + mean, var, saved_mean, saved_var is
// training (batch statistics; ONNX Runtime agrees). From 14 that would be training_mode=1, which ONNX
// Runtime mishandles (omitted running outputs crash it; present ones are written in place into the
// shared mean / var initializers), so a training-mode node is an error rather than a silent risk.
void upgradeBatchNorm(Node& n, Upgrade& u) {
  if (u.crosses(9) && n.attrInt("spatial", 1) != 1)
    u.fail(n, "spatial=0 (per-activation statistics) has no equivalent from opset 9");
  if (u.crosses(14))
    for (size_t i = 1; i < n.numOutputs(); ++i)
      if (n.output(i))
        u.fail(n, "its outputs beyond Y (here '" + n.output(i)->name() +
                      "') put it in training mode, which is not carried to training_mode=1; "
                      "remove them for inference");
  if (!u.apply) return;
  if (u.crosses(9)) n.attrs.erase("spatial");
}

// RoiAlign (16): the default coordinate_transformation_mode became half_pixel; the old behaviour
// is output_half_pixel.
void upgradeRoiAlign(Node& n, Upgrade& u) {
  if (!u.apply) return;
  if (!n.hasAttr("coordinate_transformation_mode"))
    n.attrs["coordinate_transformation_mode"] = Attribute::ofString("output_half_pixel");
}

// GridSample (20): modes renamed.
void upgradeGridSample(Node& n, Upgrade& u) {
  if (!u.apply) return;
  const std::string mode = n.attrString("mode", "bilinear");
  if (mode == "bilinear") n.attrs["mode"] = Attribute::ofString("linear");
  if (mode == "bicubic") n.attrs["mode"] = Attribute::ofString("cubic");
}

// DFT (20): axis attribute (default 1) -> input 2 (a scalar; its default became -2).
void upgradeDFT(Node& n, Upgrade& u) {
  if (!u.apply) return;
  const int64_t axis = n.attrInt("axis", 1);
  n.attrs.erase("axis");
  if (n.numInputs() < 2) n.setInput(1, nullptr);
  n.setInput(2, addConstant(n, u, "axis", Tensor::fromInt64s({}, {axis})));
}

// GroupNormalization (21): scale and bias per channel instead of per group. Constants are repeated
// (numpy.repeat) when the channel count is known; otherwise Reshape/Expand do it at run time.
void upgradeGroupNorm(Node& n, Upgrade& u) {
  Graph& g = *n.graph();
  const int64_t groups = n.attrInt("num_groups", 0);
  if (groups <= 0) u.fail(n, "missing or invalid num_groups");
  int64_t channels = -1;
  const Value* x = n.input(0);
  if (x->shape && x->shape->size() >= 2 && (*x->shape)[1].known()) channels = (*x->shape)[1].value;
  if (channels > 0 && channels % groups != 0)
    u.fail(n, "channels " + std::to_string(channels) + " not divisible by num_groups " + std::to_string(groups));
  for (int i = 1; i <= 2; ++i) {
    const Tensor* t = Graph::constantOf(n.input(static_cast<size_t>(i)));
    if (t && t->numel() != groups)
      u.fail(n, std::string(i == 1 ? "scale" : "bias") + " has " + std::to_string(t->numel()) +
                    " elements, expected num_groups=" + std::to_string(groups));
    if (t && ir::dtypeBits(t->dtype()) % 8 != 0) u.fail(n, "sub-byte scale/bias type");
  }
  if (!u.apply) return;
  const DType xt = u.dtypeOf(g, n.input(0));
  // Opset 18 computed in X's type; 21's stash_type defaults to float32.
  if (xt != DType::kUndefined && xt != DType::kFloat32 && !n.hasAttr("stash_type"))
    n.attrs["stash_type"] = Attribute::ofInt(static_cast<int64_t>(xt));
  if (channels == groups) return;
  Value* per_channel = nullptr;  // [1, C/G], built once for the run-time path
  for (size_t i = 1; i <= 2; ++i) {
    const Tensor* t = Graph::constantOf(n.input(i));
    const char* what = i == 1 ? "scale" : "bias";
    if (t && channels > 0) {
      const int64_t rep = channels / groups;
      const size_t esz = static_cast<size_t>(ir::dtypeBits(t->dtype()) / 8);
      Tensor out(t->dtype(), {channels});
      auto* dst = static_cast<uint8_t*>(out.mutableData());
      const auto* src = static_cast<const uint8_t*>(t->data());
      for (int64_t c = 0; c < channels; ++c)
        std::memcpy(dst + static_cast<size_t>(c) * esz, src + static_cast<size_t>(c / rep) * esz, esz);
      n.setInput(i, addConstant(n, u, what, std::move(out)));
      continue;
    }
    if (!per_channel) {
      Value* c = addNodeBefore(n, u, "Shape", {n.input(0)}, "channels",
                               {{"start", Attribute::ofInt(1)}, {"end", Attribute::ofInt(2)}});
      Value* cg = addNodeBefore(n, u, "Div", {c, addInt64s(n, u, "num_groups", {groups})}, "group_size");
      per_channel = addNodeBefore(n, u, "Concat", {addInt64s(n, u, "one", {1}), cg}, "expand_shape",
                                  {{"axis", Attribute::ofInt(0)}});
    }
    Value* col = addNodeBefore(n, u, "Reshape", {n.input(i), addInt64s(n, u, "col_shape", {-1, 1})},
                               std::string(what) + "_col");
    Value* rep = addNodeBefore(n, u, "Expand", {col, per_channel}, std::string(what) + "_expand");
    n.setInput(i, addNodeBefore(n, u, "Reshape", {rep, addInt64s(n, u, "flat_shape", {-1})},
                                std::string(what) + "_per_channel"));
  }
}

// Scan-8 had a batch axis and sequence_lens; Scan-9 is a different operator.
void failScan8(Node& n, Upgrade& u) { u.fail(n, "Scan-8 (batched, with sequence_lens) has no rewrite to Scan-9"); }

// Experimental ops of opsets 1-9, removed from the default domain at 10.
void failExperimental(Node& n, Upgrade& u) { u.fail(n, "experimental op removed from the default domain at opset 10"); }

// ---------------------------------------------------------------- the table

struct Rule {
  const char* op;
  std::vector<int64_t> versions;  // opsets at which the op changed (applies when one is crossed)
  RewriteFn fn;
  bool deprecated = false;        // deprecated at versions[0]: rewritten whenever target >= it
};

const std::vector<Rule>& rules() {
  static const std::vector<Rule> table = {
      {"BatchNormalization", {9, 14}, upgradeBatchNorm},
      {"Scan", {9}, failScan8},
      {"Upsample", {10}, upgradeUpsample, true},
      {"Slice", {10}, upgradeSlice},
      {"TopK", {10}, upgradeTopK},
      {"Dropout", {10, 12}, upgradeDropout},
      {"Clip", {11}, upgradeClip},
      {"Pad", {11}, upgradePad},
      {"Resize", {11, 13}, upgradeResize},
      {"Scatter", {11}, upgradeScatter, true},
      {"Softmax", {13}, upgradeSoftmaxFamily},
      {"LogSoftmax", {13}, upgradeSoftmaxFamily},
      {"Hardmax", {13}, upgradeSoftmaxFamily},
      {"Squeeze", {13}, axesToInput},
      {"Unsqueeze", {13}, axesToInput},
      {"ReduceSum", {13}, axesToInput},
      {"Split", {13, 18}, upgradeSplit},
      {"RoiAlign", {16}, upgradeRoiAlign},
      {"ReduceMean", {18}, axesToInput},
      {"ReduceMax", {18}, axesToInput},
      {"ReduceMin", {18}, axesToInput},
      {"ReduceProd", {18}, axesToInput},
      {"ReduceL1", {18}, axesToInput},
      {"ReduceL2", {18}, axesToInput},
      {"ReduceLogSum", {18}, axesToInput},
      {"ReduceLogSumExp", {18}, axesToInput},
      {"ReduceSumSquare", {18}, axesToInput},
      {"GridSample", {20}, upgradeGridSample},
      {"DFT", {20}, upgradeDFT},
      {"GroupNormalization", {21}, upgradeGroupNorm},
      {"ATen", {10}, failExperimental},
      {"Affine", {10}, failExperimental},
      {"ConstantFill", {10}, failExperimental},
      {"Crop", {10}, failExperimental},
      {"DynamicSlice", {10}, failExperimental},
      {"GRUUnit", {10}, failExperimental},
      {"GivenTensorFill", {10}, failExperimental},
      {"ImageScaler", {10}, failExperimental},
      {"ParametricSoftplus", {10}, failExperimental},
      {"Scale", {10}, failExperimental},
      {"ScaledTanh", {10}, failExperimental},
  };
  return table;
}

const Rule* ruleFor(const Node& n, const Upgrade& u) {
  if (!isDefaultDomain(n.domain())) return nullptr;
  for (const Rule& r : rules()) {
    if (n.opType() != r.op) continue;
    if (r.deprecated) return u.to >= r.versions[0] ? &r : nullptr;
    for (int64_t v : r.versions)
      if (u.crosses(v)) return &r;
    return nullptr;
  }
  return nullptr;
}

void upgradeGraph(Graph& g, Upgrade& u) {
  for (Node* n : g.nodes()) {  // a snapshot: nodes added by rewrites are not visited
    for (auto& [key, a] : n->attrs) {
      (void)key;
      if (a.g) upgradeGraph(*a.g, u);
      for (auto& sub : a.graphs) upgradeGraph(*sub, u);
    }
    if (const Rule* r = ruleFor(*n, u)) r->fn(*n, u);
  }
}

void collectNames(const Graph& g, std::unordered_set<std::string>& names) {
  for (const Value* v : g.inputs()) names.insert(v->name());
  for (const Value* v : g.initializers()) names.insert(v->name());
  for (const Value* v : g.outputs()) names.insert(v->name());
  for (const Node* n : g.nodes()) {
    names.insert(n->name);
    for (const Value* v : n->inputs())
      if (v) names.insert(v->name());
    for (const Value* v : n->outputs())
      if (v) names.insert(v->name());
    for (const auto& [key, a] : n->attrs) {
      (void)key;
      if (a.g) collectNames(*a.g, names);
      for (const auto& sub : a.graphs) collectNames(*sub, names);
    }
  }
}

bool hasDefaultDomainNodes(const Graph& g) {
  for (const Node* n : g.nodes()) {
    if (isDefaultDomain(n->domain())) return true;
    for (const auto& [key, a] : n->attrs) {
      (void)key;
      if (a.g && hasDefaultDomainNodes(*a.g)) return true;
      for (const auto& sub : a.graphs)
        if (hasDefaultDomainNodes(*sub)) return true;
    }
  }
  return false;
}

// Model-local functions carry their own opset imports and are kept as serialized protos; their
// bodies cannot be rewritten here, so one importing another default-domain opset blocks the upgrade.
void checkFunctions(const Model& m, int64_t target) {
  if (m.function_summaries.size() != m.functions_opaque.size())
    throwInternal("model-local functions without summaries (the ONNX reader fills them)");
  for (const auto& f : m.function_summaries) {
    for (const auto& o : f.opset_imports)
      if (isDefaultDomain(o.domain) && o.version != target)
        throwInput("model-local function '" + f.name + "' imports ai.onnx opset " + std::to_string(o.version) +
                   ": cannot upgrade the model to opset " + std::to_string(target) +
                   " (function bodies are not rewritten)");
  }
}

}  // namespace

int64_t minIrVersionForOpset(int64_t opset) {
  if (opset >= 21) return 10;
  if (opset >= 19) return 9;
  if (opset >= 18) return 8;
  if (opset >= 12) return 7;
  if (opset == 11) return 6;
  if (opset == 10) return 5;
  if (opset == 9) return 4;
  return 3;
}

void upgradeOpset(ir::Model& model, int64_t target_version) {
  if (target_version < kMinUpgradeTarget || target_version > kMaxUpgradeTarget)
    throwUsage("opset upgrade: target opset " + std::to_string(target_version) + " is outside the supported range " +
               std::to_string(kMinUpgradeTarget) + ".." + std::to_string(kMaxUpgradeTarget));
  const int64_t from = model.opsetVersion();
  if (from >= target_version) return;
  if (from == 0 && hasDefaultDomainNodes(*model.graph))
    throwInput("opset upgrade: the model uses ai.onnx operators but imports no ai.onnx opset");
  if (from != 0 && from < kMinSourceOpset)
    throwInput("opset upgrade: the model's ai.onnx opset " + std::to_string(from) + " is older than " +
               std::to_string(kMinSourceOpset) + ", the oldest this upgrade handles");
  checkFunctions(model, target_version);

  Upgrade u;
  u.from = from;
  u.to = target_version;
  if (from != 0) {
    u.apply = false;
    upgradeGraph(*model.graph, u);  // throws before anything is modified
    collectNames(*model.graph, u.names);
    u.apply = true;
    upgradeGraph(*model.graph, u);
  }
  model.setOpsetVersion("", target_version);
  model.ir_version = std::max(model.ir_version, minIrVersionForOpset(target_version));
}

}  // namespace ptq::legalize
