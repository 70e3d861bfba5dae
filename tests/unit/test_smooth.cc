// fold-norms and smooth-quant: function-preserving rewrites. Each, alone and together, on the zoo's
// three transformers and on small graphs, gives an fp32 model whose outputs match the original
// (max relative error <= 1e-4) in the executor and in ONNX Runtime on the written file; the
// structure is checked too (gamma = 1 after folding, a Mul only where no producer can absorb 1/s,
// an unmatched model left byte-identical with a report entry). The smoothing arithmetic is checked
// on hand-computed values.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/npy.h"
#include "lib/driver/eval_metrics.h"
#include "lib/ir/patterns.h"
#include "lib/pipeline/pass_manager.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"
#include "passes/linear_rewrite.h"
#include "passes/smooth_search.h"
#include "support/ort.h"
#include "support/pipeline.h"
#include "support/rewrite_checks.h"
#include "support/skip.h"
#include "support/test_paths.h"

using namespace ptq;
using test::maxRelativeError;
using test::readBytes;

namespace {

struct ZooCase {
  std::string name, input;
  ir::Tensor feed;
  calib::CalibrationSpec calib;
};

std::vector<ZooCase> zooCases() {
  std::vector<ZooCase> cases;
  for (const char* lm : {"llama-jargon", "gpt-fortunes"}) {
    ZooCase c{lm, "input_ids", {}, {}};
    const std::vector<char> raw = readBytes(test::zooFile(std::string(lm) + ".val.i64"), 2 * 64 * 8);
    c.feed = ir::Tensor::fromBytes(ir::DType::kInt64, {2, 64}, raw.data(), raw.size());
    c.calib.tokens = test::zooFile(std::string(lm) + ".calib.i64");
    c.calib.tokens_shape = {64, 128};
    c.calib.samples = 8;
    cases.push_back(c);
  }
  ZooCase v{"vit_digits", "x", {}, {}};
  const std::vector<char> raw = readBytes(test::zooFile("test_x_1000x1x20x20_f32.bin"), 16 * 400 * 4);
  v.feed = ir::Tensor::fromBytes(ir::DType::kFloat32, {16, 1, 20, 20}, raw.data(), raw.size());
  v.calib.named_files = {{"x", test::zooFile("calib_x_256x1x20x20_f32.bin")}};
  v.calib.tokens_shape = {256, 1, 20, 20};
  v.calib.samples = 16;
  cases.push_back(v);
  return cases;
}

ir::Tensor logits(const ir::Model& m, const std::string& input, const ir::Tensor& feed) {
  runtime::Session s(m);
  return s.run({{input, feed}}).at("logits");
}

}  // namespace

