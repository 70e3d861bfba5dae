// gptq through the CLI on the bundled digits CNN (no zoo needed): one progress line per layer on stderr,
// none with --quiet; the report's per-layer metrics (GPTQ loss below RTN's on the same grid); the three
// output forms write the same codes; errors name the config key or say what is missing.
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "lib/calib/npy.h"
#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::test;

namespace {

const std::string kSrc = PTQ_SOURCE_DIR;
const std::string kModel = kSrc + "/tests/data/digits_cnn.onnx";
const std::string kCalib = "--calib x='" + kSrc + "/tests/data/digits_test_x_256x1x20x20_f32.bin' --calib-shape 256x1x20x20 --calib-samples 64";

std::string quantizeCmd(const std::string& config, const std::string& out, const std::string& extra) {
  return "'" + toolPath() + "' quantize '" + kModel + "' --config " + config + " -o '" + out + "' " + extra;
}

}  // namespace

TEST_CASE("gptq on the CLI: progress per layer, quiet with -q, loss in the report", "[gptq][cli]") {
  const std::string dir = tempDir("gptq_cli");
  const std::string out = dir + "/d.onnx", report = dir + "/r.json";
  auto r = runCommand(quantizeCmd("w4a16-gptq", out, kCalib + " --report '" + report + "' -j 2"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  // 5 convs + 2 Gemms, all through GPTQ.
  for (int i = 1; i <= 7; ++i) CHECK(r.output.find("gptq: layer " + std::to_string(i) + "/7 ") != std::string::npos);
  std::ifstream f(report);
  const nlohmann::json j = nlohmann::json::parse(f);
  int gptq_layers = 0;
  for (const auto& l : j["layers"]) {
    if (l["action"] != "quantized (gptq)") continue;
    ++gptq_layers;
    const auto& m = l["metrics"];
    INFO(l["node"]);
    CHECK(m["gptq_loss"].get<double>() <= m["rtn_loss"].get<double>());
    CHECK(m["hessian_rows"].get<double>() > 0);
    CHECK(m["damp"].get<double>() == Approx(0.01));
  }
  CHECK(gptq_layers == 7);

  auto q = runCommand(quantizeCmd("w4a16-gptq", out, kCalib + " -q"));
  CHECK(q.exit_code == 0);
  CHECK(q.output.empty());
}

TEST_CASE("gptq's codes are the same in the qdq, matmulnbits and packed forms", "[gptq][cli]") {
  const std::string dir = tempDir("gptq_forms");
  const std::string cfg = dir + "/c.json";
  std::ofstream(cfg) << R"({"pipeline": ["gptq"], "weights": {"bits": 4, "symmetric": false, "granularity": "group", "group_size": 32}})";
  // Run each form and read the weights back through `ptq-tool run`: identical outputs mean identical codes.
  std::ifstream raw(kSrc + "/tests/data/digits_test_x_256x1x20x20_f32.bin", std::ios::binary);
  std::vector<float> x(32 * 400);
  raw.read(reinterpret_cast<char*>(x.data()), static_cast<std::streamsize>(x.size() * sizeof(float)));
  REQUIRE(raw);
  const std::string x_npy = dir + "/x.npy";
  ptq::calib::writeNpy(x_npy, ptq::ir::Tensor::fromFloats({32, 1, 20, 20}, x));
  std::string outputs[3];
  const char* forms[3] = {"qdq", "matmulnbits", "packed"};
  for (int i = 0; i < 3; ++i) {
    const std::string out = dir + "/m." + (i == 2 ? "ptq" : std::string(forms[i]) + ".onnx");
    auto r = runCommand(quantizeCmd("'" + cfg + "'", out, kCalib + " --format " + forms[i] + " -q"));
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    std::string onnx = out;
    if (i == 2) {
      onnx = dir + "/unpacked.onnx";
      REQUIRE(runCommand("'" + toolPath() + "' unpack '" + out + "' -o '" + onnx + "' --format qdq").exit_code == 0);
    }
    auto run = runCommand("'" + toolPath() + "' run '" + onnx + "' -i x='" + x_npy + "' -o '" + dir + "/y" +
                          std::to_string(i) + ".npy' -q");
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
    std::ifstream f(dir + "/y" + std::to_string(i) + ".npy", std::ios::binary);
    outputs[i] = std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }
  CHECK(!outputs[0].empty());
  CHECK(outputs[0] == outputs[2]);
  CHECK(outputs[0] == outputs[1]);
}

TEST_CASE("gptq errors name the config key, and missing calibration data is an error", "[gptq][cli]") {
  const std::string dir = tempDir("gptq_errors");
  const std::string cfg = dir + "/bad.json";
  std::ofstream(cfg) << R"({"pipeline": ["gptq"], "passes": {"gptq": {"damp": 2}}})";
  auto r = runCommand(quantizeCmd("'" + cfg + "'", dir + "/o.onnx", kCalib));
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("passes.gptq.damp") != std::string::npos);
  auto n = runCommand(quantizeCmd("w4a16-gptq", dir + "/o.onnx", ""));
  CHECK(n.exit_code == 1);
  CHECK(n.output.find("pass 'gptq' needs calibration data") != std::string::npos);
  CHECK(!fileExists(dir + "/o.onnx"));
}
