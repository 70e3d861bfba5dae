// scale-reparam (RepQ-ViT): alone it is function-preserving (max relative error <= 1e-4, executor and
// ONNX Runtime) on the zoo's transformers; on a hand-made graph the reparameterized norm's output has
// one range for every channel, [−z̃·s̃, (qmax − z̃)·s̃], and γ', β', W', bias' follow the formulas; the
// post-Softmax quantizers give the values of their grids; w8a8-vit keeps ≥ 99% top-1 agreement on the
// zoo ViT and the new presets write byte-identical files at 1 and 2 threads.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/npy.h"
#include "lib/driver/eval_metrics.h"
#include "lib/pipeline/pass_manager.h"
#include "lib/runtime/session.h"
#include "passes/softmax_quant.h"
#include "support/ort.h"
#include "support/pipeline.h"
#include "support/rewrite_checks.h"
#include "support/run_command.h"
#include "support/skip.h"
#include "support/test_paths.h"

using namespace ptq;
using test::maxRelativeError;
using test::readBytes;

namespace {

calib::CalibrationSpec vitCalibration(int64_t samples) {
  calib::CalibrationSpec c;
  c.named_files = {{"x", test::zooFile("calib_x_256x1x20x20_f32.bin")}};
  c.tokens_shape = {256, 1, 20, 20};
  c.samples = samples;
  return c;
}

}  // namespace

TEST_CASE("scale-reparam alone preserves the zoo transformers' function", "[reparam][zoo][ort]") {
  PTQ_REQUIRE_ZOO();
  PTQ_REQUIRE_ORT();
  const std::string dir = test::tempDir("reparam_equivalence");
  struct Case {
    std::string name, input;
    ir::Tensor feed;
    calib::CalibrationSpec calib;
    int64_t norms;
  };
  std::vector<Case> cases;
  {
    const std::vector<char> raw = readBytes(test::zooFile("gpt-fortunes.val.i64"), 2 * 64 * 8);
    calib::CalibrationSpec c;
    c.tokens = test::zooFile("gpt-fortunes.calib.i64");
    c.tokens_shape = {64, 128};
    c.samples = 8;
    cases.push_back({"gpt-fortunes", "input_ids", ir::Tensor::fromBytes(ir::DType::kInt64, {2, 64}, raw.data(), raw.size()), c, 9});
  }
  {
    const std::vector<char> raw = readBytes(test::zooFile("test_x_1000x1x20x20_f32.bin"), 16 * 400 * 4);
    cases.push_back({"vit_digits", "x", ir::Tensor::fromBytes(ir::DType::kFloat32, {16, 1, 20, 20}, raw.data(), raw.size()),
                     vitCalibration(32), 9});
  }
  for (const Case& c : cases) {
    INFO(c.name);
    const std::string src = test::zooFile(c.name + ".onnx");
    const ir::Model original = onnx_io::loadModel(src);
    runtime::Session before(original);
    const ir::Tensor ref = before.run({{c.input, c.feed}}).at("logits");
    const std::string feed_file = dir + "/" + c.name + "_input.npy";
    calib::writeNpy(feed_file, c.feed);
    test::ortJson("run '" + src + "' -o '" + dir + "/" + c.name + ".ort' --input " + c.input + "='" + feed_file + "'");
    const ir::Tensor ort_ref = calib::readNpy(dir + "/" + c.name + ".ort/logits.npy");

    ir::Model m = onnx_io::loadModel(src);
    calib::CalibrationSet set = calib::CalibrationSet::load(c.calib, *m.graph);
    driver::PipelineRun run = driver::runPipeline(m, test::parseConfig(R"({"pipeline": ["scale-reparam"]})"), &set, 0, true);
    driver::legalizeRun(m, {}, run, true);
    CHECK(run.report.warnings.empty());
    CHECK(test::passCounter(run, "scale-reparam", "norms_reparameterized") == c.norms);
    runtime::Session after(m);
    const double exec_err = maxRelativeError(ref, after.run({{c.input, c.feed}}).at("logits"));
    const std::string out = dir + "/" + c.name + ".reparam.onnx";
    onnx_io::saveModel(m, out);
    test::ortJson("run '" + out + "' -o '" + out + ".ort' --input " + c.input + "='" + feed_file + "'");
    const double ort_err = maxRelativeError(ort_ref, calib::readNpy(out + ".ort/logits.npy"));
    WARN(c.name << ": max relative error of the logits, executor " << exec_err << ", ONNX Runtime " << ort_err);
    CHECK(exec_err <= 1e-4);
    CHECK(ort_err <= 1e-4);
  }
}

