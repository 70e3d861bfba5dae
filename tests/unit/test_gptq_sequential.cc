// gptq's sequential processing: layer k's Hessian is computed from the outputs of the already-quantized
// layers before it (it equals the Hessian measured independently on the model with layers < k
// quantized as gptq left them, and differs from the float model's), and the forward work is a constant
// number of model passes whatever the depth (O(L), not O(L^2)). Also: sequential off takes the float
// Hessians, and the pass obeys per-layer bits a plan carries.
#include <catch2/catch.hpp>

#include <cmath>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/calibration.h"
#include "lib/runtime/session.h"
#include "support/pipeline.h"
#include "support/random_tensor.h"

using namespace ptq;

namespace {

constexpr int64_t kDim = 24;

// x -> [MatMul(w_i) -> Tanh] x L -> y, with a residual Add every layer (the stream the blocks cut at).
ir::Model chainModel(int layers) {
  std::string inits, body;
  std::string zeros = "0";
  for (int i = 1; i < kDim * kDim; ++i) zeros += ", 0";
  std::string prev = "x";
  for (int i = 0; i < layers; ++i) {
    const std::string s = std::to_string(i);
    inits += std::string(i ? ", " : "") + "float[" + std::to_string(kDim) + "," + std::to_string(kDim) + "] w" + s + " = {" + zeros + "}";
    const std::string out = i + 1 == layers ? "y" : "r" + s;
    body += "h" + s + " = MatMul(" + prev + ", w" + s + ") t" + s + " = Tanh(h" + s + ") " + out + " = Add(" + prev + ", t" + s + ") ";
    prev = out;
  }
  const std::string text = R"(<ir_version: 8, opset_import: ["" : 17]>
    g (float[N,)" + std::to_string(kDim) + "] x) => (float[N," + std::to_string(kDim) + "] y) <" + inits + "> {" + body + "}";
  ir::Model m = onnx_io::parseModelText(text);
  for (int i = 0; i < layers; ++i) {
    ir::Tensor w = test::randomTensor({kDim, kDim}, 40 + i);
    std::vector<float> v = w.toFloats();
    for (float& f : v) f *= 0.4f;
    m.graph->findValue("w" + std::to_string(i))->initializer = ir::Tensor::fromFloats({kDim, kDim}, v);
  }
  return m;
}

// H = (2/N) sum x x^T of value `name` over the calibration batches, in double, from plain loops.
std::vector<double> measuredHessian(const ir::Model& m, const calib::CalibrationSet& set, const std::string& name,
                                    bool quantized) {
  runtime::SessionOptions so;
  so.simulate_quantization = quantized;
  runtime::Session s(m, so);
  std::vector<double> h(kDim * kDim, 0.0);
  int64_t rows = 0;
  for (int64_t b = 0; b < set.numBatches(); ++b) {
    const ir::Tensor x = s.run(set.batch(b), {name}).at(name);
    const std::vector<float> v = x.toFloats();
    const int64_t n = x.numel() / kDim;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < kDim; ++i)
        for (int64_t j = 0; j < kDim; ++j) h[i * kDim + j] += static_cast<double>(v[r * kDim + i]) * v[r * kDim + j];
    rows += n;
  }
  for (double& e : h) e *= 2.0 / static_cast<double>(rows);
  return h;
}

