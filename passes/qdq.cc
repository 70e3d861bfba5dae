#include "passes/qdq.h"

#include <algorithm>
#include <map>
#include <set>

#include <spdlog/spdlog.h>

#include "lib/calib/calibration.h"
#include "lib/quant/observer.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"
#include "passes/bias_quant.h"

namespace ptq::passes {

namespace {

ir::DType activationType(int bits, bool symmetric) {
  if (bits == 4) return symmetric ? ir::DType::kInt4 : ir::DType::kUInt4;
  if (bits == 16) return symmetric ? ir::DType::kInt16 : ir::DType::kUInt16;
  return symmetric ? ir::DType::kInt8 : ir::DType::kUInt8;
}

// A scalar zero point of `dtype` holding `zero` (a code value on that grid).
ir::Tensor zeroPointTensor(ir::DType dtype, int32_t zero) {
  ir::Tensor t(dtype, {});
  switch (dtype) {
    case ir::DType::kInt16: *t.mutableData<int16_t>() = static_cast<int16_t>(zero); break;
    case ir::DType::kUInt16: *t.mutableData<uint16_t>() = static_cast<uint16_t>(zero); break;
    case ir::DType::kInt4: case ir::DType::kUInt4: *t.mutableData<uint8_t>() = static_cast<uint8_t>(zero & 0xf); break;
    default: *t.mutableData<uint8_t>() = static_cast<uint8_t>(zero & 0xff); break;
  }
  return t;
}

// Whether `v` reaches a graph output only through one bias Add (MatMul → Add(b) → logits, e.g. after
// fold-norms gave an LM head a bias): like a graph output itself it stays float, since an 8-bit grid
// before the bias would round the very values the user reads.
bool onlyBiasedIntoGraphOutput(const ir::Graph& g, const ir::Value* v) {
  if (!v || v->uses().size() != 1 || g.isGraphOutput(v)) return false;
  const ir::Node* add = v->uses()[0].node;
  if (add->opType() != "Add" || !add->domain().empty() || add->numInputs() != 2) return false;
  const ir::Value* other = add->input(0) == v ? add->input(1) : add->input(0);
  return other && other->isConstant() && g.isGraphOutput(add->output(0));
}

// The main-graph nodes of the plan's layers whose activations are quantized.
std::set<const ir::Node*> activationLayers(pipeline::QuantPlan& plan, const ir::Graph& g) {
  std::set<const ir::Node*> layers;
  // Every layer marked, skipped weights included: bit-allocation may keep a weight float and still
  // quantize its activations.
  for (pipeline::LayerPlan& l : plan.layers())
    if (l.quantize_activations)
      for (ir::Node* n : l.readers)
        if (n->graph() == &g) layers.insert(n);
  return layers;
}

// Per-layer activation widths a pass decided (LayerPlan::activation_bits): for each input and output
// value of such a layer, the widest choice of the layers it connects, or 32 (stay float) when one of
// them keeps its activations float. Values no such layer touches are absent (the config's bits).
std::map<const ir::Value*, int> layerActivationWidths(pipeline::QuantPlan& plan, const ir::Graph& g, int config_bits) {
  std::map<const ir::Value*, int> w;
  for (pipeline::LayerPlan& l : plan.layers()) {
    if (l.activation_bits == 0) continue;
    const int bits = l.activation_bits;
    for (ir::Node* n : l.readers) {
      if (n->graph() != &g) continue;
      for (const ir::Value* v : {static_cast<const ir::Value*>(n->input(0)), static_cast<const ir::Value*>(n->output(0))}) {
        if (!v) continue;
        auto it = w.find(v);
        if (it == w.end()) w[v] = bits;
        else if (it->second != 32) it->second = bits == 32 ? 32 : std::max(it->second, bits);
      }
    }
  }
  // A value also read or written by a layer at the config's width takes the wider of the two.
  for (const pipeline::LayerPlan& l : plan.layers()) {
    if (l.activation_bits != 0 || !l.quantize_activations) continue;
    for (ir::Node* n : l.readers)
      for (const ir::Value* v : {static_cast<const ir::Value*>(n->input(0)), static_cast<const ir::Value*>(n->output(0))})
        if (auto it = w.find(v); v && it != w.end() && it->second != 32) it->second = std::max(it->second, config_bits);
  }
  return w;
}

class QdqPass final : public pipeline::Pass {
 public:
  explicit QdqPass(bool observe_quantized) : observe_quantized_(observe_quantized) {}
  std::string name() const override { return "qdq"; }

