// hadamard-rotation: the rotated fp32 model computes the same function (max relative error <= 1e-4)
// in the executor and in ONNX Runtime, on the zoo's three transformers (RMSNorm, LayerNorm, ViT with a
// patch-embedding Conv and a class token) and on text-format graphs of sizes that are not powers of
// two (hidden 384 = 12·32 with MLP 1152 = 36·32) or have no construction (156, 468: block-diagonal).
// Structure: the online Hadamard is there with constants of kilobytes; the seed decides the signs.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/npy.h"
#include "lib/ir/residual_stream.h"
#include "lib/pipeline/pass_manager.h"
#include "lib/quant/hadamard.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"
#include "passes/rotation_graph.h"
#include "support/ort.h"
#include "support/run_command.h"
#include "support/pipeline.h"
#include "support/rewrite_checks.h"
#include "support/skip.h"
#include "support/test_paths.h"

using namespace ptq;
using test::maxRelativeError;
using test::readBytes;

namespace {

// Deterministic pseudo-random values with 3 decimals, written as ONNX text.
std::string values(int64_t count, uint64_t seed, double scale, double offset = 0) {
  std::ostringstream s;
  uint64_t x = seed * 2654435761ull + 12345;
  for (int64_t i = 0; i < count; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    const double u = static_cast<double>((x >> 33) % 2001) / 1000.0 - 1.0;  // [-1, 1]
    if (i) s << ',';
    s << std::round((offset + scale * u) * 1000.0) / 1000.0;
  }
  return s.str();
}

// A one-block pre-norm LM in ONNX text: embedding, norm, gated MLP (SwiGLU) or GELU-free fc1/Relu/fc2
// with biases (LayerNorm variant), residual add, final norm, head.
std::string blockModel(int64_t hidden, int64_t mlp, bool layer_norm, bool tied_head = false) {
  const int64_t vocab = 16;
  std::ostringstream t;
  t << "<ir_version: 8, opset_import: [\"\" : 17]>\n";
  t << "g (int64[B, T] ids) => (float[B, T, " << vocab << "] logits)\n<";
  t << "float[" << vocab << ", " << hidden << "] emb = {" << values(vocab * hidden, 1, 1.0) << "}, ";
  t << "float[" << hidden << "] g1 = {" << values(hidden, 2, 0.5, 1.0) << "}, ";
  t << "float[" << hidden << "] g2 = {" << values(hidden, 3, 0.5, 1.0) << "}, ";
  t << "float[" << hidden << ", " << mlp << "] wa = {" << values(hidden * mlp, 4, 0.08) << "}, ";
  t << "float[" << hidden << ", " << mlp << "] wb = {" << values(hidden * mlp, 5, 0.08) << "}, ";
  t << "float[" << mlp << ", " << hidden << "] wd = {" << values(mlp * hidden, 6, 0.05) << "}, ";
  t << "float[" << hidden << ", " << vocab << "] head = {" << values(hidden * vocab, 7, 0.1) << "}, ";
  if (layer_norm) {
    t << "float[" << hidden << "] b1 = {" << values(hidden, 8, 0.3) << "}, ";
    t << "float[" << hidden << "] b2 = {" << values(hidden, 9, 0.3) << "}, ";
    t << "float[" << mlp << "] ba = {" << values(mlp, 10, 0.2) << "}, ";
    t << "float[" << hidden << "] bd = {" << values(hidden, 11, 0.2) << "}, ";
  }
  t << "float two = {2}, float eps = {1e-5}>\n{\n";
  t << "  x0 = Gather(emb, ids)\n";
  auto norm = [&](const std::string& in, const std::string& out, const std::string& g, const std::string& b) {
    if (layer_norm) {
      t << "  " << out << " = LayerNormalization <axis = -1> (" << in << ", " << g << ", " << b << ")\n";
    } else {
      t << "  " << out << "_p = Pow(" << in << ", two)\n  " << out << "_m = ReduceMean <axes = [-1]> (" << out << "_p)\n";
      t << "  " << out << "_a = Add(" << out << "_m, eps)\n  " << out << "_s = Sqrt(" << out << "_a)\n";
      t << "  " << out << "_n = Div(" << in << ", " << out << "_s)\n  " << out << " = Mul(" << out << "_n, " << g << ")\n";
    }
  };
  norm("x0", "n1", "g1", "b1");
  if (layer_norm) {
    t << "  ha = MatMul(n1, wa)\n  hb = Add(ha, ba)\n  h = Relu(hb)\n";
    t << "  d0 = MatMul(h, wd)\n  d = Add(bd, d0)\n";
  } else {
    t << "  ga = MatMul(n1, wa)\n  up = MatMul(n1, wb)\n  sg = Sigmoid(ga)\n  si = Mul(ga, sg)\n  h = Mul(si, up)\n";
    t << "  d = MatMul(h, wd)\n";
  }
  t << "  x1 = Add(x0, d)\n";
  norm("x1", "nf", "g2", "b2");
  if (tied_head) t << "  embt = Transpose(emb)\n  logits = MatMul(nf, embt)\n}\n";
  else t << "  logits = MatMul(nf, head)\n}\n";
  return t.str();
}

}  // namespace

