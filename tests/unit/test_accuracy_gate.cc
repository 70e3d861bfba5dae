// `ptq-tool quantize --max-drop`: gate expressions (parse and measure on hand-made figures), and the
// CLI on the bundled digits CNN and the zoo's language models: a gate that must fail exits 3 with the
// output written and the report saying which gate and by how much; gates that hold exit 0.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "lib/driver/accuracy_gate.h"
#include "lib/util/error.h"
#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::driver;
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

int usageCode(const std::string& e) {
  try {
    parseAccuracyGate(e);
  } catch (const ptq::Error& err) {
    CHECK_THAT(err.what(), Catch::Contains("--max-drop"));
    return static_cast<int>(err.code());
  }
  return 0;
}

EvalResult lmResult(double ref_ppl, double cand_ppl, int64_t positions, int64_t agree, int64_t ref_ok, int64_t cand_ok) {
  EvalResult r;
  r.language_model = true;
  r.ref_ppl.sum_nll = std::log(ref_ppl) * static_cast<double>(positions);
  r.ref_ppl.count = positions;
  r.cand_ppl.sum_nll = std::log(cand_ppl) * static_cast<double>(positions);
  r.cand_ppl.count = positions;
  r.lm_top1_agree = agree;
  r.lm_ref_correct = ref_ok;
  r.lm_cand_correct = cand_ok;
  OutputEval o;
  o.name = "logits";
  const float a[] = {1, 2, 3}, b[] = {1, 2, 3.5f};
  o.error.add(a, b, 3);
  r.outputs.push_back(o);
  return r;
}
}  // namespace

TEST_CASE("accuracy gate expressions: the accepted forms and the rejected ones", "[gate]") {
  auto g = parseAccuracyGate("ppl:+2%");
  CHECK(g.metric == AccuracyGate::Metric::kPerplexity);
  CHECK(g.limit == AccuracyGate::Limit::kRelativeRise);
  CHECK(g.value == 2);
  g = parseAccuracyGate("ppl:+0.5");
  CHECK(g.limit == AccuracyGate::Limit::kAbsoluteRise);
  CHECK(g.value == 0.5);
  g = parseAccuracyGate("top1:-0.5");
  CHECK(g.metric == AccuracyGate::Metric::kTop1);
  CHECK(g.limit == AccuracyGate::Limit::kAbsoluteDrop);
  g = parseAccuracyGate("agree:>=0.995");
  CHECK(g.metric == AccuracyGate::Metric::kAgreement);
  CHECK(g.value == 0.995);
  CHECK(parseAccuracyGate("cos:>=0.999").metric == AccuracyGate::Metric::kCosine);
  CHECK(parseAccuracyGate("sqnr:>=20").value == 20);
  CHECK(parseAccuracyGate("sqnr:20").limit == AccuracyGate::Limit::kAtLeast);
  CHECK(gateNeedsTokens(parseAccuracyGate("ppl:+1%")));
  CHECK_FALSE(gateNeedsTokens(parseAccuracyGate("top1:-1")));

  for (const char* e : {"", "ppl", "ppl:", "ppl:2%", "ppl:+", "ppl:+x%", "ppl:-2%", "ppl:+2%%", "top1:0.5", "top1:-", "top1:-0.5%",
                        "top1:-101", "agree:>=1.5", "agree:>=", "agree:>=abc", "cos:>=2", "sqnr:>=inf", "sqnr:>= 20", "acc:-1",
                        "PPL:+2%", "sqnr:>=20dB"})
    CHECK(usageCode(e) == 1);
}

