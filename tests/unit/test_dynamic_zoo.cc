// Dynamic activation quantization on real models: for the w8a8-dynamic preset (and per-token W8A8 /
// W4A8 on the language models) the executor on the written file is bit-identical to its simulated run,
// and ONNX Runtime on the written file agrees with it; the preset needs no calibration data and writes
// the same bytes at 1 and 2 threads.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/npy.h"
#include "lib/runtime/session.h"
#include "support/agreement.h"
#include "support/ort.h"
#include "support/pipeline.h"
#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq;
using test::agree;
using test::Agreement;

namespace {

const std::string kSrc = PTQ_SOURCE_DIR;

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

ir::Tensor readRaw(const std::string& path, ir::DType t, const ir::Shape& shape, int64_t skip) {
  ir::Tensor out(t, shape);
  FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f);
  const size_t elem = ir::dtypeBits(t) / 8;
  std::fseek(f, static_cast<long>(skip * static_cast<int64_t>(elem)), SEEK_SET);
  REQUIRE(std::fread(out.mutableData(), elem, static_cast<size_t>(out.numel()), f) == static_cast<size_t>(out.numel()));
  std::fclose(f);
  return out;
}

const char* kPerTokenW8A8 = R"({"name": "w8a8-token", "pipeline": ["rtn", "qdq"],
  "weights": {"bits": 8, "symmetric": true, "granularity": "channel"},
  "activations": {"bits": 8, "dynamic": true, "granularity": "token"}})";
const char* kPerTokenW4A8 = R"({"name": "w4a8-token", "pipeline": ["rtn", "qdq"],
  "weights": {"bits": 4, "symmetric": true, "granularity": "group", "group_size": 32},
  "activations": {"bits": 8, "dynamic": true, "granularity": "token"}})";

}  // namespace

TEST_CASE("dynamic quantization of the zoo models: executor bit-identical to its simulation, ONNX Runtime close",
          "[dynamic][zoo][ort]") {
  PTQ_REQUIRE_ZOO();
  PTQ_REQUIRE_ORT();
  const std::string dir = test::tempDir("dynamic_zoo");
  struct Case {
    std::string model, input;
    ir::Tensor feed;
    std::vector<std::string> configs;  // JSON text
  };
  const std::string preset = readAll(kSrc + "/configs/w8a8-dynamic.json");
  std::vector<Case> cases;
  for (const char* img : {"digits_cnn", "vit_digits"})
    cases.push_back({img, "x", readRaw(test::zooFile("test_x_1000x1x20x20_f32.bin"), ir::DType::kFloat32, {16, 1, 20, 20}, 0),
                     {preset}});
  for (const char* lm : {"llama-jargon", "gpt-fortunes"})
    cases.push_back({lm, "input_ids", readRaw(test::zooFile(std::string(lm) + ".val.i64"), ir::DType::kInt64, {2, 64}, 0),
                     {preset, kPerTokenW8A8, kPerTokenW4A8}});
  for (const Case& c : cases) {
    const std::string input_file = dir + "/" + c.model + "_input.npy";
    calib::writeNpy(input_file, c.feed);
    for (const std::string& json : c.configs) {
      ir::Model m = onnx_io::loadModel(test::zooFile(c.model + ".onnx"));
      const pipeline::QuantConfig config = test::parseConfig(json);
      INFO(c.model << " " << config.name);
      driver::PipelineRun run = driver::runPipeline(m, config, nullptr);
      runtime::SessionOptions so;
      so.simulate_quantization = true;
      const ir::Tensor simulated = runtime::Session(m, so).run({{c.input, c.feed}}).at("logits");
      driver::legalizeRun(m, {}, run, true);
      const std::string out = dir + "/" + c.model + "." + config.name + ".onnx";
      onnx_io::saveModel(m, out);
      const std::string ort_dir = dir + "/" + c.model + "." + config.name + ".ort";
      test::ortJson("run '" + out + "' -o '" + ort_dir + "' --input " + c.input + "='" + input_file + "'");
      const Agreement a = agree(simulated, calib::readNpy(ort_dir + "/logits.npy"));
      const ir::Model written = onnx_io::loadModel(out);
      const Agreement self = agree(simulated, runtime::Session(written).run({{c.input, c.feed}}).at("logits"));
      WARN(c.model << " " << config.name << ": simulated executor vs ONNX Runtime on the written file: cosine "
                   << std::setprecision(10) << a.cosine << ", max_abs " << a.max_abs << "; vs the executor on it: max_abs "
                   << self.max_abs);
      CHECK(self.max_abs == 0.0);
      CHECK(a.cosine >= 0.9999);
    }
  }
}

