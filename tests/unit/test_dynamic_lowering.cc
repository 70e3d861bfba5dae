// Dynamic activation quantization on small graphs built here: hand-computed per-token values, and for
// MatMul, Gemm and Conv in each form of lib/ir/dynamic_quant.h (8-bit per tensor -> MatMulInteger /
// ConvInteger; per token, 4-bit, 16-bit, 4-bit and group-wise weights -> DequantizeLinear or the float
// decomposition) the written ops, the executor on the written graph bit-identical to its simulated
// run, and ONNX Runtime on the written file close to both.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <random>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/npy.h"
#include "lib/ir/verifier.h"
#include "lib/runtime/session.h"
#include "passes/legalize/legalize.h"
#include "support/agreement.h"
#include "support/ort.h"
#include "support/pipeline.h"
#include "support/test_paths.h"

using namespace ptq;
using test::agree;
using test::Agreement;

namespace {

std::map<std::string, int> opCounts(const ir::Graph& g) {
  std::map<std::string, int> c;
  for (const ir::Node* n : g.nodes()) ++c[n->opType()];
  return c;
}

ir::Tensor randomTensor(const ir::Shape& shape, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(ir::shapeNumel(shape)));
  for (float& x : v) x = d(rng);
  return ir::Tensor::fromFloats(shape, v);
}

// The text format needs every initializer value: zeros here, random data set afterwards.
ir::Model modelWithRandomWeights(const std::string& text, uint32_t seed) {
  ir::Model m = onnx_io::parseModelText(text);
  for (ir::Value* v : m.graph->initializers()) v->initializer = randomTensor(v->initializer.shape(), seed++, 0.3f);
  return m;
}

std::string zeros(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += i ? ",0" : "0";
  return "{" + s + "}";
}

bool sameBits(const ir::Tensor& a, const ir::Tensor& b) {
  return a.shape() == b.shape() && a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

ir::Tensor runOrt(const std::string& model_file, const std::string& input, const ir::Tensor& x, const std::string& dir) {
  const std::string in_file = dir + "/" + input + ".npy";
  calib::writeNpy(in_file, x);
  test::ortJson("run '" + model_file + "' -o '" + dir + "/ort' --input " + input + "='" + in_file + "'");
  return calib::readNpy(dir + "/ort/y.npy");
}

struct Layer {
  const char* name;
  std::string text;
  ir::Shape input;
  const char* integer_op;  // the integer kernel of the 8-bit per-tensor form
};

std::vector<Layer> layers() {
  return {
      {"matmul", R"(<ir_version: 8, opset_import: ["" : 17]> g (float[2, 5, 16] x) => (float[2, 5, 8] y)
         <float[16, 8] w = )" + zeros(128) + R"(, float[8] b = )" + zeros(8) + R"(> { h = MatMul(x, w)  y = Add(h, b) })",
       {2, 5, 16}, "MatMulInteger"},
      {"gemm", R"(<ir_version: 8, opset_import: ["" : 13]> g (float[4, 32] x) => (float[4, 8] y)
         <float[8, 32] w = )" + zeros(256) + R"(, float[8] c = )" + zeros(8) + R"(> { y = Gemm<transB = 1>(x, w, c) })",
       {4, 32}, "MatMulInteger"},
      {"conv", R"(<ir_version: 8, opset_import: ["" : 13]> g (float[2, 32, 8, 8] x) => (float[2, 4, 4, 4] y)
         <float[4, 32, 3, 3] w = )" + zeros(1152) + R"(, float[4] b = )" + zeros(4) +
                   R"(> { y = Conv<strides = [2, 2], pads = [1, 1, 1, 1]>(x, w, b) })",
       {2, 32, 8, 8}, "ConvInteger"},
  };
}

struct Form {
  const char* name;
  const char* config;
  bool integer;           // written as MatMulInteger / ConvInteger
  const char* act_op;     // op the activation lowering must contain otherwise
};

}  // namespace