TEST_CASE("accuracy gate verdicts on hand-made figures: measured value, limit and margin", "[gate]") {
  // Perplexity 8 -> 8.2: a rise of 2.5% and 0.2.
  const EvalResult lm = lmResult(8.0, 8.2, 1000, 950, 600, 590);
  GateVerdict v = checkAccuracyGate(parseAccuracyGate("ppl:+2%"), lm);
  CHECK_FALSE(v.pass);
  CHECK(v.measured == Approx(2.5));
  CHECK(v.margin == Approx(-0.5));
  CHECK(v.reference == Approx(8.0));
  CHECK(v.candidate == Approx(8.2));
  CHECK_THAT(v.detail, Catch::StartsWith("FAIL ppl:+2%"));
  v = checkAccuracyGate(parseAccuracyGate("ppl:+3%"), lm);
  CHECK(v.pass);
  CHECK(v.margin == Approx(0.5));
  v = checkAccuracyGate(parseAccuracyGate("ppl:+0.5"), lm);
  CHECK(v.pass);
  CHECK(v.measured == Approx(0.2));
  CHECK(v.margin == Approx(0.3));
  // Next-token accuracy 0.600 -> 0.590: a drop of 1 point.
  v = checkAccuracyGate(parseAccuracyGate("top1:-0.5"), lm);
  CHECK_FALSE(v.pass);
  CHECK(v.measured == Approx(1.0));
  CHECK(checkAccuracyGate(parseAccuracyGate("top1:-1.5"), lm).pass);
  v = checkAccuracyGate(parseAccuracyGate("agree:>=0.96"), lm);
  CHECK_FALSE(v.pass);
  CHECK(v.measured == Approx(0.95));
  CHECK(v.margin == Approx(-0.01));
  // Output [1, 2, 3] vs [1, 2, 3.5]: SQNR 10·log10(14 / 0.25).
  v = checkAccuracyGate(parseAccuracyGate("sqnr:>=17"), lm);
  CHECK(v.measured == Approx(10 * std::log10(56.0)));
  CHECK(v.pass);
  CHECK_FALSE(checkAccuracyGate(parseAccuracyGate("sqnr:>=18"), lm).pass);
  CHECK(checkAccuracyGate(parseAccuracyGate("cos:>=0.99"), lm).pass);

  // A perplexity gate on an evaluation without tokens, agreement without a classifier: exit 1.
  EvalResult data;
  try {
    checkAccuracyGate(parseAccuracyGate("ppl:+1%"), data);
    FAIL("no error");
  } catch (const ptq::Error& e) {
    CHECK(e.code() == ptq::ExitCode::kUsage);
    CHECK_THAT(e.what(), Catch::Contains("ppl:+1%"));
  }
  CHECK_THROWS_AS(checkAccuracyGate(parseAccuracyGate("agree:>=0.9"), data), ptq::Error);
}

TEST_CASE("quantize gate on the digits CNN: a failing gate exits 3, writes the model and reports by how much", "[gate][cli]") {
  const std::string dir = tempDir("gate_digits_fail");
  const std::string out = dir + "/d.onnx", report = dir + "/r.json";
  // w4a16 costs SQNR: 60 dB is out of reach; a 5-point accuracy drop is not.
  const auto r = runCommand("'" + toolPath() + "' quantize '" + kDigits + "' -c w4a16 -o '" + out + "' --report '" + report +
                            "' --eval-data '" + kDigitsX + "' --eval-labels '" + kDigitsY + "' --max-drop 'sqnr:>=60' --max-drop top1:-5");
  INFO(r.output);
  CHECK(r.exit_code == 3);
  CHECK(fileExists(out));
  CHECK_THAT(r.output, Catch::Contains("FAIL sqnr:>=60"));
  CHECK_THAT(r.output, Catch::Contains("PASS top1:-5"));
  CHECK_THAT(r.output, Catch::Contains("accuracy gate failed"));
  const nlohmann::json j = nlohmann::json::parse(readAll(report));
  REQUIRE(j["gates"].size() == 2);
  CHECK(j["gates_passed"] == false);
  CHECK(j["gates"][0]["expression"] == "sqnr:>=60");
  CHECK(j["gates"][0]["pass"] == false);
  CHECK(j["gates"][0]["margin"].get<double>() < 0);
  CHECK(j["gates"][0]["measured"].get<double>() == Approx(j["evaluation"]["outputs"][0]["sqnr_db"].get<double>()));
  CHECK(j["gates"][0]["margin"].get<double>() == Approx(j["gates"][0]["measured"].get<double>() - 60));
  CHECK(j["gates"][1]["pass"] == true);
  CHECK(j["evaluation"]["samples"] == 256);
  CHECK(j["layers"].size() > 0);  // still the quantize report
  WARN("digits w4a16: SQNR " << j["gates"][0]["measured"].get<double>() << " dB, accuracy drop "
                             << j["gates"][1]["measured"].get<double>() << " points");
}