TEST_CASE("hadamard-rotation preserves the zoo transformers' function", "[rotation][zoo][ort]") {
  PTQ_REQUIRE_ZOO();
  PTQ_REQUIRE_ORT();
  const std::string dir = test::tempDir("rotation_equivalence");
  struct Case {
    std::string name, input;
    ir::Tensor feed;
    int64_t norms_rewritten, embeddings, constants, convs;
  };
  std::vector<Case> cases;
  for (const char* lm : {"llama-jargon", "gpt-fortunes"}) {
    const std::vector<char> raw = readBytes(test::zooFile(std::string(lm) + ".val.i64"), 2 * 64 * 8);
    const bool gpt = std::string(lm) == "gpt-fortunes";
    cases.push_back({lm, "input_ids", ir::Tensor::fromBytes(ir::DType::kInt64, {2, 64}, raw.data(), raw.size()),
                     gpt ? 9 : 0, gpt ? 2 : 1, 0, 0});
  }
  const std::vector<char> raw = readBytes(test::zooFile("test_x_1000x1x20x20_f32.bin"), 16 * 400 * 4);
  cases.push_back({"vit_digits", "x", ir::Tensor::fromBytes(ir::DType::kFloat32, {16, 1, 20, 20}, raw.data(), raw.size()), 9,
                   0, 2, 1});
  for (const char* online : {"mlp", "all"}) {
    for (const Case& c : cases) {
      INFO(c.name << " online=" << online);
      const std::string src = test::zooFile(c.name + ".onnx");
      const ir::Model original = onnx_io::loadModel(src);
      runtime::Session before(original);
      const ir::Tensor ref = before.run({{c.input, c.feed}}).at("logits");
      const std::string feed_file = dir + "/" + c.name + "_input.npy";
      calib::writeNpy(feed_file, c.feed);
      test::ortJson("run '" + src + "' -o '" + dir + "/" + c.name + ".ort' --input " + c.input + "='" + feed_file + "'");
      const ir::Tensor ort_ref = calib::readNpy(dir + "/" + c.name + ".ort/logits.npy");

      ir::Model m = onnx_io::loadModel(src);
      const pipeline::QuantConfig config = test::parseConfig(
          std::string(R"({"pipeline": ["fold-norms", "hadamard-rotation"], "passes": {"hadamard-rotation": {"online": ")") +
          online + R"("}}})");
      driver::PipelineRun run = driver::runPipeline(m, config, nullptr, 0, true);
      driver::legalizeRun(m, {}, run, true);
      CHECK(run.report.warnings.empty());
      CHECK(test::passCounter(run, "hadamard-rotation", "norms_rewritten_as_rms") == c.norms_rewritten);
      CHECK(test::passCounter(run, "hadamard-rotation", "embeddings_rotated") == c.embeddings);
      CHECK(test::passCounter(run, "hadamard-rotation", "constants_rotated") == c.constants);
      CHECK(test::passCounter(run, "hadamard-rotation", "patch_convs_rotated") == c.convs);
      CHECK(test::passCounter(run, "hadamard-rotation", "writers_rotated") == 8);
      CHECK(test::passCounter(run, "hadamard-rotation", "online_hadamards") == (std::string(online) == "all" ? 8 : 4));
      // Kilobytes of online constants, not an n×n matrix per layer.
      CHECK(test::passCounter(run, "hadamard-rotation", "online_hadamard_constant_bytes") < 8 * 300 * 1024);
      runtime::Session after(m);
      const double exec_err = maxRelativeError(ref, after.run({{c.input, c.feed}}).at("logits"));
      const std::string out = dir + "/" + c.name + ".rotated." + online + ".onnx";
      onnx_io::saveModel(m, out);
      test::ortJson("run '" + out + "' -o '" + out + ".ort' --input " + c.input + "='" + feed_file + "'");
      const double ort_err = maxRelativeError(ort_ref, calib::readNpy(out + ".ort/logits.npy"));
      WARN(c.name << " online=" << online << ": max relative error of the logits, executor " << exec_err
                  << ", ONNX Runtime " << ort_err);
      CHECK(exec_err <= 1e-4);
      CHECK(ort_err <= 1e-4);
      // No LayerNormalization is left: the rotated stream is normalized as RMSNorm.
      for (ir::Node* n : m.graph->nodes()) CHECK(n->opType() != "LayerNormalization");
    }
  }
}