TEST_CASE("scale-reparam: one range for every channel, by the formulas", "[reparam]") {
  // LayerNorm over 4 channels with very different γ (ranges differ by ~40x), read by a MatMul and a Gemm.
  const std::string text = R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 3] y, float[N, 2] z)
<float[4] gamma = {0.1, 4, 1, -2}, float[4] beta = {0.5, -1, 0, 0.25}, float[4, 3] w = {1, 2, -1, 0.5, 3, -2, 1, 1, 1, -1, 0, 2},
 float[3] bw = {0.1, 0.2, 0.3}, float[2, 4] wt = {1, -1, 3, 2, 0.5, -2, 1, 0}>
{ n = LayerNormalization <axis = -1> (x, gamma, beta)
  m = MatMul(n, w)
  y = Add(m, bw)
  z = Gemm <transB = 1, alpha = 0.5> (n, wt) }
)";
  std::vector<float> xs;
  for (int i = 0; i < 64 * 4; ++i) xs.push_back(static_cast<float>(std::sin(0.37 * i) * (1 + i % 3)));
  const ir::Tensor x = ir::Tensor::fromFloats({64, 4}, xs);
  const std::string dir = test::tempDir("reparam_hand");
  calib::writeNpy(dir + "/x.npy", x);
  ir::Model m = onnx_io::parseModelText(text);
  // The norm's output is not a graph output (the pass would leave it alone): read it through a tap.
  auto runWithNorm = [&](const ir::Model& model, std::vector<float>* n) {
    runtime::Session s(model);
    s.tap("n", [n](const std::string&, const ir::Tensor& t) { *n = t.toFloats(); });
    return s.run({{"x", x}});
  };
  std::vector<float> n0, n1;
  const auto ref = runWithNorm(m, &n0);
  calib::CalibrationSpec spec;
  spec.named_files = {{"x", dir + "/x.npy"}};
  calib::CalibrationSet set = calib::CalibrationSet::load(spec, *m.graph);
  driver::PipelineRun run = driver::runPipeline(
      m, test::parseConfig(R"({"pipeline": ["scale-reparam", "qdq"], "activations": {"bits": 8}})"), &set, 0, true);
  // (qdq only so that "activations.bits" is read; the comparison below runs the model before qdq's Q/DQ are
  // lowered, so it still checks the float function.)
  CHECK(test::passCounter(run, "scale-reparam", "norms_reparameterized") == 1);

  // Hand: per-channel ranges of n (over the same data), s_c = (hi − lo)/255, z_c = round(−lo/s_c).
  double lo[4] = {0, 0, 0, 0}, hi[4] = {0, 0, 0, 0}, s[4], z[4], sm = 0, zm = 0;
  for (size_t i = 0; i < n0.size(); ++i) {
    lo[i % 4] = std::min(lo[i % 4], static_cast<double>(n0[i]));
    hi[i % 4] = std::max(hi[i % 4], static_cast<double>(n0[i]));
  }
  for (int c = 0; c < 4; ++c) {
    s[c] = (hi[c] - lo[c]) / 255.0;
    z[c] = std::nearbyint(-lo[c] / s[c]);
    sm += s[c] / 4;
    zm += z[c] / 4;
  }
  const ir::Node* ln = nullptr;
  for (ir::Node* node : m.graph->nodes())
    if (node->opType() == "LayerNormalization") ln = node;
  REQUIRE(ln);
  const std::vector<float> g1 = ln->input(1)->initializer.toFloats(), b1 = ln->input(2)->initializer.toFloats();
  const float g0[4] = {0.1f, 4, 1, -2}, be0[4] = {0.5f, -1, 0, 0.25f};
  for (int c = 0; c < 4; ++c) {
    const double r = s[c] / sm, b = sm * (zm - z[c]);
    CHECK(g1[static_cast<size_t>(c)] == Approx(g0[c] / r).epsilon(1e-5));
    CHECK(b1[static_cast<size_t>(c)] == Approx(be0[c] / r - b).epsilon(1e-5).margin(1e-6));
  }
  // The reparameterized output: every channel's range (with 0, as the grid has it) now has the same
  // width 255·s̃ and starts at −z̃·s̃ (up to the rounding of z_c: half a step).
  const auto got = runWithNorm(m, &n1);
  for (int c = 0; c < 4; ++c) {
    const double zero_image = -sm * (zm - z[c]);  // where 0 lands: 0/r − b
    double l = zero_image, h = zero_image;
    for (size_t i = static_cast<size_t>(c); i < n1.size(); i += 4) {
      l = std::min(l, static_cast<double>(n1[i]));
      h = std::max(h, static_cast<double>(n1[i]));
    }
    INFO("channel " << c);
    CHECK(h - l == Approx(255 * sm).epsilon(1e-4));
    CHECK(std::fabs(l + zm * sm) <= 0.5 * sm + 1e-6);
  }
  CHECK(maxRelativeError(ref.at("y"), got.at("y")) <= 1e-5);
  CHECK(maxRelativeError(ref.at("z"), got.at("z")) <= 1e-5);
}