TEST_CASE("quantize gate on the digits CNN: gates that hold exit 0, also for a packed output", "[gate][cli]") {
  const std::string dir = tempDir("gate_digits_pass");
  for (const std::string& out : {dir + "/d.onnx", dir + "/d.ptq"}) {
    const auto r = runCommand("'" + toolPath() + "' quantize '" + kDigits + "' -c w8a16 -o '" + out + "' --report '" + dir +
                              "/r.json' --eval-data '" + kDigitsX + "' --eval-labels '" + kDigitsY + "' --eval-batch 32 --eval-samples 128" +
                              " --max-drop top1:-1 --max-drop 'agree:>=0.98' --max-drop 'cos:>=0.999' --max-drop 'sqnr:>=25'");
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(fileExists(out));
    const nlohmann::json j = nlohmann::json::parse(readAll(dir + "/r.json"));
    CHECK(j["gates_passed"] == true);
    CHECK(j["gates"].size() == 4);
    CHECK(j["evaluation"]["samples"] == 128);
    CHECK(j["evaluation"]["batches"] == 4);
  }
  // Evaluation without a gate: figures in the report, exit 0.
  const auto r = runCommand("'" + toolPath() + "' quantize '" + kDigits + "' -c w8a16 -o '" + dir + "/e.onnx' --report '" + dir +
                            "/e.json' --eval-data '" + kDigitsX + "' -q");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  const nlohmann::json j = nlohmann::json::parse(readAll(dir + "/e.json"));
  CHECK(j["evaluation"]["outputs"][0]["classifier"]["top1_agreement"].get<double>() > 0.98);
  CHECK(j["gates"].empty());
}

TEST_CASE("quantize gate errors: a bad expression, a gate without data, perplexity without tokens are exit 1 and write nothing", "[gate][cli]") {
  const std::string dir = tempDir("gate_errors");
  const std::string base = "'" + toolPath() + "' quantize '" + kDigits + "' -c w8a16 -o '" + dir + "/d.onnx' ";
  struct Case {
    std::string args, says;
  };
  for (const Case& c : {Case{"--eval-data '" + kDigitsX + "' --max-drop 'ppl:2%'", "--max-drop 'ppl:2%'"},
                        Case{"--eval-data '" + kDigitsX + "' --max-drop 'bogus:>=1'", "unknown metric 'bogus'"},
                        Case{"--max-drop 'top1:-1'", "needs evaluation data"},
                        Case{"--eval-data '" + kDigitsX + "' --max-drop 'ppl:+1%'", "perplexity needs --eval-tokens"},
                        Case{"--eval-labels '" + kDigitsY + "'", "--eval-labels needs --eval-data"}}) {
    const auto r = runCommand(base + c.args);
    INFO(c.args << "\n" << r.output);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Catch::Contains(c.says));
    CHECK_FALSE(fileExists(dir + "/d.onnx"));
  }
  // Eval data that does not fit the model: exit 2, and the output was already written.
  const auto r = runCommand(base + "--eval-data 'nope=" + kData + "/digits_test_x_256x1x20x20_f32.bin' --max-drop top1:-1");
  INFO(r.output);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("nope"));
}

TEST_CASE("quantize gate on the zoo's gpt-fortunes: a perplexity gate that must fail does, one that must pass does", "[gate][zoo]") {
  PTQ_REQUIRE_ZOO();
  const std::string dir = tempDir("gate_lm");
  const std::string model = zooFile("gpt-fortunes.onnx"), val = zooFile("gpt-fortunes.val.i64");
  const std::string base = "'" + toolPath() + "' quantize '" + model + "' -c w4a16 -o '" + dir + "/g.onnx' --report '" + dir +
                           "/r.json' --eval-tokens '" + val + "' --eval-windows 40 ";
  auto r = runCommand(base + "--max-drop 'ppl:+0.01%' --max-drop 'ppl:+5%' --max-drop 'agree:>=0.5'");
  INFO(r.output);
  CHECK(r.exit_code == 3);
  nlohmann::json j = nlohmann::json::parse(readAll(dir + "/r.json"));
  const auto& lm = j["evaluation"]["language_model"];
  const double rise = 100 * (lm["perplexity_candidate"].get<double>() / lm["perplexity_reference"].get<double>() - 1);
  WARN("gpt-fortunes w4a16, 40 windows: perplexity " << lm["perplexity_reference"].get<double>() << " -> "
                                                     << lm["perplexity_candidate"].get<double>() << " (" << rise << "%)");
  CHECK(lm["windows"] == 40);
  CHECK(j["gates"][0]["pass"] == false);
  CHECK(j["gates"][0]["measured"].get<double>() == Approx(rise));
  CHECK(j["gates"][0]["margin"].get<double>() == Approx(0.01 - rise));
  CHECK(j["gates"][1]["pass"] == true);
  CHECK(j["gates"][2]["pass"] == true);
  r = runCommand(base + "--max-drop 'ppl:+5%' --max-drop 'ppl:+1' --max-drop 'top1:-3' -q");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  j = nlohmann::json::parse(readAll(dir + "/r.json"));
  CHECK(j["gates_passed"] == true);
}
