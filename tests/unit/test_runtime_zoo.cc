// The executor on the real zoo models: agreement with ONNX Runtime on the same inputs (cosine >=
// 0.999999 and max-abs < 1e-4 for these fp32 models), bit-identical outputs at 1 and 2
// threads, and the published accuracy figures. ORT runs through scripts/ort/ort_run.js; without node and
// scripts/ort/node_modules an agreement test case is skipped (after the executor-only checks ran).
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <fstream>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/npy.h"
#include "lib/runtime/session.h"
#include "support/images.h"
#include "support/test_paths.h"

namespace {
using ptq::ir::Tensor;

std::vector<char> readBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

Tensor loadRaw(const std::string& path, ptq::ir::DType dtype, ptq::ir::Shape shape, int64_t first_rows) {
  const std::vector<char> b = readBytes(path);
  const int64_t row = ptq::ir::shapeNumel(shape) / shape[0];
  shape[0] = first_rows;
  const size_t n = ptq::ir::dtypeStorageBytes(dtype, row * first_rows);
  REQUIRE(b.size() >= n);
  return Tensor::fromBytes(dtype, shape, b.data(), n);
}

struct Agreement {
  double max_abs = 0, cosine = 0;
};

Agreement agree(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.toFloats(), y = b.toFloats();
  Agreement r;
  double dot = 0, nx = 0, ny = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    r.max_abs = std::max(r.max_abs, static_cast<double>(std::abs(x[i] - y[i])));
    dot += static_cast<double>(x[i]) * y[i];
    nx += static_cast<double>(x[i]) * x[i];
    ny += static_cast<double>(y[i]) * y[i];
  }
  r.cosine = dot / std::sqrt(nx * ny);
  return r;
}

bool ortAvailable() {
  return ptq::test::fileExists(std::string(PTQ_SOURCE_DIR) + "/scripts/ort/node_modules/onnxruntime-node") &&
         std::system("node --version > /dev/null 2>&1") == 0;
}

// ORT's output `name` for `feed` (written to a temp folder as .npy).
Tensor ortOutput(const std::string& model, const std::string& input, const Tensor& feed, const std::string& output,
                 const std::string& tag) {
  const std::string dir = ptq::test::tempDir("runtime_zoo_" + tag);
  ptq::calib::writeNpy(dir + "/in.npy", feed);
  const std::string cmd = "node '" + std::string(PTQ_SOURCE_DIR) + "/scripts/ort/ort_run.js' run '" + model + "' -o '" +
                          dir + "/out' --input " + input + "='" + dir + "/in.npy' > '" + dir + "/log.txt' 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return ptq::calib::readNpy(dir + "/out/" + output + ".npy");
}

void checkModel(const std::string& file, const std::string& input, const Tensor& feed, const std::string& output) {
  const std::string path = file[0] == '/' ? file : ptq::test::zooFile(file);
  ptq::ir::Model model = ptq::onnx_io::loadModel(path);
  CHECK(ptq::runtime::unsupportedNodes(model).empty());
  ptq::runtime::Session one(model, {1, {}});
  ptq::runtime::Session two(model, {2, {}});
  const Tensor y1 = one.run({{input, feed}}).at(output);
  const Tensor y2 = two.run({{input, feed}}).at(output);
  CHECK(y1.sameAs(y2));  // bit-identical at any thread count
  const Tensor y1b = one.run({{input, feed}}).at(output);
  CHECK(y1.sameAs(y1b));  // and on a second run (buffers reused)
  if (!ortAvailable()) PTQ_SKIP("ONNX Runtime cross-check: node or scripts/ort/node_modules missing (scripts/setup-deps.sh)");
  const Tensor ref = ortOutput(path, input, feed, output, file);
  REQUIRE(ref.shape() == y1.shape());
  const Agreement a = agree(y1, ref);
  std::printf("ORT agreement %-20s %s: max-abs %.3g, cosine %.9f\n", file.c_str(), ptq::ir::shapeToString(y1.shape()).c_str(),
              a.max_abs, a.cosine);
  // Measured max-abs: digits 2.9e-6, llama-jargon 8.6e-6, gpt-fortunes 1.3e-5, PP-OCRv4 det 9.4e-6, rec 4.2e-6;
  // cosine 1.000000000 (9 decimals) for all five.
  CHECK(a.cosine >= 0.999999);
  CHECK(a.max_abs < 1e-4);
}

// Mean next-token cross-entropy over `windows` windows of 128 tokens -> perplexity.
double perplexity(ptq::runtime::Session& s, const std::vector<int64_t>& tokens, int64_t windows, int64_t batch) {
  double nll = 0;
  int64_t count = 0;
  for (int64_t w0 = 0; w0 < windows; w0 += batch) {
    const int64_t nb = std::min(batch, windows - w0);
    std::vector<int64_t> ids(tokens.begin() + w0 * 128, tokens.begin() + (w0 + nb) * 128);
    const Tensor logits = s.run({{"input_ids", Tensor::fromInt64s({nb, 128}, ids)}}).at("logits");
    const int64_t V = logits.shape()[2];
    const float* p = logits.data<float>();
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t t = 0; t < 128; ++t) {
        const int64_t target = tokens[(w0 + b) * 128 + t + 1];
        const float* row = p + (b * 128 + t) * V;
        double m = row[0], sum = 0;
        for (int64_t v = 1; v < V; ++v) m = std::max<double>(m, row[v]);
        for (int64_t v = 0; v < V; ++v) sum += std::exp(row[v] - m);
        nll += m + std::log(sum) - row[target];
        ++count;
      }
  }
  return std::exp(nll / static_cast<double>(count));
}