TEST_CASE("per-token dynamic quantization computes hand-checked values (half to even, zero rows)", "[dynamic]") {
  // x read by Identity (not a layer): its readers see the fake-quantized value.
  const std::string text = R"(<ir_version: 8, opset_import: ["" : 17]> g (float[3, 4] x) => (float[3, 4] y) { y = Identity(x) })";
  struct Case {
    ir::DType dtype;
    std::vector<float> x, want;
  };
  const std::vector<Case> cases = {
      // int4 symmetric (qmax 7): row 0 max|x| 14 -> scale 2: 3/2 = 1.5 -> 2, -5/2 = -2.5 -> -2, 1/2 = 0.5 -> 0;
      // row 1 scale 1: 3.5 -> 4; row 2 all zero -> 0 (scale floor, not 0/0).
      {ir::DType::kInt4, {14, 3, -5, 1, -7, 3.5f, 1, 0, 0, 0, 0, 0}, {14, 4, -4, 0, -7, 4, 1, 0, 0, 0, 0, 0}},
      // uint4 asymmetric (qmax 15): row 0 range [-3, 12] -> scale 1, zero point 3; row 1 range [0, 15]
      // (min clamped to 0) -> scale 1, zero 0, 0.5 -> 0, 1.5 -> 2, 2.5 -> 2; row 2 all zero.
      {ir::DType::kUInt4, {-3, 0, 6, 12, 0.5f, 1.5f, 2.5f, 15, 0, 0, 0, 0}, {-3, 0, 6, 12, 0, 2, 2, 15, 0, 0, 0, 0}},
  };
  const std::string dir = test::tempDir("dynamic_per_token_values");
  for (const Case& c : cases) {
    INFO(ir::dtypeName(c.dtype));
    ir::Model m = onnx_io::parseModelText(text);
    auto aq = std::make_shared<ir::ActivationQuant>();
    aq->dtype = c.dtype;
    aq->dynamic = true;
    aq->per_token = true;
    m.graph->findValue("x")->act_quant = aq;
    const ir::Tensor x = ir::Tensor::fromFloats({3, 4}, c.x), want = ir::Tensor::fromFloats({3, 4}, c.want);
    runtime::SessionOptions so;
    so.simulate_quantization = true;
    const ir::Tensor simulated = runtime::Session(m, so).run({{"x", x}}).at("y");
    CHECK(simulated.toFloats() == want.toFloats());
    legalize::LegalizeResult r;
    legalize::lowerDynamicActivations(m, r);
    CHECK(r.dynamic_activations == 1);
    REQUIRE(ir::verifyGraph(*m.graph).empty());
    CHECK(opCounts(*m.graph)["ReduceMax"] >= 1);
    CHECK(runtime::Session(m).run({{"x", x}}).at("y").toFloats() == want.toFloats());
    if (!test::ortScript().empty()) {
      const std::string file = dir + "/" + ir::dtypeName(c.dtype) + ".onnx";
      onnx_io::saveModel(m, file);
      CHECK(runOrt(file, "x", x, dir).toFloats() == want.toFloats());
    }
  }
}

