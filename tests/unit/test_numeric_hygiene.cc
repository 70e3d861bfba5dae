// NaN/Inf hygiene (issue 13): weights and calibration activations holding NaN/Inf are refused naming
// the tensor and the first bad index, or (weights, when the config says so) kept float and reported;
// scales that would be denormal are clamped and reported.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/npy.h"
#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq;

namespace {

// y = x · w (w float[4, 3]), small enough to write in a test.
const char* kMatMul = R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 3] y)
<float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}>
{
  y = MatMul(x, w)
}
)";

std::string writeModel(const std::string& dir, const std::string& name, float value, int64_t at) {
  ir::Model m = onnx_io::parseModelText(kMatMul);
  ir::Value* w = m.graph->findValue("w");
  float* p = w->initializer.mutableData<float>();
  if (at >= 0) p[at] = value;
  const std::string path = dir + "/" + name;
  onnx_io::saveModel(m, path);
  return path;
}

std::string tool() { return test::toolPath(); }

}  // namespace

TEST_CASE("a weight with NaN or Inf is refused naming the tensor and the first bad index", "[hardening][numeric]") {
  const std::string dir = test::tempDir("numeric_weights");
  const std::string nan_model = writeModel(dir, "nan.onnx", std::nanf(""), 7);  // [2, 1]
  auto r = test::runCommand(tool() + " quantize '" + nan_model + "' -c w8a16 -o '" + dir + "/out.onnx'");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("weight 'w'") && Catch::Contains("NaN") && Catch::Contains("[2, 1]") &&
                           Catch::Contains("element 7") && Catch::Contains("non_finite"));
  CHECK_FALSE(test::fileExists(dir + "/out.onnx"));

  const std::string inf_model = writeModel(dir, "inf.onnx", -std::numeric_limits<float>::infinity(), 11);
  r = test::runCommand(tool() + " quantize '" + inf_model + "' -c w4a16 -o '" + dir + "/out.onnx'");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("weight 'w'") && Catch::Contains("-Inf") && Catch::Contains("[3, 2]"));
}

TEST_CASE("layers.non_finite = keep_float leaves such a layer in float and reports it", "[hardening][numeric]") {
  const std::string dir = test::tempDir("numeric_keep");
  const std::string model = writeModel(dir, "nan.onnx", std::nanf(""), 4);
  std::ofstream(dir + "/keep.json") << R"({"layers": {"non_finite": "keep_float"}})";
  const auto r = test::runCommand(tool() + " quantize '" + model + "' -c '" + dir + "/keep.json' -o '" + dir +
                                  "/out.onnx' --report '" + dir + "/report.json'");
  REQUIRE(r.exit_code == 0);
  std::ifstream rf(dir + "/report.json");
  const nlohmann::json report = nlohmann::json::parse(rf);
  REQUIRE(report.at("layers").size() == 1);
  const auto& layer = report["layers"][0];
  CHECK_THAT(layer.at("action").get<std::string>(), Catch::StartsWith("skipped"));
  CHECK_THAT(layer.dump(), Catch::Contains("non-finite weight") && Catch::Contains("[1, 1]"));
  CHECK_THAT(report.at("warnings").dump(), Catch::Contains("left in float"));
  // The float weight is written unchanged (NaN included): no DequantizeLinear.
  ir::Model out = onnx_io::loadModel(dir + "/out.onnx");
  CHECK(std::isnan(out.graph->findValue("w")->initializer.data<float>()[4]));

  std::ofstream(dir + "/bad.json") << R"({"layers": {"non_finite": "ignore"}})";
  const auto bad = test::runCommand(tool() + " quantize '" + model + "' -c '" + dir + "/bad.json' -o '" + dir + "/o2.onnx'");
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.output, Catch::Contains("layers.non_finite"));
}