TEST_CASE("hadamard-rotation on text-format graphs of non-power-of-two and unconstructible sizes", "[rotation]") {
  struct Case {
    int64_t hidden, mlp;
    bool layer_norm;
    const char* stream_form;
    const char* online_form;
  };
  const Case cases[] = {
      {384, 1152, false, "H_12 ⊗ H_32", "H_36 ⊗ H_32"},
      {384, 1152, true, "H_12 ⊗ H_32", "H_36 ⊗ H_32"},
      {156, 468, true, "I_3 ⊗ H_52", "I_9 ⊗ H_52"},
  };
  for (const Case& c : cases) {
    INFO("hidden " << c.hidden << " mlp " << c.mlp << (c.layer_norm ? " LayerNorm" : " RMSNorm"));
    REQUIRE(quant::hadamardTransform(c.hidden).describe() == c.stream_form);
    REQUIRE(quant::hadamardTransform(c.mlp).describe() == c.online_form);
    const std::string text = blockModel(c.hidden, c.mlp, c.layer_norm);
    const ir::Model original = onnx_io::parseModelText(text);
    std::vector<int64_t> ids(2 * 9);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7 + 3) % 16);
    const ir::Tensor feed = ir::Tensor::fromInt64s({2, 9}, ids);
    runtime::Session before(original);
    const ir::Tensor ref = before.run({{"ids", feed}}).at("logits");

    ir::Model m = onnx_io::parseModelText(text);
    driver::PipelineRun run =
        driver::runPipeline(m, test::parseConfig(R"({"pipeline": ["fold-norms", "hadamard-rotation"], "seed": 3})"), nullptr, 0, true);
    CHECK(test::passCounter(run, "hadamard-rotation", "stream_width") == c.hidden);
    CHECK(test::passCounter(run, "hadamard-rotation", "stream_block_diagonal") == (c.hidden == 156 ? 1 : 0));
    CHECK(test::passCounter(run, "hadamard-rotation", "online_hadamards") == 1);
    CHECK(test::passCounter(run, "hadamard-rotation", "readers_rotated") == (c.layer_norm ? 2 : 3));
    // The fallback is reported.
    CHECK(run.report.warnings.size() == (c.hidden == 156 ? 2u : 0u));
    // The online constants: one small matrix per factor (kilobytes), e.g. 36² + 32² floats for 1152, and the signs.
    int64_t bytes = 0;
    for (const auto& f : quant::hadamardTransform(c.mlp).sizes) bytes += f * f * 4;
    bytes += c.mlp * 4;  // the online signs
    CHECK(test::passCounter(run, "hadamard-rotation", "online_hadamard_constant_bytes") == bytes);
    CHECK(bytes < 16 * 1024);
    runtime::Session after(m);
    const ir::Tensor got = after.run({{"ids", feed}}).at("logits");
    const double err = maxRelativeError(ref, got);
    WARN("hidden " << c.hidden << " mlp " << c.mlp << ": max relative error " << err);
    CHECK(err <= 1e-4);
    // The online transform is really there: the down-projection reads a Reshape of a factor MatMul.
    bool found = false;
    for (ir::Node* n : m.graph->nodes())
      if (n->name.find("/hadamard") != std::string::npos && n->opType() == "MatMul") found = true;
    CHECK(found);

    if (!test::ortScript().empty()) {  // also in ONNX Runtime when it is here (the executor check above runs regardless)
      const std::string dir = test::tempDir("rotation_text");
      const std::string feed_file = dir + "/ids.npy", a = dir + "/orig.onnx", b = dir + "/rot.onnx";
      calib::writeNpy(feed_file, feed);
      onnx_io::saveModel(original, a);
      onnx_io::saveModel(m, b);
      test::ortJson("run '" + a + "' -o '" + a + ".ort' --input ids='" + feed_file + "'");
      test::ortJson("run '" + b + "' -o '" + b + ".ort' --input ids='" + feed_file + "'");
      CHECK(maxRelativeError(calib::readNpy(a + ".ort/logits.npy"), calib::readNpy(b + ".ort/logits.npy")) <= 1e-4);
    }
  }
}

