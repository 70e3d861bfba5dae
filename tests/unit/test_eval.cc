// `ptq-tool eval`: the metric functions on hand-computed cases, eval of a model against itself, the
// digits CNN against its w8a16 quantization (bundled data), and the zoo's language models.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "formats/onnx/onnx_io.h"
#include "lib/driver/eval_job.h"
#include "lib/driver/eval_metrics.h"
#include "lib/util/error.h"
#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::driver;
using namespace ptq::driver::eval;
using namespace ptq::test;

namespace {
const std::string kData = std::string(PTQ_SOURCE_DIR) + "/tests/data";
const std::string kDigits = kData + "/digits_cnn.onnx";
const std::string kDigitsX = "x=" + kData + "/digits_test_x_256x1x20x20_f32.bin";
const std::string kDigitsY = kData + "/digits_test_y_256_i64.bin";

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string quantizeW8a16(const std::string& model, const std::string& out) {
  const auto r = runCommand("'" + toolPath() + "' quantize '" + model + "' --config w8a16 -o '" + out + "' -q");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  return out;
}

EvalOptions digitsOptions(const std::string& cand) {
  EvalOptions o;
  o.ref_path = kDigits;
  o.cand_path = cand;
  o.data = {kDigitsX};
  o.labels = kDigitsY;
  return o;
}
}  // namespace

TEST_CASE("eval metrics: max/mean abs, cosine, SQNR on hand-computed cases", "[eval]") {
  const float ref[] = {1, 2, 3}, cand[] = {1, 2, 4};
  ErrorStats e;
  e.add(ref, cand, 3);
  CHECK(e.count == 3);
  CHECK(e.max_abs == 1.0);
  CHECK(e.meanAbs() == Approx(1.0 / 3));
  // Σref² = 14, Σ(ref−cand)² = 1 → 10·log10(14); cosine 17 / sqrt(14·21).
  CHECK(e.sqnr() == Approx(10 * std::log10(14.0)));
  CHECK(e.cosineSimilarity() == Approx(17 / std::sqrt(294.0)));

  ErrorStats same;
  same.add(ref, ref, 3);
  CHECK(same.max_abs == 0);
  CHECK(same.sqnr() == kMaxSqnrDb);
  CHECK(same.cosineSimilarity() == Approx(1.0).epsilon(1e-15));

  // Accumulating over two batches equals one pass.
  ErrorStats split;
  split.add(ref, cand, 2);
  split.add(ref + 2, cand + 2, 1);
  CHECK(split.sum_err2 == e.sum_err2);
  CHECK(split.sqnr() == e.sqnr());

  CHECK(sqnrDb(100, 1) == Approx(20));
  CHECK(sqnrDb(1, 0) == kMaxSqnrDb);
  CHECK(sqnrDb(1e30, 1e-30) == kMaxSqnrDb);  // capped
  CHECK(cosine(0, 1, 1) == 0);               // orthogonal
  CHECK(cosine(-2, 2, 2) == -1);             // opposite
  CHECK(cosine(0, 0, 0) == 1);               // both zero: equal
  CHECK(cosine(0, 0, 3) == 0);

  const float nan_ref[] = {1, NAN}, nan_cand[] = {1, 1};
  ErrorStats n;
  n.add(nan_ref, nan_cand, 2);
  CHECK(n.non_finite == 1);
  CHECK(n.count == 1);
}

TEST_CASE("eval metrics: top-k, top-1/top-5 agreement and accuracy", "[eval]") {
  const float row[] = {0.1f, 0.5f, 0.3f, 0.5f, 0.2f, 0.0f};
  CHECK(topK(row, 6, 3) == std::vector<int64_t>{1, 3, 2});  // tie 1/3: lower index first
  CHECK(argmax(row, 6) == 1);
  CHECK(topK(row, 6, 10).size() == 6);

  // 3 samples, 6 classes. Sample 0: same arg-max (2). Sample 1: ref's best (0) is the candidate's 3rd.
  // Sample 2: ref's best (0) is the candidate's worst (6th), outside its top 5.
  const float ref[] = {0, 0, 9, 0, 0, 0,  //
                       9, 0, 0, 0, 0, 0,  //
                       9, 1, 1, 1, 1, 1};
  const float cand[] = {0, 1, 8, 0, 0, 0,  //
                        7, 9, 8, 0, 0, 0,  //
                        0, 5, 4, 3, 2, 1};
  const int64_t labels[] = {2, 1, 0};
  ClassStats c;
  c.add(ref, cand, 3, 6, labels);
  CHECK(c.samples == 3);
  CHECK(c.top1_agree == 1);
  CHECK(c.top5_agree == 2);
  CHECK(c.top1Agreement() == Approx(1.0 / 3));
  CHECK(c.top5Agreement() == Approx(2.0 / 3));
  CHECK(c.refAccuracy() == Approx(2.0 / 3));   // 2, 0, 0 vs labels 2, 1, 0
  CHECK(c.candAccuracy() == Approx(2.0 / 3));  // 2, 1, 1 vs labels 2, 1, 0
}

