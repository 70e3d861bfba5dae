// Activation quantization: Q/DQ structure and hand-checked scales on a tiny graph, calibration data
// errors, and in ONNX Runtime: W8A8 digits agreement, integer kernels, W8A8 language-model perplexity.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <set>

#include "support/pipeline.h"
#include "formats/onnx/onnx_io.h"
#include "lib/calib/calibration.h"
#include "lib/calib/npy.h"
#include "lib/ir/verifier.h"
#include "lib/pipeline/pass_manager.h"
#include "lib/util/error.h"
#include "support/ort.h"
#include "support/test_paths.h"

using namespace ptq;
using nlohmann::json;

namespace {

const std::string kSrc = PTQ_SOURCE_DIR;

}  // namespace

TEST_CASE("qdq inserts one Q/DQ pair per activation with MinMax scale and zero point", "[qdq]") {
  const std::string dir = test::tempDir("qdq_small");
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] x) => (float[N, 2] y)
<float[2, 2] w = {1, 0, 0, 1}, float[2, 2] w2 = {2, 0, 0, 2}>
{ h = MatMul(x, w)
  y = MatMul(h, w2) }
)");
  // x in [-1, 3]: uint8 asymmetric scale 4/255, zero round(1 / (4/255)) = round(63.75) = 64.
  calib::writeNpy(dir + "/x.npy", ir::Tensor::fromFloats({4, 2}, {-1, 0, 3, 1, 0.5f, 2, 0, 0}));
  pipeline::QuantConfig config = test::parseConfig(R"({"pipeline": ["rtn", "qdq"],
    "activations": {"bits": 8, "symmetric": false, "observer": "minmax"}})");
  calib::CalibrationSpec spec;
  spec.named_files = {{"x", dir + "/x.npy"}};
  spec.batch_size = 3;  // two batches: the observer must combine them
  calib::CalibrationSet set = calib::CalibrationSet::load(spec, *m.graph);
  CHECK(set.numBatches() == 2);
  driver::PipelineRun run = driver::runPipeline(m, config, &set, 0, true);
  driver::legalizeRun(m, {}, run, true);
  REQUIRE(ir::verifyGraph(*m.graph).empty());
  int q = 0, dq = 0;
  ir::Node* qx = nullptr;
  for (ir::Node* n : m.graph->nodes()) {
    if (n->opType() == "QuantizeLinear") {
      ++q;
      if (n->input(0)->name() == "x") qx = n;
    }
    if (n->opType() == "DequantizeLinear") ++dq;
  }
  // x and h; y is a graph output nobody reads, which stays float (quantizing logits would only
  // add error to what the user reads).
  CHECK(q == 2);
  CHECK(dq == 2 + 2);  // + two weights
  REQUIRE(qx);
  CHECK(qx->input(1)->initializer.data<float>()[0] == Approx(4.0f / 255));
  CHECK(qx->input(2)->initializer.dtype() == ir::DType::kUInt8);
  CHECK(qx->input(2)->initializer.data<uint8_t>()[0] == 64);
  CHECK(m.graph->outputs()[0]->name() == "y");
  CHECK(m.graph->outputs()[0]->producer()->opType() == "MatMul");
}

TEST_CASE("calibration data errors name the input and the file", "[qdq][errors]") {
  const std::string dir = test::tempDir("qdq_errors");
  const std::string tool = "'" + test::toolPath() + "'";
  const std::string model = kSrc + "/tests/data/digits_cnn.onnx";
  calib::writeNpy(dir + "/wrong_shape.npy", ir::Tensor(ir::DType::kFloat32, {4, 1, 10, 10}));
  calib::writeNpy(dir + "/ints.npy", ir::Tensor(ir::DType::kInt64, {4, 1, 20, 20}));
  struct Case {
    std::string args;
    int code;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"--config w8a8", 1, "pass 'qdq' needs calibration data"},
      {"--config w8a8 --calib y=" + dir + "/wrong_shape.npy", 2, "has no input 'y'"},
      {"--config w8a8 --calib x=" + dir + "/wrong_shape.npy", 2, "dimension 2 must be 20"},
      {"--config w8a8 --calib x=" + dir + "/ints.npy", 2, "is int64, the model expects float32"},
      {"--config w8a8 --calib x=" + dir + "/missing.npy", 2, "missing.npy"},
      {"--config w8a8 --calib " + dir + "/nothing.txt", 1, "expected NAME=FILE"},
  };
  for (const auto& c : cases) {
    auto r = test::runCommand(tool + " quantize '" + model + "' " + c.args + " -o " + dir + "/o.onnx");
    INFO(c.args << "\n" << r.output);
    CHECK(r.exit_code == c.code);
    CHECK_THAT(r.output, Catch::Contains(c.fragment));
    CHECK_FALSE(test::fileExists(dir + "/o.onnx"));
  }
}

