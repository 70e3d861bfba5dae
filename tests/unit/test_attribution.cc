// Per-layer error attribution (`eval --attribution`, `quantize --eval-attribution`): every quantized
// layer of the candidate is matched to the reference's value of the same name and ranked by SQNR.
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <set>

#include <nlohmann/json.hpp>

#include "lib/driver/eval_job.h"
#include "lib/util/error.h"
#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::driver;
using namespace ptq::test;

namespace {
const std::string kData = std::string(PTQ_SOURCE_DIR) + "/tests/data";
const std::string kDigits = kData + "/digits_cnn.onnx";
const std::string kDigitsX = "x=" + kData + "/digits_test_x_256x1x20x20_f32.bin";

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
}  // namespace

TEST_CASE("eval attribution on the digits CNN: one record per quantized layer, worst SQNR first, named as in the quantize report", "[eval][attribution]") {
  const std::string dir = tempDir("attribution_digits");
  const auto q = runCommand("'" + toolPath() + "' quantize '" + kDigits + "' -c w4a16 -o '" + dir + "/d.onnx' --report '" + dir +
                            "/q.json' --eval-data '" + kDigitsX + "' --eval-samples 64 --eval-attribution -q");
  INFO(q.output);
  REQUIRE(q.exit_code == 0);
  const nlohmann::json report = nlohmann::json::parse(readAll(dir + "/q.json"));
  std::set<std::string> quantized;
  for (const auto& l : report["layers"])
    if (l["bits"].get<int>() > 0) quantized.insert(l["node"].get<std::string>());
  REQUIRE(quantized.size() == 7);
  const auto& attr = report["evaluation"]["attribution"];
  REQUIRE(attr.size() == quantized.size());
  CHECK(report["evaluation"]["attribution_unmatched"].empty());
  std::set<std::string> named;
  for (size_t i = 0; i < attr.size(); ++i) {
    named.insert(attr[i]["node"].get<std::string>());
    CHECK(attr[i]["sqnr_db"].get<double>() > 10);
    CHECK(attr[i]["sqnr_db"].get<double>() < 100);
    if (i) CHECK(attr[i - 1]["sqnr_db"].get<double>() <= attr[i]["sqnr_db"].get<double>());
  }
  CHECK(named == quantized);
  // The last layer's output is the graph output: its SQNR is the output's.
  for (const auto& a : attr)
    if (a["value"] == report["evaluation"]["outputs"][0]["name"])
      CHECK(a["sqnr_db"].get<double>() == Approx(report["evaluation"]["outputs"][0]["sqnr_db"].get<double>()));

  // The CLI table, and a model against itself: nothing quantized, nothing to attribute.
  EvalOptions o;
  o.ref_path = kDigits;
  o.cand_path = kDigits;
  o.data = {kDigitsX};
  o.samples = 16;
  o.attribution = true;
  const EvalResult same = runEval(o);
  CHECK(same.layers.empty());
  o.cand_path = dir + "/d.onnx";
  const EvalResult r = runEval(o);
  CHECK(r.layers.size() == 7);
  CHECK_THAT(r.table(), Catch::Contains("per-layer output error, worst first (7 quantized layers matched, 0 unmatched)"));
}

TEST_CASE("eval attribution on the zoo's gpt-fortunes: MatMulNBits and dynamic MatMulInteger layers all matched", "[eval][attribution][zoo]") {
  PTQ_REQUIRE_ZOO();
  const std::string dir = tempDir("attribution_lm");
  for (const char* cfg : {"w4a16", "w8a8-dynamic"}) {
    const std::string out = dir + "/g-" + std::string(cfg) + ".onnx";
    const auto q = runCommand("'" + toolPath() + "' quantize '" + zooFile("gpt-fortunes.onnx") + "' -c " + cfg + " -o '" + out + "' -q");
    REQUIRE(q.exit_code == 0);
    EvalOptions o;
    o.ref_path = zooFile("gpt-fortunes.onnx");
    o.cand_path = out;
    o.tokens = zooFile("gpt-fortunes.val.i64");
    o.windows = 4;
    o.attribution = true;
    const EvalResult r = runEval(o);
    INFO(cfg << "\n" << r.table());
    CHECK(r.layers.size() == 25);  // 4 blocks x (q, k, v, o, fc, proj) + the head
    CHECK(r.unmatched.empty());
    WARN("gpt-fortunes " << cfg << ": worst layer " << r.layers.front().node << " " << r.layers.front().error.sqnr() << " dB, best "
                         << r.layers.back().node << " " << r.layers.back().error.sqnr() << " dB");
    for (const LayerAttribution& a : r.layers) CHECK(a.error.count > 0);
  }
}

TEST_CASE("eval --isolate K: the K worst layers each evaluated alone, within the all-layers figures", "[eval][attribution]") {
  const std::string dir = tempDir("attribution_isolate");
  const auto q = runCommand("'" + toolPath() + "' quantize '" + kDigits + "' -c w4a16 -o '" + dir + "/d.onnx' -q");
  REQUIRE(q.exit_code == 0);
  EvalOptions o;
  o.ref_path = kDigits;
  o.cand_path = dir + "/d.onnx";
  o.data = {kDigitsX};
  o.labels = kData + "/digits_test_y_256_i64.bin";
  o.samples = 64;
  o.attribution = true;
  o.isolate = 3;
  const EvalResult r = runEval(o);
  REQUIRE(r.layers.size() == 7);
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const LayerAttribution& a = r.layers[i];
    INFO(a.node << ": " << a.isolated.note);
    CHECK(a.isolated.done == (i < 3));
    if (i >= 3) continue;
    // One layer alone costs less than all of them: its output SQNR is at least the all-layers one.
    CHECK(a.isolated.sqnr_db >= r.outputs[0].error.sqnr() - 0.5);
    CHECK(a.isolated.sqnr_db < 200);
    CHECK(a.isolated.agreement > 0.9);
  }
  CHECK_THAT(r.table(), Catch::Contains("only this layer quantized"));
  CHECK(nlohmann::json::parse(r.toJson())["attribution"][0]["isolated"]["sqnr_db"].is_number());
  // --isolate without --attribution is a usage error.
  o.attribution = false;
  CHECK_THROWS_AS(runEval(o), ptq::Error);
}