TEST_CASE("dynamic forms of MatMul, Gemm and Conv: written ops, executor bit-identical, ONNX Runtime close", "[dynamic][ort]") {
  const bool ort = !test::ortScript().empty();
  const std::vector<Form> forms = {
      {"w8-channel a8-tensor", R"("weights": {"bits": 8, "granularity": "channel"}, "activations": {"dynamic": true})", true, ""},
      {"w8-tensor-asym a8-tensor", R"("weights": {"bits": 8, "symmetric": false, "granularity": "tensor"}, "activations": {"dynamic": true})", true, ""},
      {"w8-channel a8-token", R"("weights": {"bits": 8}, "activations": {"dynamic": true, "granularity": "token"})", false, "ReduceMin"},
      {"w8-channel a8-token-sym", R"("weights": {"bits": 8}, "activations": {"dynamic": true, "granularity": "token", "symmetric": true})", false, "ReduceMax"},
      {"w4-channel a8-tensor", R"("weights": {"bits": 4}, "activations": {"dynamic": true})", false, "DynamicQuantizeLinear"},
      {"w8-group a8-tensor", R"("weights": {"bits": 8, "granularity": "group", "group_size": 16}, "activations": {"dynamic": true})", false, "DynamicQuantizeLinear"},
      {"w4-group a4-token", R"("weights": {"bits": 4, "granularity": "group", "group_size": 16}, "activations": {"dynamic": true, "granularity": "token", "bits": 4, "symmetric": true})", false, "ReduceMax"},
      {"w8-channel a16-tensor", R"("weights": {"bits": 8}, "activations": {"dynamic": true, "bits": 16})", false, "ReduceMin"},
  };
  const std::string dir = test::tempDir("dynamic_forms");
  for (const Layer& layer : layers())
    for (const Form& form : forms) {
      INFO(layer.name << ", " << form.name);
      ir::Model m = modelWithRandomWeights(layer.text, 7);
      const pipeline::QuantConfig config = test::parseConfig(std::string(R"({"pipeline": ["rtn", "qdq"], )") + form.config + "}");
      driver::PipelineRun run = driver::runPipeline(m, config, nullptr, 0, true);
      const ir::Tensor x = randomTensor(layer.input, 99);
      runtime::SessionOptions so;
      so.simulate_quantization = true;
      const ir::Tensor simulated = runtime::Session(m, so).run({{"x", x}}).at("y");
      const ir::Tensor fp32 = runtime::Session(m).run({{"x", x}}).at("y");
      driver::legalizeRun(m, {}, run, true);
      std::map<std::string, int> ops = opCounts(*m.graph);
      CHECK((ops[layer.integer_op] == 1) == form.integer);
      if (form.integer) {
        CHECK(ops["DynamicQuantizeLinear"] == 1);
        CHECK(ops["DequantizeLinear"] == 0);
        CHECK(ops["Cast"] == 1);
      } else {
        CHECK(ops[form.act_op] >= 1);
      }
      const ir::Tensor written = runtime::Session(m).run({{"x", x}}).at("y");
      CHECK(sameBits(simulated, written));
      // Quantization error itself stays small: 8-bit forms within cosine 0.999 of float, 4-bit within 0.97.
      CHECK(agree(simulated, fp32).cosine >= (std::string(form.name).find("4") != std::string::npos ? 0.97 : 0.999));
      if (!ort) continue;
      const std::string file = dir + "/" + layer.name + "_" + std::to_string(&form - forms.data()) + ".onnx";
      onnx_io::saveModel(m, file);
      const Agreement a = agree(runOrt(file, "x", x, dir), written);
      INFO("vs ONNX Runtime: cosine " << a.cosine << ", max_abs " << a.max_abs);
      CHECK(a.cosine >= 0.99999);
      CHECK(a.max_abs <= 1e-4);
    }
  if (!ort) PTQ_SKIP("node or onnxruntime-node missing: ONNX Runtime part not run");
}

TEST_CASE("Gemm with alpha != 1 keeps its float op on the dequantized dynamic activation", "[dynamic]") {
  ir::Model m = modelWithRandomWeights(R"(<ir_version: 8, opset_import: ["" : 13]> g (float[4, 16] x) => (float[4, 8] y)
     <float[16, 8] w = )" + zeros(128) + R"(> { y = Gemm<alpha = 0.5>(x, w) })", 3);
  const pipeline::QuantConfig config = test::parseConfig(R"({"pipeline": ["rtn", "qdq"], "activations": {"dynamic": true}})");
  driver::PipelineRun run = driver::runPipeline(m, config, nullptr, 0, true);
  runtime::SessionOptions so;
  so.simulate_quantization = true;
  const ir::Tensor x = randomTensor({4, 16}, 5);
  const ir::Tensor simulated = runtime::Session(m, so).run({{"x", x}}).at("y");
  driver::legalizeRun(m, {}, run, true);
  std::map<std::string, int> ops = opCounts(*m.graph);
  CHECK(ops["MatMulInteger"] == 0);
  CHECK(ops["Gemm"] == 1);
  CHECK(ops["DynamicQuantizeLinear"] == 1);
  CHECK(ops["DequantizeLinear"] == 2);  // the activation's and the weight's
  CHECK(sameBits(simulated, runtime::Session(m).run({{"x", x}}).at("y")));
}