  pipeline::PassResult run(ir::Model& model, pipeline::PassContext& ctx) override {
    const pipeline::ActivationSettings& a = ctx.config.activations;
    if (a.dynamic) return markDynamic(model, ctx);
    if (!ctx.calibration) throwInternal("pass 'qdq' runs without calibration data (PassManager::checkPipeline lets it)");
    ir::Graph& g = *model.graph;

    // The activations to observe: inputs and outputs of the selected layers, in graph order.
    std::vector<ir::Value*> values;
    std::set<const ir::Value*> seen;
    const std::map<const ir::Value*, int> widths = layerActivationWidths(ctx.plan, g, a.bits);
    auto add = [&](ir::Value* v) {
      if (!v || v->isConstant() || !seen.insert(v).second) return;
      if (auto it = widths.find(v); it != widths.end() && it->second == 32) return;  // a layer kept it float
      values.push_back(v);
    };
    auto listed = [&](const std::string& op) { return std::find(a.op_types.begin(), a.op_types.end(), op) != a.op_types.end(); };
    const std::set<const ir::Node*> layers = activationLayers(ctx.plan, g);
    for (ir::Node* n : g.nodes()) {
      const bool weight_op = n->opType() == "MatMul" || n->opType() == "Gemm" || n->opType() == "Conv";
      if (weight_op && layers.count(n)) {
        add(n->input(0));
        if (!onlyBiasedIntoGraphOutput(g, n->output(0))) add(n->output(0));
      } else if (!weight_op && n->domain().empty() && listed(n->opType())) {
        for (ir::Value* in : n->inputs()) add(in);
        for (ir::Value* out : n->outputs()) add(out);
      }
    }

    quant::ObserverOptions oo;
    oo.percentile = a.percentile;
    oo.momentum = a.momentum;
    oo.bins = a.bins;
    runtime::SessionOptions so;
    so.threads = ctx.threads;
    so.simulate_quantization = observe_quantized_;
    runtime::Session session(model, so);
    std::vector<std::unique_ptr<quant::ActivationObserver>> observers;
    std::vector<ir::Value*> observed;
    for (ir::Value* v : values) {
      if (session.valueType(v->name()) != ir::DType::kFloat32) continue;  // only float activations
      observers.push_back(quant::makeObserver(a.observer, oo));
      observed.push_back(v);
      quant::ActivationObserver* obs = observers.back().get();
      session.tap(v->name(), [obs](const std::string& name, const ir::Tensor& t) {
        try {
          obs->observe(t.data<float>(), t.numel());
        } catch (const Error& e) {
          throw e.withContext("activation '" + name + "'");
        }
      });
    }
    const int64_t batches = ctx.calibration->numBatches();
    spdlog::info("qdq: calibrating {} activations with '{}' on {}", observed.size(), a.observer, ctx.calibration->describe());
    for (int64_t b = 0; b < batches; ++b) {
      session.run(ctx.calibration->batch(b));
      if ((b + 1) % 8 == 0 || b + 1 == batches) spdlog::info("qdq: batch {}/{}", b + 1, batches);
    }

    int64_t wider = 0;
    for (size_t i = 0; i < observed.size(); ++i) {
      quant::GridSpec grid;
      auto w = widths.find(observed[i]);
      grid.bits = w == widths.end() ? a.bits : w->second;  // the layers' choice (the widest of them)
      wider += grid.bits != a.bits;
      grid.symmetric = a.symmetric;
      grid.is_signed = a.symmetric;
      const quant::RangeResult r = observers[i]->compute(grid);
      observed[i]->act_quant = staticActivationQuant(r.params, grid.bits, a.symmetric);
      if (quant::isClampedScale(r.params.scale))
        ctx.warnings.push_back("qdq: activation '" + observed[i]->name() + "': range [" + std::to_string(r.lo) + ", " +
                               std::to_string(r.hi) + "] would need a denormal scale: clamped to 2^-126");
      spdlog::debug("qdq: {} range [{}, {}] scale {} zero {}", observed[i]->name(), r.lo, r.hi, r.params.scale, r.params.zero);
    }
    const int64_t biases = annotateBiases(g);
    pipeline::PassResult result;
    result.changed = !observed.empty() || biases > 0;
    result.counters["int32_biases"] = biases;
    result.counters["activations_quantized"] = static_cast<int64_t>(observed.size());
    result.counters["activations_not_at_config_bits"] = wider;
    result.counters["calibration_batches"] = batches;
    result.counters["calibration_samples"] = ctx.calibration->samples();
    return result;
  }