TEST_CASE("fold-norms and smooth-quant preserve the zoo transformers' function", "[smooth][zoo][ort]") {
  PTQ_REQUIRE_ZOO();
  PTQ_REQUIRE_ORT();
  const std::string dir = test::tempDir("smooth_equivalence");
  const struct {
    const char* label;
    const char* config;
  } pipelines[] = {
      {"fold", R"({"pipeline": ["fold-norms"]})"},
      {"smooth", R"({"pipeline": ["smooth-quant"], "passes": {"smooth-quant": {"auto_alpha": true}}})"},
      {"fold+smooth-linears",
       R"({"pipeline": ["fold-norms", "smooth-quant"], "passes": {"smooth-quant": {"alpha": 0.8, "targets": "linears"}}})"},
  };
  for (const ZooCase& c : zooCases()) {
    const std::string src = test::zooFile(c.name + ".onnx");
    const ir::Model original = onnx_io::loadModel(src);
    const ir::Tensor ref = logits(original, c.input, c.feed);
    const std::string feed_file = dir + "/" + c.name + "_input.npy";
    calib::writeNpy(feed_file, c.feed);
    test::ortJson("run '" + src + "' -o '" + dir + "/" + c.name + ".ort' --input " + c.input + "='" + feed_file + "'");
    const ir::Tensor ort_ref = calib::readNpy(dir + "/" + c.name + ".ort/logits.npy");
    for (const auto& p : pipelines) {
      INFO(c.name << " " << p.label);
      ir::Model m = onnx_io::loadModel(src);
      const pipeline::QuantConfig config = test::parseConfig(p.config);
      calib::CalibrationSet set = calib::CalibrationSet::load(c.calib, *m.graph);
      driver::PipelineRun run = driver::runPipeline(m, config, &set, 0, true);
      driver::legalizeRun(m, {}, run, true);
      CHECK(run.report.warnings.empty());
      const double exec_err = maxRelativeError(ref, logits(m, c.input, c.feed));
      const std::string out = dir + "/" + c.name + "." + p.label + ".onnx";
      onnx_io::saveModel(m, out);
      test::ortJson("run '" + out + "' -o '" + out + ".ort' --input " + c.input + "='" + feed_file + "'");
      const double ort_err = maxRelativeError(ort_ref, calib::readNpy(out + ".ort/logits.npy"));
      WARN(c.name << " " << p.label << ": max relative error of the logits, executor " << exec_err << ", ONNX Runtime "
                  << ort_err);
      CHECK(exec_err <= 1e-4);
      CHECK(ort_err <= 1e-4);

      const auto norms = ir::matchNorms(*m.graph);
      CHECK(norms.size() == 9);
      if (std::string(p.label) == "fold") {
        CHECK(test::passCounter(run, "fold-norms", "norms_folded") == 9);
        CHECK(test::passCounter(run, "fold-norms", "norms_left_unchanged") == 0);
        // gpt's final norm had a beta and the head no bias: the one bias created.
        CHECK(test::passCounter(run, "fold-norms", "biases_created") == (c.name == "gpt-fortunes" ? 1 : 0));
        for (const ir::NormMatch& n : norms) {
          for (float g : n.gamma()->initializer.toFloats()) CHECK(g == 1.0f);
          if (n.beta())
            for (float b : n.beta()->initializer.toFloats()) CHECK(b == 0.0f);
        }
      } else if (std::string(p.label) == "smooth") {
        CHECK(test::passCounter(run, "smooth-quant", "folded_into_norms") == 9);
        CHECK(test::passCounter(run, "smooth-quant", "muls_inserted") == 0);
        // The chosen alpha is in each smoothed layer's history.
        bool noted = false;
        for (const auto& l : run.report.layers)
          for (const std::string& h : l.history) noted = noted || h.find("smooth-quant: alpha") == 0;
        CHECK(noted);
      } else {
        // o-proj / down-proj / fc2 inputs come from a Reshape or an activation Mul: nothing can absorb 1/s.
        CHECK(test::passCounter(run, "smooth-quant", "muls_inserted") == 8);
        CHECK(test::passCounter(run, "smooth-quant", "folded_into_norms") == 9);
        int muls = 0;
        for (ir::Node* n : m.graph->nodes())
          if (n->name.find("_SmoothMul") != std::string::npos) {
            ++muls;
            const auto r = ir::linearReaders(n->output(0));
            CHECK(r.ok());
            CHECK(r.linears.size() == 1);
          }
        CHECK(muls == 8);
      }
    }
  }
}

TEST_CASE("fold-norms on small graphs: bias creation for MatMul and Gemm, untying, and norms it must leave alone",
          "[smooth]") {
  SECTION("decomposed LayerNorm into a MatMul without bias and a Gemm(transB, alpha) sharing one weight") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] x) => (float[N, 2] y, float[N, 2] z, float[3, 2] wout)
<float[3] gamma = {2, -1, 0.5}, float[3] beta = {0.25, 1, -2}, float[3, 2] w = {1, 2, -1, 0.5, 3, -2},
 float[2, 3] wt = {1, -1, 3, 2, 0.5, -2}, float two = {2}, float eps = {1e-5}>
{ mu = ReduceMean <axes = [-1]> (x)
  d = Sub(x, mu)
  p = Pow(d, two)
  var = ReduceMean <axes = [-1]> (p)
  ve = Add(var, eps)
  sd = Sqrt(ve)
  n = Div(d, sd)
  ng = Mul(n, gamma)
  nb = Add(ng, beta)
  y = MatMul(nb, w)
  z = Gemm <transB = 1, alpha = 0.5> (nb, wt)
  wout = Identity(w) }
)");
    const ir::Tensor x = ir::Tensor::fromFloats({2, 3}, {1, 2, 4, -3, 0.5f, 1});
    runtime::Session before(m);
    const auto ref = before.run({{"x", x}});
    driver::PipelineRun run = driver::runPipeline(m, test::parseConfig(R"({"pipeline": ["fold-norms"]})"), nullptr, 0, true);
    CHECK(test::passCounter(run, "fold-norms", "norms_folded") == 1);
    CHECK(test::passCounter(run, "fold-norms", "biases_created") == 2);
    runtime::Session after(m);
    const auto got = after.run({{"x", x}});
    CHECK(maxRelativeError(ref.at("y"), got.at("y")) <= 1e-6);
    CHECK(maxRelativeError(ref.at("z"), got.at("z")) <= 1e-6);
    // w is also a graph output (through Identity): the MatMul got its own copy, the original is untouched.
    CHECK(maxRelativeError(ref.at("wout"), got.at("wout")) == 0.0);
    // Hand check of one folded entry: W'[0][1] = gamma[0] * W[0][1] = 2 * 2.
    ir::Node* mm = nullptr;
    for (ir::Node* n : m.graph->nodes())
      if (n->opType() == "MatMul") mm = n;
    REQUIRE(mm);
    CHECK(mm->input(1)->name() != "w");
    CHECK(mm->input(1)->initializer.data<float>()[1] == 4.0f);
  }
  SECTION("a tied LM head (MatMul through Transpose of the embedding table) gets its own weight first") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (int64[N] ids) => (float[N, 3] logits)