TEST_CASE("eval metrics: perplexity of known distributions and the window count", "[eval]") {
  // Uniform logits over V classes: perplexity V exactly, whatever the target.
  for (int64_t V : {2, 7, 155}) {
    std::vector<float> logits(static_cast<size_t>(V), 3.25f);
    PerplexityStats p;
    for (int64_t t = 0; t < V; ++t) p.add(nextTokenNll(logits.data(), V, t));
    CHECK(p.perplexity() == Approx(static_cast<double>(V)).epsilon(1e-12));
  }
  // p = (1/2, 1/4, 1/4): −log p(target).
  const float lp[] = {std::log(0.5f), std::log(0.25f), std::log(0.25f)};
  CHECK(nextTokenNll(lp, 3, 0) == Approx(std::log(2.0)).epsilon(1e-7));
  CHECK(nextTokenNll(lp, 3, 2) == Approx(std::log(4.0)).epsilon(1e-7));
  // Large logits do not overflow (max subtracted).
  const float big[] = {1000.f, 1000.f};
  CHECK(nextTokenNll(big, 2, 1) == Approx(std::log(2.0)));
  PerplexityStats two;
  two.add(std::log(2.0));
  two.add(std::log(8.0));
  CHECK(two.perplexity() == Approx(4.0));  // exp(mean of log 2, log 8)

  CHECK(wholeWindows(25601, 128) == 200);  // the zoo's validation files: 200 windows + 1 target
  CHECK(wholeWindows(25600, 128) == 199);
  CHECK(wholeWindows(129, 128) == 1);
  CHECK(wholeWindows(128, 128) == 0);
}

TEST_CASE("eval of a model against itself: cosine 1, SQNR 200, agreement 1, digits fp32 accuracy 0.988", "[eval]") {
  const EvalResult r = runEval(digitsOptions(kDigits));
  REQUIRE(r.outputs.size() == 1);
  const OutputEval& o = r.outputs[0];
  CHECK(r.samples == 256);
  CHECK(r.batches == 32);
  CHECK(o.error.max_abs == 0);
  CHECK(o.error.cosineSimilarity() == Approx(1.0).epsilon(1e-12));
  CHECK(o.error.sqnr() == kMaxSqnrDb);
  REQUIRE(o.classifier);
  CHECK(o.classes.top1Agreement() == 1.0);
  CHECK(o.classes.top5Agreement() == 1.0);
  CHECK(o.classes.labelled == 256);
  CHECK(o.classes.refAccuracy() == Approx(0.988).margin(0.0005));  // 253 of 256
  CHECK(o.classes.ref_correct == 253);
}

TEST_CASE("eval CLI: digits against w8a16 (table, JSON report) and errors with the README's exit codes", "[eval][cli]") {
  const std::string dir = tempDir("eval_cli");
  const std::string q = quantizeW8a16(kDigits, dir + "/digits.w8a16.onnx");
  const std::string tool = "'" + toolPath() + "' eval ";
  auto r = runCommand(tool + "'" + kDigits + "' '" + q + "' --data '" + kDigitsX + "' --labels '" + kDigitsY + "' --report '" + dir +
                      "/r.json' --batch 16");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("top-1 agreement"));
  CHECK_THAT(r.output, Catch::Contains("SQNR dB"));
  const nlohmann::json j = nlohmann::json::parse(readAll(dir + "/r.json"));
  const auto& c = j["outputs"][0]["classifier"];
  WARN("digits w8a16: top-1 agreement " << c["top1_agreement"].get<double>() << ", accuracy fp32 "
                                        << c["accuracy_reference"].get<double>() << " w8a16 " << c["accuracy_candidate"].get<double>()
                                        << ", SQNR " << j["outputs"][0]["sqnr_db"].get<double>() << " dB");
  CHECK(j["batches"] == 16);
  CHECK(c["accuracy_reference"].get<double>() == Approx(0.988).margin(0.0005));
  CHECK(c["top1_agreement"].get<double>() >= 0.99);
  CHECK(c["top5_agreement"].get<double>() >= 0.99);
  CHECK(j["outputs"][0]["sqnr_db"].get<double>() > 20);

  // Errors: missing file (2, named), unknown input (2, named), neither --tokens nor --data (1),
  // models with different outputs (2), a report into a missing folder (4).
  r = runCommand(tool + "'" + kDigits + "' '" + dir + "/missing.onnx' --data '" + kDigitsX + "'");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("missing.onnx"));
  r = runCommand(tool + "'" + kDigits + "' '" + q + "' --data 'nope=" + kData + "/digits_test_x_256x1x20x20_f32.bin'");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("nope"));
  r = runCommand(tool + "'" + kDigits + "' '" + q + "' --data 'x=" + dir + "/absent.npy'");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("absent.npy"));
  r = runCommand(tool + "'" + kDigits + "' '" + q + "'");
  CHECK(r.exit_code == 1);
  r = runCommand(tool + "'" + kDigits + "' '" + q + "' --data '" + kDigitsX + "' --report '" + dir + "/no/such/r.json'");
  CHECK(r.exit_code == 4);
  if (!zooDir().empty()) {
    // A language model has other input and output names.
    r = runCommand(tool + "'" + kDigits + "' '" + zooFile("llama-jargon.onnx") + "' --data '" + kDigitsX + "'");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.output, Catch::Contains("different inputs"));
  }
}