TEST_CASE("calibration data with NaN or Inf is refused naming the input and the first bad index", "[hardening][numeric]") {
  const std::string dir = test::tempDir("numeric_calib");
  const std::string model = writeModel(dir, "m.onnx", 0, -1);
  std::vector<float> x(8 * 4, 0.5f);
  x[3 * 4 + 1] = std::numeric_limits<float>::infinity();
  calib::writeNpy(dir + "/x.npy", ir::Tensor::fromFloats({8, 4}, x));
  const auto r = test::runCommand(tool() + " quantize '" + model + "' -c w8a8 --calib x='" + dir + "/x.npy' -o '" + dir +
                                  "/out.onnx'");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("x.npy") && Catch::Contains("input 'x'") && Catch::Contains("+Inf") &&
                           Catch::Contains("[3, 1]"));
  CHECK_FALSE(test::fileExists(dir + "/out.onnx"));
}

TEST_CASE("weight scales that would be denormal are clamped to 2^-126 and reported", "[hardening][numeric]") {
  const std::string dir = test::tempDir("numeric_denormal");
  ir::Model m = onnx_io::parseModelText(kMatMul);
  float* p = m.graph->findValue("w")->initializer.mutableData<float>();
  for (int i = 0; i < 12; ++i) p[i] = (i % 3 == 0 ? 1e-39f : 1.0f) * static_cast<float>(i + 1);  // column 0 tiny
  onnx_io::saveModel(m, dir + "/tiny.onnx");
  const auto r = test::runCommand(tool() + " quantize '" + dir + "/tiny.onnx' -c w8a16 -o '" + dir + "/out.onnx' --report '" +
                                  dir + "/report.json'");
  REQUIRE(r.exit_code == 0);
  std::ifstream rf(dir + "/report.json");
  const nlohmann::json report = nlohmann::json::parse(rf);
  CHECK_THAT(report.at("warnings").dump(), Catch::Contains("clamped to 2^-126") && Catch::Contains("1 of 3"));
  ir::Model out = onnx_io::loadModel(dir + "/out.onnx");
  const ir::Value* s = out.graph->findValue("w_scale");
  REQUIRE(s);
  for (float v : s->initializer.toFloats()) CHECK(std::isnormal(v));
}

TEST_CASE("firstNonFinite finds the first NaN or Inf of every float type, in place and unaligned", "[hardening][numeric]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  // Positions on both sides of the scan's 256-element blocks, and none at all.
  for (const int64_t at : {int64_t{-1}, int64_t{0}, int64_t{255}, int64_t{256}, int64_t{700}, int64_t{999}}) {
    INFO("bad element at " << at);
    std::vector<float> f(1000, 0.5f);
    std::vector<double> d(1000, 0.5);
    std::vector<uint16_t> h(1000, 0x3800), b(1000, 0x3f00);  // 0.5 in float16 and bfloat16
    if (at >= 0) {
      f[static_cast<size_t>(at)] = at % 2 ? -inf : nan;
      d[static_cast<size_t>(at)] = at % 2 ? inf : std::nan("");
      h[static_cast<size_t>(at)] = at % 2 ? 0xfc00 : 0x7e00;
      b[static_cast<size_t>(at)] = at % 2 ? 0x7f80 : 0xffc1;
      if (at + 1 < 1000) f[static_cast<size_t>(at + 1)] = inf;  // a later one is not reported
    }
    CHECK(ir::firstNonFinite(ir::Tensor::fromFloats({10, 100}, f)) == at);
    CHECK(ir::firstNonFinite(ir::Tensor::fromBytes(ir::DType::kFloat64, {1000}, d.data(), 8000)) == at);
    CHECK(ir::firstNonFinite(ir::Tensor::fromBytes(ir::DType::kFloat16, {1000}, h.data(), 2000)) == at);
    CHECK(ir::firstNonFinite(ir::Tensor::fromBytes(ir::DType::kBFloat16, {1000}, b.data(), 2000)) == at);
    std::vector<char> buf(4008);
    std::memcpy(buf.data() + 3, f.data(), 4000);
    const ir::Tensor unaligned = ir::Tensor::view(ir::DType::kFloat32, {1000}, buf.data() + 3, 4000, nullptr);
    CHECK(ir::firstNonFinite(unaligned) == at);
    if (at >= 0) CHECK(ir::describeNonFinite(unaligned, at) == (at % 2 ? "-Inf" : "NaN"));
  }
  CHECK(ir::firstNonFinite(ir::Tensor::fromInt64s({2}, {1, 2})) == -1);  // not floating point
}
