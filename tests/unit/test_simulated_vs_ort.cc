// The executor runs the model as it will be written: for each preset, the in-memory quantized model
// (plan annotations, not yet lowered) run with simulate_quantization gives the logits ONNX Runtime
// computes on the written file (graph optimisation "basic"; see REFERENCES.md for the int4 fusion
// caveat at "all"). That is what lets calibration, evaluation and GPTQ trust the executor. Also: the
// executor on the written file reproduces its own simulated run.
#include <catch2/catch.hpp>

#include <cmath>
#include <iomanip>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/npy.h"
#include "lib/runtime/session.h"
#include "support/agreement.h"
#include "support/ort.h"
#include "support/pipeline.h"
#include "support/test_paths.h"

using namespace ptq;
using test::agree;
using test::Agreement;

namespace {

const std::string kSrc = PTQ_SOURCE_DIR;

struct Case {
  std::string name, model, input, calib_arg;  // calib_arg: NAME=FILE or a token file
  ir::Tensor feed;
};

}  // namespace

TEST_CASE("the executor's simulated quantized run agrees with ONNX Runtime on the written file", "[simulate][ort]") {
  PTQ_REQUIRE_ORT();
  const std::string dir = test::tempDir("simulated_vs_ort");
  std::vector<Case> cases;
  {
    Case c{"digits", kSrc + "/tests/data/digits_cnn.onnx", "x", "", {}};
    const std::string x = kSrc + "/tests/data/digits_test_x_256x1x20x20_f32.bin";
    ir::Tensor all = ir::Tensor(ir::DType::kFloat32, {256, 1, 20, 20});
    FILE* f = std::fopen(x.c_str(), "rb");
    REQUIRE(f);
    REQUIRE(std::fread(all.mutableData<float>(), 4, 256 * 400, f) == 256 * 400);
    std::fclose(f);
    c.feed = ir::Tensor::fromBytes(ir::DType::kFloat32, {16, 1, 20, 20}, all.data<float>() + 64 * 400, 16 * 400 * 4);
    c.calib_arg = "x=" + x;
    cases.push_back(c);
  }
  if (!test::zooDir().empty())
    for (const char* lm : {"llama-jargon", "gpt-fortunes"}) {
      Case c{lm, test::zooFile(std::string(lm) + ".onnx"), "input_ids", test::zooFile(std::string(lm) + ".calib.i64"), {}};
      const std::string val = test::zooFile(std::string(lm) + ".val.i64");
      std::vector<int64_t> ids(2 * 64);
      FILE* f = std::fopen(val.c_str(), "rb");
      REQUIRE(f);
      REQUIRE(std::fread(ids.data(), 8, ids.size(), f) == ids.size());
      std::fclose(f);
      c.feed = ir::Tensor::fromInt64s({2, 64}, ids);
      cases.push_back(c);
    }
  for (const Case& c : cases) {
    const std::string input_file = dir + "/" + c.name + "_input.npy";
    calib::writeNpy(input_file, c.feed);
    for (const char* preset : {"w8a16", "w4a16", "w8a8", "w4a8"}) {
      INFO(c.name << " " << preset);
      ir::Model m = onnx_io::loadModel(c.model);
      pipeline::QuantConfig config =
          pipeline::loadConfig(kSrc + "/configs/" + preset + ".json", passes::builtinPasses());
      std::unique_ptr<calib::CalibrationSet> set;
      if (config.quantizesActivations()) {
        calib::CalibrationSpec spec;
        if (c.calib_arg.find('=') != std::string::npos) {
          spec.named_files = {{"x", c.calib_arg.substr(2)}};
        } else {
          spec.tokens = c.calib_arg;
          spec.tokens_shape = {64, 128};
          spec.samples = 16;
        }
        set = std::make_unique<calib::CalibrationSet>(calib::CalibrationSet::load(spec, *m.graph));
      }
      driver::PipelineRun run = driver::runPipeline(m, config, set.get());
      runtime::SessionOptions so;
      so.simulate_quantization = true;
      const ir::Tensor simulated = [&] {
        runtime::Session s(m, so);
        return s.run({{c.input, c.feed}}).at("logits");
      }();
      legalize::LegalizeOptions lo;
      lo.prefer_matmulnbits = config.format == pipeline::OutputFormat::kMatMulNBits;
      driver::legalizeRun(m, lo, run, true);
      const std::string out = dir + "/" + c.name + "." + preset + ".onnx";
      onnx_io::saveModel(m, out);

      const std::string ort_dir = dir + "/" + c.name + "." + preset + ".ort";
      test::ortJson("run '" + out + "' -o '" + ort_dir + "' --input " + c.input + "='" + input_file + "'");
      const ir::Tensor ort = calib::readNpy(ort_dir + "/logits.npy");
      const Agreement a = agree(simulated, ort);
      // The executor on the written file (lowered Q/DQ, MatMulNBits) against its own simulated run.
      const ir::Model written_model = onnx_io::loadModel(out);
      runtime::Session written(written_model);
      const Agreement self = agree(simulated, written.run({{c.input, c.feed}}).at("logits"));
      WARN(c.name << " " << preset << ": simulated executor vs ONNX Runtime on the written file: cosine "
                  << std::setprecision(10) << a.cosine << ", max_abs " << a.max_abs
                  << "; vs the executor on the written file: cosine " << self.cosine << ", max_abs " << self.max_abs);
      // Measured: cosine 1.0000000 for w8a16/w4a16 (max_abs <= 1.1e-5), >= 0.9999941 for w8a8/w4a8 (llama w4a8;
      // ORT rounds a few activations to the neighbouring code); the executor on the written file is bit-identical.
      CHECK(a.cosine >= 0.99999);
      CHECK(self.max_abs == 0.0);
    }
  }
}