<float[3, 2] table = {1, 2, 3, -4, 5, 0.5}, float[2] gamma = {2, 0.5}, float[2] beta = {1, -1}>
{ e = Gather(table, ids)
  n = LayerNormalization <axis = -1> (e, gamma, beta)
  t = Transpose(table)
  logits = MatMul(n, t) }
)");
    const ir::Tensor ids = ir::Tensor::fromInt64s({4}, {0, 2, 1, 2});
    runtime::Session before(m);
    const ir::Tensor ref = before.run({{"ids", ids}}).at("logits");
    driver::PipelineRun run = driver::runPipeline(
        m, test::parseConfig(R"({"pipeline": ["fold-norms", "rtn"]})"), nullptr, 0, true);
    CHECK(test::passCounter(run, "fold-norms", "tied_weights_untied") == 1);
    CHECK(test::passCounter(run, "fold-norms", "norms_folded") == 1);
    // The table is untouched (the Gather still reads it) and the head is now a quantized layer of its own.
    CHECK(m.graph->findValue("table")->initializer.toFloats() == std::vector<float>{1, 2, 3, -4, 5, 0.5f});
    REQUIRE(run.report.layers.size() == 1);
    CHECK(run.report.layers[0].weight != "table");
    CHECK_THAT(run.report.layers[0].action, Catch::StartsWith("quantized"));
    for (ir::Node* n : m.graph->nodes()) CHECK(n->opType() != "Transpose");
    runtime::Session after(m);
    CHECK(maxRelativeError(ref, after.run({{"ids", ids}}).at("logits")) <= 1e-6);
  }
  SECTION("a norm whose output is also a residual input is left unchanged, with a report entry") {
    const std::string text = R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] x) => (float[N, 2] y)
<float[2] gamma = {2, 3}, float[2] beta = {0, 1}, float[2, 2] w = {1, 2, 3, 4}>
{ n = LayerNormalization <axis = -1> (x, gamma, beta)
  h = MatMul(n, w)
  y = Add(h, n) }
)";
    ir::Model m = onnx_io::parseModelText(text);
    const std::string before = onnx_io::serializeModel(m);
    driver::PipelineRun run = driver::runPipeline(m, test::parseConfig(R"({"pipeline": ["fold-norms"]})"), nullptr, 0, true);
    CHECK(onnx_io::serializeModel(m) == before);
    CHECK(test::passCounter(run, "fold-norms", "norms_left_unchanged") == 1);
    REQUIRE(run.report.warnings.size() == 1);
    CHECK_THAT(run.report.warnings[0], Catch::Contains("left unchanged") && Catch::Contains("Add"));
  }
}