TEST_CASE("post-Softmax quantizers: the graph computes the grids' values", "[reparam]") {
  // Hand values, Δ = 0.5, 4 bits: log√2 x̂ = Δ·2^(−c/2), c = round(−2·log2(x/Δ)) in 0..15, 0 beyond.
  using passes::SoftmaxGrid;
  CHECK(passes::softmaxQuantize(0.5f, 0.5f, 4, SoftmaxGrid::kLogSqrt2) == 0.5f);
  CHECK(passes::softmaxQuantize(0.9f, 0.5f, 4, SoftmaxGrid::kLogSqrt2) == 0.5f);                      // clipped at Δ
  CHECK(passes::softmaxQuantize(0.25f, 0.5f, 4, SoftmaxGrid::kLogSqrt2) == Approx(0.25f));            // c = 2
  CHECK(passes::softmaxQuantize(0.3f, 0.5f, 4, SoftmaxGrid::kLogSqrt2) == Approx(0.5f / std::sqrt(2.0f) / std::sqrt(2.0f) * std::sqrt(2.0f)));  // c = round(1.47) = 1
  CHECK(passes::softmaxQuantize(0.5f * std::pow(2.0f, -7.5f), 0.5f, 4, SoftmaxGrid::kLogSqrt2) == Approx(0.5f * std::pow(2.0f, -7.5f)));  // c = 15
  CHECK(passes::softmaxQuantize(0.5f * std::pow(2.0f, -8.2f), 0.5f, 4, SoftmaxGrid::kLogSqrt2) == 0.0f);  // c = 16: zero
  CHECK(passes::softmaxQuantize(0.0f, 0.5f, 4, SoftmaxGrid::kLogSqrt2) == 0.0f);
  CHECK(passes::softmaxQuantize(0.26f, 0.3f, 2, SoftmaxGrid::kUniform) == Approx(0.3f));  // s = 0.1: round(2.6) = 3
  CHECK(passes::softmaxQuantize(0.14f, 0.3f, 2, SoftmaxGrid::kUniform) == Approx(0.1f));
  // The inserted ops compute the same values in the executor.
  for (SoftmaxGrid grid : {SoftmaxGrid::kLogSqrt2, SoftmaxGrid::kUniform}) {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 8] p, float[8, 2] v) => (float[N, 2] y)
{ y = MatMul(p, v) }
)");
    ir::Node* mm = m.graph->nodes().front();
    CHECK(passes::insertSoftmaxQuantizer(*m.graph, mm, 0, 0.5f, 4, grid, "q") == (grid == SoftmaxGrid::kUniform ? 4 : 10));
    const std::vector<float> p = {0.0f, 1e-4f, 0.004f, 0.03f, 0.12f, 0.26f, 0.49f, 0.95f};
    std::vector<float> eye(16, 0.0f);
    for (int i = 0; i < 8; ++i) eye[static_cast<size_t>(i * 2 + (i % 2))] = 1.0f;
    runtime::Session s(m);
    const std::vector<float> y = s.run({{"p", ir::Tensor::fromFloats({1, 8}, p)}, {"v", ir::Tensor::fromFloats({8, 2}, eye)}}).at("y").toFloats();
    double even = 0, odd = 0;
    for (int i = 0; i < 8; ++i) (i % 2 ? odd : even) += passes::softmaxQuantize(p[static_cast<size_t>(i)], 0.5f, 4, grid);
    CHECK(y[0] == Approx(even).epsilon(1e-6));
    CHECK(y[1] == Approx(odd).epsilon(1e-6));
  }
}