TEST_CASE("w8a8-dynamic writes ONNX Runtime's quantize_dynamic ops, without calibration data, same bytes at 1 and 2 threads",
          "[dynamic][cli][determinism]") {
  const std::string dir = test::tempDir("dynamic_cli_det");
  std::vector<std::string> models = {kSrc + "/tests/data/digits_cnn.onnx"};
  if (!test::zooDir().empty()) models.push_back(test::zooFile("llama-jargon.onnx"));
  for (const std::string& model : models) {
    INFO(model);
    for (const char* t : {"1", "2"}) {
      auto r = test::runCommand("'" + test::toolPath() + "' quantize '" + model + "' --config w8a8-dynamic -o '" + dir + "/q" +
                                t + ".onnx' -q --threads " + t + " --report '" + dir + "/r" + t + ".json'");
      INFO(r.output);
      REQUIRE(r.exit_code == 0);
    }
    const std::string q1 = readAll(dir + "/q1.onnx");
    CHECK(q1 == readAll(dir + "/q2.onnx"));
    CHECK(q1.size() > 10000);
    auto insp = test::runCommand("'" + test::toolPath() + "' inspect '" + dir + "/q1.onnx' --json");
    REQUIRE(insp.exit_code == 0);
    CHECK_THAT(insp.output, Catch::Contains("\"DynamicQuantizeLinear\""));
    CHECK_THAT(insp.output, Catch::Contains("\"MatMulInteger\""));
    CHECK_THAT(insp.output, !Catch::Contains("\"QuantizeLinear\""));
    const nlohmann::json report = nlohmann::json::parse(readAll(dir + "/r1.json"));
    int integer_layers = 0;
    for (const auto& l : report.at("layers")) integer_layers += l.value("form", "") == "MatMulInteger" || l.value("form", "") == "ConvInteger";
    CHECK(integer_layers == report.at("summary").at("layers_quantized").get<int>());
    CHECK(report.at("config").at("activations").at("dynamic") == true);
  }
}

TEST_CASE("a packed file keeps dynamic activations: unpack writes the same model as the direct qdq output", "[dynamic][packed]") {
  const std::string dir = test::tempDir("dynamic_packed");
  const std::string model = kSrc + "/tests/data/digits_cnn.onnx";
  const std::string tool = "'" + test::toolPath() + "' ";
  auto q = test::runCommand(tool + "quantize '" + model + "' --config w8a8-dynamic -o '" + dir + "/direct.onnx' -q");
  INFO(q.output);
  REQUIRE(q.exit_code == 0);
  auto p = test::runCommand(tool + "quantize '" + model + "' --config w8a8-dynamic -f packed -o '" + dir + "/m.ptq' -q");
  INFO(p.output);
  REQUIRE(p.exit_code == 0);
  const std::string ptq = readAll(dir + "/m.ptq");
  REQUIRE(ptq.size() > 12);
  CHECK(static_cast<unsigned char>(ptq[8]) == 2);  // version 2: the file holds dynamic activations
  CHECK_THAT(ptq, Catch::Contains("\"dynamic\":true"));
  auto u = test::runCommand(tool + "unpack '" + dir + "/m.ptq' -o '" + dir + "/unpacked.onnx'");
  INFO(u.output);
  REQUIRE(u.exit_code == 0);
  const ir::Model direct = onnx_io::loadModel(dir + "/direct.onnx"), unpacked = onnx_io::loadModel(dir + "/unpacked.onnx");
  std::map<std::string, int> a, b;
  for (const ir::Node* n : direct.graph->nodes()) ++a[n->opType()];
  for (const ir::Node* n : unpacked.graph->nodes()) ++b[n->opType()];
  CHECK(a == b);
  CHECK(a["ConvInteger"] == 5);
  const ir::Tensor x = readRaw(kSrc + "/tests/data/digits_test_x_256x1x20x20_f32.bin", ir::DType::kFloat32, {8, 1, 20, 20}, 0);
  const ir::Tensor ya = runtime::Session(direct).run({{"x", x}}).at("logits");
  const ir::Tensor yb = runtime::Session(unpacked).run({{"x", x}}).at("logits");
  CHECK(agree(ya, yb).max_abs == 0.0);
}