TEST_CASE("smooth-quant folds 1/s into a previous linear, inserts a Mul only when nothing can absorb it", "[smooth]") {
  const std::string dir = test::tempDir("smooth_small");
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] x) => (float[N, 2] y)
<float[3, 3] w1 = {1, 0.5, -2, 0.25, 3, 1, -1, 2, 0.5}, float[3] b1 = {0.5, -1, 2},
 float[3, 3] w2 = {2, -1, 0.5, 1, 1, -3, 0.25, 2, 1}, float[3, 2] w3 = {1, -2, 0.5, 3, -1, 1}>
{ h0 = MatMul(x, w1)
  h = Add(h0, b1)
  r0 = MatMul(h, w2)
  r = Relu(r0)
  y = MatMul(r, w3) }
)");
  // Channel 1 of x is an outlier channel.
  std::vector<float> xs;
  for (int i = 0; i < 32; ++i) {
    xs.push_back(std::sin(0.3f * i));
    xs.push_back(40.0f * std::cos(0.7f * i));
    xs.push_back(0.5f * std::sin(1.1f * i + 1));
  }
  const ir::Tensor x = ir::Tensor::fromFloats({32, 3}, xs);
  calib::writeNpy(dir + "/x.npy", x);
  runtime::Session before(m);
  const ir::Tensor ref = before.run({{"x", x}}).at("y");
  calib::CalibrationSpec spec;
  spec.named_files = {{"x", dir + "/x.npy"}};
  calib::CalibrationSet set = calib::CalibrationSet::load(spec, *m.graph);
  driver::PipelineRun run = driver::runPipeline(
      m, test::parseConfig(R"({"pipeline": ["smooth-quant"], "passes": {"smooth-quant": {"targets": "linears"}}})"), &set,
      0, true);
  // x is a graph input (Mul), h comes from MatMul+Add (folded into w1, b1), r from a Relu (Mul).
  CHECK(test::passCounter(run, "smooth-quant", "tensors_smoothed") == 3);
  CHECK(test::passCounter(run, "smooth-quant", "folded_into_linears") == 1);
  CHECK(test::passCounter(run, "smooth-quant", "muls_inserted") == 2);
  runtime::Session after(m);
  CHECK(maxRelativeError(ref, after.run({{"x", x}}).at("y")) <= 1e-5);
}

TEST_CASE("smoothing arithmetic on hand-computed values", "[smooth]") {
  using namespace passes::smooth;
  // s_j = a_j^alpha / w_j^(1 - alpha).
  const std::vector<double> half = smoothingScales({4, 1}, {1, 4}, 0.5);
  CHECK(half[0] == Approx(2.0));
  CHECK(half[1] == Approx(0.5));
  const std::vector<double> one = smoothingScales({4, 1}, {1, 4}, 1.0);
  CHECK(one[0] == Approx(4.0));
  CHECK(one[1] == Approx(1.0));
  const std::vector<double> zero = smoothingScales({4, 0}, {1, 4}, 0.0);
  CHECK(zero[0] == Approx(1.0));
  CHECK(zero[1] == Approx(0.25));
  // A zero activation channel is clamped, not NaN: (1e-5)^0.5 / 4^0.5.
  CHECK(smoothingScales({0}, {4}, 0.5)[0] == Approx(std::sqrt(1e-5) / 2.0));
  CHECK(maxOverMean({1, 1, 4}) == Approx(2.0));
  CHECK(maxOverMean({0, 0}) == 1.0);

  // Quantized output error: an outlier channel makes per-tensor 8-bit activations lose the small
  // channels; smoothing with alpha 0.5 lowers the error, s = 1 is the unsmoothed case exactly.
  const int64_t n = 64, c = 4;
  std::vector<float> rows;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < c; ++j)
      rows.push_back(static_cast<float>((j == 2 ? 50.0 : 1.0) * std::sin(0.37 * static_cast<double>(r * c + j) + 0.1)));
  ChannelStats stats;
  stats.absmax.assign(c, 0.0f);
  stats.min.assign(c, 0.0f);
  stats.max.assign(c, 0.0f);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < c; ++j) {
      const float v = rows[static_cast<size_t>(r * c + j)];
      stats.absmax[static_cast<size_t>(j)] = std::max(stats.absmax[static_cast<size_t>(j)], std::fabs(v));
      stats.min[static_cast<size_t>(j)] = std::min(stats.min[static_cast<size_t>(j)], v);
      stats.max[static_cast<size_t>(j)] = std::max(stats.max[static_cast<size_t>(j)], v);
    }
  pipeline::WeightSettings w8;
  LinearTerm t;
  t.out = 3;
  t.w = {0.5f, -1, 0.25f, 1, 0.75f, -0.5f, 0.1f, 0.2f, -0.3f, -1, 0.5f, 1};
  t.settings = &w8;
  const std::vector<LinearTerm> terms{t};  // max |W[j, :]| per input row j: 1, 1, 0.3, 1
  const auto ref = referenceOutputs(rows, n, c, terms);
  ActivationGrid grid;
  const double plain = quantizedOutputError(rows, n, c, stats, terms, ref, {}, grid);
  const double ones = quantizedOutputError(rows, n, c, stats, terms, ref, std::vector<double>(c, 1.0), grid);
  const double smoothed =
      quantizedOutputError(rows, n, c, stats, terms, ref, smoothingScales(stats.absmax, {1.0f, 1.0f, 0.3f, 1.0f}, 0.5), grid);
  CHECK(ones == plain);
  CHECK(plain > 0.0);
  CHECK(smoothed < 0.5 * plain);
}