 private:
  // Dynamic mode: the inputs of the plan's layers get a dynamic ActivationQuant (no scale: computed at
  // run time); outputs are not marked — each reader quantizes its own input. No biases become int32
  // (their scale would depend on the run-time scale).
  pipeline::PassResult markDynamic(ir::Model& model, pipeline::PassContext& ctx) {
    const pipeline::ActivationSettings& a = ctx.config.activations;
    ir::Graph& g = *model.graph;
    const std::set<const ir::Node*> layers = activationLayers(ctx.plan, g);
    runtime::SessionOptions so;
    so.threads = ctx.threads;
    const runtime::Session session(model, so);  // for the value types only
    int64_t marked = 0;
    for (ir::Node* n : g.nodes()) {
      if (!layers.count(n) || (n->opType() != "MatMul" && n->opType() != "Gemm" && n->opType() != "Conv")) continue;
      ir::Value* x = n->input(0);
      if (!x || x->isConstant() || x->act_quant || session.valueType(x->name()) != ir::DType::kFloat32) continue;
      auto q = std::make_shared<ir::ActivationQuant>();
      q->dtype = activationType(a.bits, a.symmetric);
      q->dynamic = true;
      q->per_token = a.granularity == pipeline::ActivationGranularity::kToken;
      x->act_quant = q;
      ++marked;
    }
    spdlog::info("qdq: {} activations quantized dynamically ({}-bit {}, per {})", marked, a.bits,
                 a.symmetric ? "symmetric" : "asymmetric", pipeline::activationGranularityName(a.granularity));
    pipeline::PassResult result;
    result.changed = marked > 0;
    result.counters["activations_quantized"] = marked;
    result.counters["int32_biases"] = 0;
    return result;
  }

  bool observe_quantized_;
};

}  // namespace

std::shared_ptr<ir::ActivationQuant> staticActivationQuant(const quant::GroupParams& params, int bits, bool symmetric) {
  const ir::DType dtype = activationType(bits, symmetric);
  auto q = std::make_shared<ir::ActivationQuant>();
  q->dtype = dtype;
  q->axis = -1;
  q->scale = ir::Tensor::fromFloats({}, {params.scale});
  q->zero_point = zeroPointTensor(dtype, params.zero);
  return q;
}

pipeline::PassInfo qdqPassInfo() {
  pipeline::PassInfo info;
  info.name = "qdq";
  info.summary =
      "Activation quantization: runs the model as it will be written on the calibration data, observes the inputs "
      "and outputs of the plan's layers (and of the other ops in activations.op_types) with the config's "
      "\"activations\" observer, marks them for QuantizeLinear/DequantizeLinear pairs, and decides int32 biases. "
      "With activations.dynamic: marks the layers' inputs for run-time (per-tensor or per-token) quantization "
      "instead, without calibration data.";
  info.options = {pipeline::OptionSpec::choice(
      "observe", "quantized", {"quantized", "float"},
      "the model the ranges are measured on: the weight-quantized model as written, or the float one")};
  info.traits.needs_calibration = true;
  info.traits.calibration_only_if_static = true;  // activations.dynamic: scales computed at run time
  info.traits.reads_activations = true;
  info.traits.after_weight_quantization = true;
  info.create = [](const pipeline::OptionValues& v) -> std::unique_ptr<pipeline::Pass> {
    return std::make_unique<QdqPass>(v.text("observe") == "quantized");
  };
  return info;
}

}  // namespace ptq::passes
