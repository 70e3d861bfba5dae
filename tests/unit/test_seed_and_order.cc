// Contracts of the quantize job that span the CLI: --seed reaches synthetic calibration data (same
// seed => byte-identical output, another seed => other activation ranges), and a config error in a
// later pass's options is reported before the first pass runs (nothing is loaded, run or written).
#include <catch2/catch.hpp>

#include <fstream>

#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::test;

namespace {

const std::string kModel = std::string(PTQ_SOURCE_DIR) + "/tests/data/digits_cnn.onnx";

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void writeAll(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

}  // namespace

TEST_CASE("the seed option reaches synthetic calibration: the same seed gives the same bytes and another seed another model", "[cli][seed]") {
  const std::string dir = tempDir("seed");
  writeAll(dir + "/synthetic.json", R"({"pipeline": ["rtn", "qdq"], "activations": {"observer": "minmax"},
    "calibration": {"synthetic": true, "synthetic_samples": 8}})");
  auto quantize = [&](const std::string& seed_args, const std::string& out) {
    auto r = runCommand("'" + toolPath() + "' quantize '" + kModel + "' --config '" + dir + "/synthetic.json' -o '" + dir +
                        "/" + out + "' " + seed_args + " -q");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    return readAll(dir + "/" + out);
  };
  const std::string a = quantize("--seed 1", "a.onnx");
  const std::string b = quantize("--seed 1", "b.onnx");
  const std::string c = quantize("--seed 2", "c.onnx");
  const std::string d = quantize("", "d.onnx");  // the config's seed (0)
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a != d);
  CHECK(a.size() == c.size());  // same structure; only the observed ranges differ
}

TEST_CASE("an error in the last pass's options is reported before the first pass runs", "[cli][config]") {
  const std::string dir = tempDir("late_option");
  writeAll(dir + "/bad.json", R"({"pipeline": ["rtn", "qdq"], "activations": {},
    "calibration": {"synthetic": true}, "passes": {"qdq": {"observe": "sideways"}}})");
  auto r = runCommand("'" + toolPath() + "' quantize '" + kModel + "' --config '" + dir + "/bad.json' -o '" + dir +
                      "/out.onnx'");
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.output, Catch::Contains("bad.json: passes.qdq.observe: 'sideways' is not one of: quantized, float"));
  CHECK_THAT(r.output, !Catch::Contains("pass 1/2"));   // rtn never started
  CHECK_THAT(r.output, !Catch::Contains("loading"));    // nor was the model read
  CHECK_FALSE(fileExists(dir + "/out.onnx"));
  // The same for a pipeline that cannot run: qdq without calibration data, named before rtn runs.
  writeAll(dir + "/nocalib.json", R"({"pipeline": ["rtn", "qdq"], "activations": {}})");
  r = runCommand("'" + toolPath() + "' quantize '" + kModel + "' --config '" + dir + "/nocalib.json' -o '" + dir + "/out.onnx'");
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.output, Catch::Contains("pass 'qdq' needs calibration data"));
  CHECK_THAT(r.output, !Catch::Contains("pass 1/2"));
  CHECK_FALSE(fileExists(dir + "/out.onnx"));
}