TEST_CASE("w8a8-vit keeps the zoo ViT's top-1 within 1% agreement, new presets are thread-deterministic",
          "[reparam][rotation][zoo][determinism]") {
  PTQ_REQUIRE_ZOO();
  const std::string dir = test::tempDir("vit_presets");
  const std::vector<char> raw = readBytes(test::zooFile("test_x_1000x1x20x20_f32.bin"), 200 * 400 * 4);
  const ir::Tensor feed = ir::Tensor::fromBytes(ir::DType::kFloat32, {200, 1, 20, 20}, raw.data(), raw.size());
  const ir::Model original = onnx_io::loadModel(test::zooFile("vit_digits.onnx"));
  runtime::Session fp(original);
  const std::vector<float> ref = fp.run({{"x", feed}}).at("logits").toFloats();
  for (const char* preset : {"w8a8-vit", "w4a4-vit", "w4a4-rotate", "w4a8-rotate", "w4a4-rotate-gptq", "w4a8-rotate-gptq"}) {
    INFO(preset);
    std::string bytes[2];
    for (int threads : {1, 2}) {
      ir::Model m = onnx_io::loadModel(test::zooFile("vit_digits.onnx"));
      const pipeline::QuantConfig config =
          pipeline::loadConfig(std::string(PTQ_SOURCE_DIR) + "/configs/" + preset + ".json", passes::builtinPasses());
      calib::CalibrationSet set = calib::CalibrationSet::load(vitCalibration(64), *m.graph);
      driver::PipelineRun run = driver::runPipeline(m, config, config.needsCalibration() ? &set : nullptr, threads, true);
      driver::legalizeRun(m, {}, run, true);
      bytes[threads - 1] = onnx_io::serializeModel(m);
      if (threads == 1 && std::string(preset) == "w8a8-vit") {
        runtime::Session q(m);
        const std::vector<float> got = q.run({{"x", feed}}).at("logits").toFloats();
        int agree = 0;
        for (int i = 0; i < 200; ++i) {
          auto arg = [&](const std::vector<float>& v) {
            return std::max_element(v.begin() + i * 10, v.begin() + i * 10 + 10) - (v.begin() + i * 10);
          };
          agree += arg(ref) == arg(got);
        }
        WARN("w8a8-vit top-1 agreement with fp32 on 200 digits: " << agree / 200.0);
        CHECK(agree >= 198);
      }
    }
    CHECK(bytes[0] == bytes[1]);
  }
}