TEST_CASE("w8a8-smooth writes byte-identical files at 1 and 2 threads", "[smooth][zoo][determinism]") {
  PTQ_REQUIRE_ZOO();
  std::string bytes[2];
  for (int threads : {1, 2}) {
    ir::Model m = onnx_io::loadModel(test::zooFile("gpt-fortunes.onnx"));
    const pipeline::QuantConfig config =
        pipeline::loadConfig(std::string(PTQ_SOURCE_DIR) + "/configs/w8a8-smooth.json", passes::builtinPasses());
    calib::CalibrationSpec spec;
    spec.tokens = test::zooFile("gpt-fortunes.calib.i64");
    spec.tokens_shape = {64, 128};
    spec.samples = 8;
    calib::CalibrationSet set = calib::CalibrationSet::load(spec, *m.graph);
    driver::PipelineRun run = driver::runPipeline(m, config, &set, threads);
    driver::legalizeRun(m, {}, run);
    bytes[threads - 1] = onnx_io::serializeModel(m);
  }
  CHECK(bytes[0].size() > 1000000);
  CHECK(bytes[0] == bytes[1]);
}

TEST_CASE("smooth-quant layer_alpha: per-tensor alpha by glob, malformed values rejected when the config loads",
          "[smooth][config]") {
  try {
    test::parseConfig(R"({"pipeline": ["smooth-quant"], "passes": {"smooth-quant": {"layer_alpha": "*/q/*=1.5"}}})");
    FAIL("expected an error");
  } catch (const ptq::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("passes.smooth-quant.layer_alpha") && Catch::Contains("'*/q/*=1.5'"));
  }
  const std::string dir = test::tempDir("smooth_layer_alpha");
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] x) => (float[N, 2] y)
<float[2] gamma = {1, 1}, float[2] beta = {0, 0}, float[2, 2] w = {1, 2, 3, 4}>
{ n = LayerNormalization <axis = -1> (x, gamma, beta)
  y = MatMul(n, w) }
)");
  m.graph->nodes().back()->name = "proj";
  calib::writeNpy(dir + "/x.npy", ir::Tensor::fromFloats({3, 2}, {1, -2, 3, 0.5f, -1, 4}));
  calib::CalibrationSpec spec;
  spec.named_files = {{"x", dir + "/x.npy"}};
  calib::CalibrationSet set = calib::CalibrationSet::load(spec, *m.graph);
  driver::PipelineRun run = driver::runPipeline(
      m, test::parseConfig(R"({"pipeline": ["smooth-quant"], "passes": {"smooth-quant": {"auto_alpha": true, "layer_alpha": "pro*=0.25"}}})"),
      &set, 0, true);
  REQUIRE(run.report.layers.size() == 1);
  REQUIRE(run.report.layers[0].history.size() == 1);
  CHECK_THAT(run.report.layers[0].history[0], Catch::StartsWith("smooth-quant: alpha 0.25 (layer_alpha)"));
}

namespace {

// A copy of the model with LLM-like activation outliers and the same function: for every norm,
// gamma and beta x40 on three channels and the same input rows of every reader /40.
void plantOutliers(ir::Model& m, pipeline::QuantPlan& plan) {
  for (const ir::NormMatch& n : ir::matchNorms(*m.graph)) {
    std::vector<double> up(static_cast<size_t>(n.channels), 1.0), down(static_cast<size_t>(n.channels), 1.0);
    for (int64_t c : {int64_t{7}, n.channels / 3, n.channels - 5}) {
      up[static_cast<size_t>(c)] = 40.0;
      down[static_cast<size_t>(c)] = 1.0 / 40.0;
    }
    ir::LinearReaders r = ir::linearReaders(n.output);
    REQUIRE(r.ok());
    passes::scaleChannelVector(n.gamma_node, n.gamma_input, up, plan, "test");
    if (n.beta_node) passes::scaleChannelVector(n.beta_node, n.beta_input, up, plan, "test");
    for (ir::LinearMatch& l : r.linears) passes::scaleInputRows(l, down, plan, "test");
  }
}

double meanNll(const ir::Model& m, const ir::Tensor& ids) {
  runtime::Session s(m);
  const ir::Tensor out = s.run({{"input_ids", ids}}).at("logits");
  const int64_t b = ids.shape()[0], t = ids.shape()[1], v = out.shape()[2];
  const int64_t* tok = ids.data<int64_t>();
  double sum = 0;
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j + 1 < t; ++j)
      sum += driver::eval::nextTokenNll(out.data<float>() + (i * t + j) * v, v, tok[i * t + j + 1]);
  return sum / static_cast<double>(b * (t - 1));
}

}  // namespace

TEST_CASE("w8a8-smooth recovers W8A8 accuracy on a planted-outlier copy of the GPT-style zoo model", "[smooth][zoo]") {
  PTQ_REQUIRE_ZOO();
  const std::vector<char> raw = readBytes(test::zooFile("gpt-fortunes.val.i64"), 8 * 128 * 8);
  const ir::Tensor ids = ir::Tensor::fromBytes(ir::DType::kInt64, {8, 128}, raw.data(), raw.size());
  auto load = [&] {
    ir::Model m = onnx_io::loadModel(test::zooFile("gpt-fortunes.onnx"));
    pipeline::QuantPlan scratch;
    plantOutliers(m, scratch);
    return m;
  };
  const ir::Model planted = load();
  const double fp32 = meanNll(onnx_io::loadModel(test::zooFile("gpt-fortunes.onnx")), ids);
  CHECK(meanNll(planted, ids) == Approx(fp32).epsilon(1e-5));  // same function
  // w8a8, w8a8-smooth, and smooth-quant alone (fold-norms alone would undo outliers planted in gamma).
  double nll[3];
  const char* presets[3] = {"w8a8", "w8a8-smooth", "w8a8-smooth"};
  for (int k = 0; k < 3; ++k) {
    ir::Model m = load();
    pipeline::QuantConfig config =
        pipeline::loadConfig(std::string(PTQ_SOURCE_DIR) + "/configs/" + presets[k] + ".json", passes::builtinPasses());
    if (k == 2) config.pipeline.erase(config.pipeline.begin());  // drop fold-norms
    if (k == 2) REQUIRE(config.pipeline.front().name() == "smooth-quant");
    calib::CalibrationSpec spec;
    spec.tokens = test::zooFile("gpt-fortunes.calib.i64");
    spec.tokens_shape = {64, 128};
    spec.samples = 16;
    calib::CalibrationSet set = calib::CalibrationSet::load(spec, *m.graph);
    driver::PipelineRun run = driver::runPipeline(m, config, &set);
    driver::legalizeRun(m, {}, run);
    nll[k] = meanNll(m, ids);
  }
  const double naive = std::exp(nll[0] - fp32) - 1, smooth = std::exp(nll[1] - fp32) - 1,
               alone = std::exp(nll[2] - fp32) - 1;
  WARN("planted-outlier gpt, perplexity change vs fp32 on 8 windows: w8a8 " << 100 * naive << "%, w8a8-smooth "
                                                                             << 100 * smooth << "%, smooth-quant alone "
                                                                             << 100 * alone << "%");
  // Measured: w8a8 +3.4%, w8a8-smooth +0.05% (scripts/bench-smooth.sh: +2.29% / +0.04% on 200 windows).
  CHECK(naive > 0.01);
  CHECK(smooth < 0.005);
  CHECK(smooth < naive / 4);
  CHECK(alone < 0.005);
  CHECK(alone < naive / 4);
}

TEST_CASE("smooth-quant: alpha_min above alpha_max is an error naming the config, before any pass runs", "[smooth][config]") {
  const pipeline::QuantConfig config = test::parseConfig(
      R"({"pipeline": ["smooth-quant"], "passes": {"smooth-quant": {"auto_alpha": true, "alpha_min": 0.8, "alpha_max": 0.2}}})");
  try {
    pipeline::PassManager::fromConfig(config, false);
    FAIL("expected an error");
  } catch (const ptq::Error& e) {
    CHECK(e.code() == ptq::ExitCode::kUsage);
    CHECK_THAT(e.what(), Catch::StartsWith("test.json: passes.smooth-quant: alpha_min"));
  }
}