TEST_CASE("eval on the zoo's language models: fp32 perplexity and w8a16 delta", "[eval][zoo]") {
  PTQ_REQUIRE_ZOO();
  const std::string dir = tempDir("eval_lm");
  // All 200 windows (about 3 s per model pair): the zoo's published 5.829 / 8.373.
  struct Lm {
    std::string name;
    double ppl;
  };
  for (const Lm& lm : {Lm{"llama-jargon", 5.829}, Lm{"gpt-fortunes", 8.373}}) {
    const std::string model = zooFile(lm.name + ".onnx");
    EvalOptions o;
    o.ref_path = model;
    o.cand_path = lm.name == "llama-jargon" ? quantizeW8a16(model, dir + "/" + lm.name + ".w8a16.onnx") : model;
    o.tokens = zooFile(lm.name + ".val.i64");
    const EvalResult r = runEval(o);
    const double ref = r.ref_ppl.perplexity(), cand = r.cand_ppl.perplexity();
    WARN(lm.name << ": perplexity over 200 windows fp32 " << ref << ", candidate " << cand << " (" << 100 * (cand / ref - 1) << "%)");
    CHECK(r.ref_ppl.count == 200 * 128);
    CHECK(ref == Approx(lm.ppl).margin(0.0005));
    CHECK(std::fabs(cand / ref - 1) < 0.005);
    if (o.cand_path == model) CHECK(r.outputs[0].error.sqnr() == kMaxSqnrDb);
  }
}

TEST_CASE("eval with --data: a float N x T x C output is a per-position classifier (top-1 agreement over the N x T positions)", "[eval]") {
  const std::string dir = tempDir("eval_per_position");
  // Reference y = x, candidate y = x * [1, 1, 0.5]: a position disagrees exactly where class 2 is the
  // largest and halving it loses the lead.
  const std::string head = "<ir_version: 8, opset_import: [\"\" : 17]> g (float[N, 4, 3] x) => (float[N, 4, 3] y) ";
  ptq::onnx_io::saveModel(ptq::onnx_io::parseModelText(head + "{ y = Identity(x) }"), dir + "/ref.onnx");
  ptq::onnx_io::saveModel(ptq::onnx_io::parseModelText(head + "{ w = Constant <value = float[3] {1, 1, 0.5}> () \n y = Mul(x, w) }"),
                          dir + "/cand.onnx");
  std::vector<float> x(6 * 4 * 3);
  int64_t agree = 0;
  for (size_t p = 0; p < 24; ++p) {
    const float a = static_cast<float>((p * 7) % 5), b = static_cast<float>((p * 3) % 4), c = static_cast<float>((p * 5) % 7);
    x[p * 3] = a;
    x[p * 3 + 1] = b;
    x[p * 3 + 2] = c;
    const int ref = argmax(&x[p * 3], 3);
    const float half[] = {a, b, c * 0.5f};
    agree += ref == argmax(half, 3);
  }
  {
    std::ofstream f(dir + "/x.bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(x.size() * 4));
  }
  EvalOptions o;
  o.ref_path = dir + "/ref.onnx";
  o.cand_path = dir + "/cand.onnx";
  o.data = {"x=" + dir + "/x.bin"};
  o.data_shape = "6x4x3";
  o.batch = 4;
  const EvalResult r = runEval(o);
  REQUIRE(r.outputs.size() == 1);
  CHECK(r.outputs[0].per_position);
  CHECK(r.outputs[0].classifier);
  CHECK(r.outputs[0].classes.samples == 24);
  CHECK(r.outputs[0].classes.top1_agree == agree);
  CHECK(agree < 24);
  CHECK_THAT(r.table(), Catch::Contains("(24 positions)"));
}