TEST_CASE("hadamard-rotation unties a tied LM head before rotating", "[rotation]") {
  const std::string text = blockModel(128, 256, false, true);
  const ir::Model original = onnx_io::parseModelText(text);
  const ir::Tensor feed = ir::Tensor::fromInt64s({1, 6}, {3, 1, 4, 1, 5, 9});
  runtime::Session before(original);
  const ir::Tensor ref = before.run({{"ids", feed}}).at("logits");
  ir::Model m = onnx_io::parseModelText(text);
  driver::PipelineRun run = driver::runPipeline(
      m, test::parseConfig(R"({"pipeline": ["fold-norms", "hadamard-rotation", "rtn"], "weights": {"bits": 8}})"), nullptr, 0, true);
  // fold-norms already gave the head its own Eᵀ (its norm had γ ≠ 1); either way E·Q feeds the Gather
  // and Qᵀ·Eᵀ the head.
  CHECK(test::passCounter(run, "fold-norms", "tied_weights_untied") + test::passCounter(run, "hadamard-rotation", "tied_weights_untied") == 1);
  for (ir::Node* n : m.graph->nodes()) CHECK(n->opType() != "Transpose");
  runtime::Session after(m);
  // 8-bit weights: close, not exact; the float check is the rotation alone below.
  CHECK(maxRelativeError(ref, after.run({{"ids", feed}}).at("logits")) <= 2e-2);
  ir::Model f = onnx_io::parseModelText(text);
  driver::runPipeline(f, test::parseConfig(R"({"pipeline": ["fold-norms", "hadamard-rotation"]})"), nullptr, 0, true);
  runtime::Session rotated(f);
  CHECK(maxRelativeError(ref, rotated.run({{"ids", feed}}).at("logits")) <= 1e-4);
}

TEST_CASE("hadamard-rotation: the seed decides the signs, same seed, same bytes", "[rotation][determinism]") {
  const std::string text = blockModel(384, 1152, false);
  auto rotate = [&](const char* config, int threads) {
    ir::Model m = onnx_io::parseModelText(text);
    driver::runPipeline(m, test::parseConfig(config), nullptr, threads, true);
    return m;
  };
  const char* seed3 = R"({"pipeline": ["fold-norms", "hadamard-rotation"], "seed": 3})";
  const char* seed4 = R"({"pipeline": ["fold-norms", "hadamard-rotation"], "seed": 4})";
  const ir::Model a = rotate(seed3, 1), b = rotate(seed3, 2), c = rotate(seed4, 1);
  CHECK(onnx_io::serializeModel(a) == onnx_io::serializeModel(b));
  const ir::Value* ea = a.graph->findValue("emb");
  const ir::Value* ec = c.graph->findValue("emb");
  REQUIRE(ea);
  REQUIRE(ec);
  CHECK(ea->initializer.toFloats() != ec->initializer.toFloats());
  // Q = D·H/√n: E·Q of the first embedding row, by hand from the signs and the dense transform.
  const ir::Model plain = onnx_io::parseModelText(text);
  const std::vector<float> e0 = plain.graph->findValue("emb")->initializer.toFloats();
  const quant::HadamardTransform h = quant::hadamardTransform(384);
  const std::vector<double> dense = h.dense();
  const std::vector<double> signs = quant::randomSigns(384, 3 ^ 0x51A7C0DEull);
  const std::vector<float> got = ea->initializer.toFloats();
  for (int o = 0; o < 384; o += 37) {
    double want = 0;
    for (int i = 0; i < 384; ++i) want += e0[static_cast<size_t>(i)] * signs[static_cast<size_t>(i)] * dense[static_cast<size_t>(i * 384 + o)];
    CHECK(got[static_cast<size_t>(o)] == Approx(want).margin(1e-5));
  }
}

TEST_CASE("hadamard-rotation refuses what it cannot rotate, naming the node, and changes nothing", "[rotation]") {
  SECTION("a norm with its gamma (fold-norms missing)") {
    ir::Model m = onnx_io::parseModelText(blockModel(64, 128, false));
    const std::string before = onnx_io::serializeModel(m);
    try {
      driver::runPipeline(m, test::parseConfig(R"({"pipeline": ["hadamard-rotation"]})"), nullptr, 0, true);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.code() == ExitCode::kInput);
      CHECK_THAT(e.what(), Catch::Contains("fold-norms") && Catch::Contains("n1"));
    }
    CHECK(onnx_io::serializeModel(m) == before);
  }
  SECTION("a residual-stream value read by an op that is not a norm") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (int64[N] ids) => (float[N, 4] y, float[N, 4] side)
<float[8, 4] emb = {1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8}, float[4, 4] w = {1,0,0,0,0,1,0,0,0,0,1,0,0,0,0,1}, float[4] one = {1,1,1,1}>
{ x = Gather(emb, ids)
  n = LayerNormalization <axis = -1> (x, one)
  y = MatMul(n, w)
  side = Relu(x) }
)");
    const std::string before = onnx_io::serializeModel(m);
    try {
      driver::runPipeline(m, test::parseConfig(R"({"pipeline": ["hadamard-rotation"]})"), nullptr, 0, true);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.code() == ExitCode::kInput);
      CHECK_THAT(e.what(), Catch::Contains("Relu"));
    }
    CHECK(onnx_io::serializeModel(m) == before);
  }
}