TEST_CASE("W8A8 digits CNN in ONNX Runtime: agreement, integer kernels, latency", "[ort][qdq]") {
  PTQ_REQUIRE_ORT();
  PTQ_REQUIRE_ZOO();
  const std::string dir = test::tempDir("qdq_digits");
  const std::string model = kSrc + "/tests/data/digits_cnn.onnx";
  auto r = test::runCommand("'" + test::toolPath() + "' quantize '" + model + "' --config w8a8 --calib x=" +
                            test::zooFile("calib_x_256x1x20x20_f32.bin") + " -o " + dir + "/q.onnx -q");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const std::string data = "'" + test::zooFile("test_x_1000x1x20x20_f32.bin") + "' '" + test::zooFile("test_y_1000_i64.bin") +
                           "' --shape 1000x1x20x20";
  for (const char* opt : {"basic", "all"}) {
    json a = test::ortJson("accuracy " + dir + "/q.onnx " + data + " --agree '" + model + "' --opt " + opt);
    WARN("digits W8A8 (ORT opt " << opt << "): accuracy " << a["accuracy"] << ", top-1 agreement with fp32 " << a["agreement"]);
    // Measured at both levels: agreement 0.998, accuracy 0.976 (fp32 0.976).
    CHECK(a["agreement"].get<double>() >= 0.995);
    CHECK(a["accuracy"].get<double>() >= 0.97);
  }
  json o = test::ortJson("optimized " + dir + "/q.onnx " + dir + "/q.ort.onnx --opt all");
  const int qlinear_conv = o["ops"].value("com.microsoft:QLinearConv", 0) + o["ops"].value("QLinearConv", 0);
  WARN("ORT optimized W8A8 digits ops: " << o["ops"].dump());
  CHECK(qlinear_conv == 5);  // every Conv runs as an integer kernel
  json fp = test::ortJson("compare '" + model + "' '" + model + "' --batch 64 --opt all");
  json qq = test::ortJson("compare " + dir + "/q.onnx " + dir + "/q.onnx --batch 64 --opt all");
  WARN("ORT latency, batch 64, opt all: fp32 " << fp["a_ms"] << " ms, W8A8 " << qq["a_ms"] << " ms");
}

TEST_CASE("W8A8 and W4A8 language models stay close to fp32 perplexity in ONNX Runtime", "[ort][qdq][zoo]") {
  PTQ_REQUIRE_ORT();
  PTQ_REQUIRE_ZOO();
  const std::string dir = test::tempDir("qdq_lm");
  for (const char* name : {"llama-jargon", "gpt-fortunes"}) {
    const std::string model = test::zooFile(std::string(name) + ".onnx");
    const std::string val = test::zooFile(std::string(name) + ".val.i64");
    const double fp32 = test::ortJson("ppl '" + model + "' '" + val + "'")["ppl"].get<double>();
    for (const char* preset : {"w8a8", "w4a8"}) {
      const std::string out = dir + "/" + name + "." + preset + ".onnx";
      auto r = test::runCommand("'" + test::toolPath() + "' quantize '" + model + "' --config " + preset + " --calib '" +
                                test::zooFile(std::string(name) + ".calib.i64") + "' --calib-shape 64x128 -o " + out + " -q");
      INFO(r.output);
      REQUIRE(r.exit_code == 0);
      const double ppl = test::ortJson("ppl " + out + " '" + val + "'")["ppl"].get<double>();
      WARN(name << " " << preset << ": perplexity " << ppl << " (fp32 " << fp32 << ", +" << 100.0 * (ppl / fp32 - 1) << "%)");
      // Measured: w8a8 +0.13% (llama-jargon) / +0.017% (gpt-fortunes), w4a8 +0.52% / +0.49%.
      CHECK(ppl <= fp32 * (std::string(preset) == "w8a8" ? 1.01 : 1.02));
    }
  }
}

TEST_CASE("activations.op_types extends Q/DQ to the inputs and outputs of other ops", "[qdq]") {
  const std::string dir = test::tempDir("qdq_extra_ops");
  const char* text = R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] x) => (float[N, 2] y)
<float[2, 2] w = {1, 0, 0, 1}>
{ r = Relu(x)
  y = MatMul(r, w) }
)";
  calib::writeNpy(dir + "/x.npy", ir::Tensor::fromFloats({2, 2}, {-1, 2, 3, 0.5f}));
  calib::CalibrationSpec spec;
  spec.named_files = {{"x", dir + "/x.npy"}};
  auto quantizedInputs = [&](const std::string& ops) {
    ir::Model m = onnx_io::parseModelText(text);
    pipeline::QuantConfig config = test::parseConfig(
        R"({"pipeline": ["rtn", "qdq"], "activations": {"op_types": )" + ops + "}}");
    calib::CalibrationSet set = calib::CalibrationSet::load(spec, *m.graph);
    driver::runPipeline(m, config, &set, 0, true);
    std::set<std::string> names;
    for (ir::Value* v : {m.graph->findValue("x"), m.graph->findValue("r")})
      if (v->act_quant) names.insert(v->name());
    return names;
  };
  CHECK(quantizedInputs(R"(["MatMul"])") == std::set<std::string>{"r"});
  CHECK(quantizedInputs(R"(["MatMul", "Relu"])") == std::set<std::string>{"x", "r"});
  try {
    test::parseConfig(R"({"pipeline": ["rtn", "qdq"], "activations": {"op_types": ["Softmax"]}})");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("activations.op_types: 'Softmax' is not one of"));
  }
}