double relDiff(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

calib::CalibrationSpec syntheticSpec() {
  calib::CalibrationSpec spec;
  spec.synthetic = true;
  spec.synthetic_samples = 64;
  spec.batch_size = 16;
  return spec;
}

const char* kConfig = R"({"pipeline": ["gptq"], "weights": {"bits": 3, "symmetric": false, "granularity": "channel"},
    "passes": {"gptq": {"keep_hessians": true)";

}  // namespace

TEST_CASE("gptq is sequential: layer k's Hessian comes from the quantized layers before it", "[gptq]") {
  ir::Model m = chainModel(4);
  const calib::CalibrationSet set = calib::CalibrationSet::load(syntheticSpec(), *m.graph);
  // Float-model Hessians, before anything is quantized.
  std::vector<std::vector<double>> float_h;
  for (int k = 0; k < 4; ++k) float_h.push_back(measuredHessian(m, set, k ? "r" + std::to_string(k - 1) : "x", false));
  driver::PipelineRun run = driver::runPipeline(m, test::parseConfig(std::string(kConfig) + "}}}"), &set, 2);
  REQUIRE(run.plan.active().size() == 4);
  for (int k = 0; k < 4; ++k) {
    const pipeline::LayerPlan* l = run.plan.findByWeight(m.graph->findValue("w" + std::to_string(k)));
    REQUIRE(l);
    REQUIRE(l->hessian);
    CHECK(l->weight->quant->method == "gptq");
    CHECK(l->hessian->source == "sequential");
    CHECK(l->hessian->rows == 64);
    // The model with every layer quantized as gptq left it: the input of layer k depends only on layers < k.
    const std::vector<double> seq_h = measuredHessian(m, set, k ? "r" + std::to_string(k - 1) : "x", true);
    const double to_seq = relDiff(l->hessian->h, seq_h), to_float = relDiff(l->hessian->h, float_h[static_cast<size_t>(k)]);
    WARN("layer " << k << ": Hessian vs quantized-prefix measurement " << to_seq << ", vs float model " << to_float);
    CHECK(to_seq < 1e-5);
    if (k == 0) CHECK(to_float < 1e-5);  // nothing quantized before the first layer
    else CHECK(to_float > 1e-3);
    CHECK(l->metrics.at("gptq_loss") < l->metrics.at("rtn_loss"));
  }
}

TEST_CASE("gptq's forward work stays a constant number of model passes as the model deepens", "[gptq]") {
  double ratio[2] = {0, 0};
  const int depths[2] = {3, 12};
  for (int d = 0; d < 2; ++d) {
    ir::Model m = chainModel(depths[d]);
    const calib::CalibrationSet set = calib::CalibrationSet::load(syntheticSpec(), *m.graph);
    driver::PipelineRun run = driver::runPipeline(m, test::parseConfig(std::string(kConfig) + "}}}"), &set, 1);
    const auto& c = run.report.passes.at(0).counters;
    ratio[d] = static_cast<double>(c.at("node_executions")) / static_cast<double>(c.at("forward_pass_node_executions"));
    WARN(depths[d] << " layers: " << c.at("node_executions") << " node executions = " << ratio[d]
                   << " forward passes, " << c.at("blocks") << " blocks");
    CHECK(c.at("blocks") == depths[d]);
  }
  // Each block: observe up to its layer's input, then run it once: under two passes in total. Re-running
  // the prefix for every layer would cost (L + 1) / 2 passes: 6.5 at 12 layers.
  CHECK(ratio[0] < 2.0);
  CHECK(ratio[1] < 2.0);
  CHECK(std::fabs(ratio[1] - ratio[0]) < 0.5);
}

TEST_CASE("gptq without sequential uses the float model's Hessians, and bits from the plan are obeyed", "[gptq]") {
  ir::Model m = chainModel(3);
  const calib::CalibrationSet set = calib::CalibrationSet::load(syntheticSpec(), *m.graph);
  const std::vector<double> float_h = measuredHessian(m, set, "r1", false);
  const std::string cfg = std::string(kConfig) + R"(, "sequential": false}},
      "overrides": [{"match": "w2", "weights": {"bits": 6}}]})";
  driver::PipelineRun run = driver::runPipeline(m, test::parseConfig(cfg), &set, 2);
  const pipeline::LayerPlan* l = run.plan.findByWeight(m.graph->findValue("w2"));
  REQUIRE(l);
  REQUIRE(l->hessian);
  CHECK(l->hessian->source == "float");
  CHECK(relDiff(l->hessian->h, float_h) < 1e-5);
  CHECK(l->weight->quant->bits == 6);
  CHECK(run.plan.findByWeight(m.graph->findValue("w0"))->weight->quant->bits == 3);
}