std::vector<int64_t> readTokens(const std::string& path) {
  const std::vector<char> b = readBytes(path);
  std::vector<int64_t> t(b.size() / 8);
  std::memcpy(t.data(), b.data(), t.size() * 8);
  return t;
}

}  // namespace

TEST_CASE("executor agrees with ONNX Runtime on the digits CNN", "[runtime][zoo]") {
  PTQ_REQUIRE_ZOO();
  checkModel("digits_cnn.onnx", "x",
             loadRaw(ptq::test::zooFile("calib_x_256x1x20x20_f32.bin"), ptq::ir::DType::kFloat32, {256, 1, 20, 20}, 16), "logits");
}

TEST_CASE("executor agrees with ONNX Runtime on the LLaMA-style LM", "[runtime][zoo]") {
  PTQ_REQUIRE_ZOO();
  checkModel("llama-jargon.onnx", "input_ids",
             loadRaw(ptq::test::zooFile("llama-jargon.calib.i64"), ptq::ir::DType::kInt64, {64, 128}, 4), "logits");
}

TEST_CASE("executor agrees with ONNX Runtime on the GPT-2-style LM", "[runtime][zoo]") {
  PTQ_REQUIRE_ZOO();
  checkModel("gpt-fortunes.onnx", "input_ids",
             loadRaw(ptq::test::zooFile("gpt-fortunes.calib.i64"), ptq::ir::DType::kInt64, {64, 128}, 4), "logits");
}

TEST_CASE("executor reproduces the zoo's published accuracy figures", "[runtime][zoo]") {
  PTQ_REQUIRE_ZOO();
  SECTION("digits CNN test accuracy 0.976") {
    ptq::ir::Model m = ptq::onnx_io::loadModel(ptq::test::zooFile("digits_cnn.onnx"));
    ptq::runtime::Session s(m);
    const Tensor x = loadRaw(ptq::test::zooFile("test_x_1000x1x20x20_f32.bin"), ptq::ir::DType::kFloat32, {1000, 1, 20, 20}, 1000);
    const std::vector<int64_t> y = readTokens(ptq::test::zooFile("test_y_1000_i64.bin"));
    const Tensor logits = s.run({{"x", x}}).at("logits");
    int correct = 0;
    for (int i = 0; i < 1000; ++i) {
      const float* r = logits.data<float>() + i * 10;
      correct += (std::max_element(r, r + 10) - r) == y[i];
    }
    CHECK(correct == 976);
  }
  SECTION("LM validation perplexities 5.829 / 8.373 (first 40 windows within 5%)") {
    // Measured over the first 40 windows: 5.822 (llama-jargon, -0.12% from the published 5.829) and 8.302
    // (gpt-fortunes, -0.85% from 8.373); pinned to 0.1%, and within 5% of the published figures.
    struct Lm {
      std::string name;
      double ppl_full, ppl_40;
    };
    for (const Lm& lm : {Lm{"llama-jargon", 5.829, 5.822}, Lm{"gpt-fortunes", 8.373, 8.302}}) {
      ptq::ir::Model m = ptq::onnx_io::loadModel(ptq::test::zooFile(lm.name + ".onnx"));
      ptq::runtime::Session s(m);
      const double ppl = perplexity(s, readTokens(ptq::test::zooFile(lm.name + ".val.i64")), 40, 8);
      std::printf("%s: perplexity over 40 validation windows %.3f (all 200: %.3f published)\n", lm.name.c_str(), ppl,
                  lm.ppl_full);
      CHECK(ppl == Approx(lm.ppl_40).epsilon(0.001));
      CHECK(ppl == Approx(lm.ppl_full).epsilon(0.05));
    }
  }
}

TEST_CASE("executor agrees with ONNX Runtime on PP-OCRv4 det and rec", "[runtime][ocr]") {
  const std::string det = ptq::test::ocrModel("ch_PP-OCRv4_det_infer.onnx"), rec = ptq::test::ocrModel("ch_PP-OCRv4_rec_infer.onnx");
  if (det.empty() || rec.empty()) PTQ_SKIP("PP-OCRv4 models not fetched (scripts/fetch-ocr-models.sh)");
  const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f}, imagenet_std[3] = {0.229f, 0.224f, 0.225f};
  const float half[3] = {0.5f, 0.5f, 0.5f};
  checkModel(det, "x", ptq::test::strokesImage(96, 160, imagenet_mean, imagenet_std), "sigmoid_0.tmp_0");
  checkModel(rec, "x", ptq::test::strokesImage(48, 320, half, half), "softmax_11.tmp_0");
}
