// The CLI end to end: exit codes, error messages naming the file/key, no partial output, and
// byte-identical output at any thread count.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <fstream>

#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::test;

namespace {
const std::string kModel = std::string(PTQ_SOURCE_DIR) + "/tests/data/digits_cnn.onnx";
const std::string kConfigs = std::string(PTQ_SOURCE_DIR) + "/configs";

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void writeAll(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
// Nothing but the listed files in dir (no temp files left behind).
std::string listDir(const std::string& dir) { return runCommand("ls -A '" + dir + "'").output; }
std::string quantizeCmd(const std::string& args) { return "'" + toolPath() + "' quantize " + args; }
}  // namespace

TEST_CASE("quantize writes a model and a report, inspect and passes run", "[cli]") {
  const std::string dir = tempDir("cli_ok");
  auto r = runCommand(quantizeCmd("'" + kModel + "' --config w8a16 -o '" + dir + "/q.onnx' --report '" + dir + "/r.json' -q"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.empty());  // --quiet
  CHECK(fileExists(dir + "/q.onnx"));
  const std::string report = readAll(dir + "/r.json");
  CHECK_THAT(report, Catch::Contains("\"layers_quantized\": 7"));
  CHECK_THAT(report, Catch::Contains("\"form\": \"DequantizeLinear\""));
  CHECK(listDir(dir) == "q.onnx\nr.json\n");

  auto insp = runCommand("'" + toolPath() + "' inspect '" + dir + "/q.onnx' --json");
  REQUIRE(insp.exit_code == 0);
  CHECK_THAT(insp.output, Catch::Contains("\"DequantizeLinear\": 7"));
  auto passes = runCommand("'" + toolPath() + "' passes");
  REQUIRE(passes.exit_code == 0);
  CHECK_THAT(passes.output, Catch::Contains("rtn"));
}

TEST_CASE("same input and config give byte-identical output at 1 and 2 threads", "[cli][determinism]") {
  const std::string dir = tempDir("cli_det");
  const std::string calib = " --calib x=" + std::string(PTQ_SOURCE_DIR) + "/tests/data/digits_test_x_256x1x20x20_f32.bin --calib-samples 64";
  for (const char* preset_name : {"w8a16", "w4a16", "w8a8", "w4a8"}) {
    const std::string preset = preset_name;
    INFO(preset);
    const std::string extra = preset.find("a8") != std::string::npos ? calib : "";
    for (const char* t : {"1", "2"}) {
      auto r = runCommand(quantizeCmd("'" + kModel + "' --config " + preset + extra + " -o '" + dir + "/q" + t + ".onnx' -q --threads " + t));
      INFO(r.output);
      REQUIRE(r.exit_code == 0);
    }
    CHECK(readAll(dir + "/q1.onnx") == readAll(dir + "/q2.onnx"));
    CHECK(readAll(dir + "/q1.onnx").size() > 10000);
  }
}

TEST_CASE("bad input gets a clear error, a documented exit code and no output file", "[cli][errors]") {
  const std::string dir = tempDir("cli_err");
  writeAll(dir + "/not.onnx", "hello, I am not a model");
  writeAll(dir + "/bad.json", R"({"weights": {"bits": 4, "granularty": "group"}})");
  const std::string good = readAll(kModel);
  writeAll(dir + "/trunc.onnx", good.substr(0, good.size() / 3));
  struct Case {
    std::string args;
    int code;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"'" + dir + "/not.onnx' --config w8a16 -o '" + dir + "/o.onnx'", 2, dir + "/not.onnx: not a valid ONNX model"},
      {"'" + dir + "/trunc.onnx' --config w8a16 -o '" + dir + "/o.onnx'", 2, "trunc.onnx"},
      {"'" + dir + "/missing.onnx' --config w8a16 -o '" + dir + "/o.onnx'", 2, "missing.onnx: cannot open model"},
      {"'" + kModel + "' --config '" + dir + "/bad.json' -o '" + dir + "/o.onnx'", 1, "bad.json: weights.granularty: unknown key"},
      {"'" + kModel + "' --config nosuchpreset -o '" + dir + "/o.onnx'", 1, "nosuchpreset: no such config"},
      {"'" + kModel + "' --config w8a16 -o '" + kModel + "'", 1, "refusing to overwrite"},
      {"'" + kModel + "' --config w8a16 -o '" + dir + "/nodir/o.onnx'", 4, "does not exist"},
      {"'" + kModel + "' --config w8a16 -o '" + dir + "/o.onnx' --format tflite", 1, "tflite"},
      {"'" + kModel + "' -o '" + dir + "/o.onnx'", 1, "--config"},
  };
  for (const auto& c : cases) {
    auto r = runCommand(quantizeCmd(c.args));
    INFO(c.args << "\n" << r.output);
    CHECK(r.exit_code == c.code);
    CHECK_THAT(r.output, Catch::Contains(c.fragment));
    CHECK_FALSE(fileExists(dir + "/o.onnx"));
  }
  CHECK(listDir(dir) == "bad.json\nnot.onnx\ntrunc.onnx\n");  // no temp files left behind
}

TEST_CASE("an unwritable output folder is exit code 4 and leaves nothing", "[cli][errors]") {
  if (::geteuid() == 0) {
    // root ignores permission bits; a read-only location still exists: /proc.
    auto r = runCommand(quantizeCmd("'" + kModel + "' --config w8a16 -o /proc/ptq-test.onnx"));
    CHECK(r.exit_code == 4);
    return;
  }
  const std::string dir = tempDir("cli_ro");
  runCommand("chmod a-w '" + dir + "'");
  auto r = runCommand(quantizeCmd("'" + kModel + "' --config w8a16 -o '" + dir + "/o.onnx'"));
  runCommand("chmod u+w '" + dir + "'");
  CHECK(r.exit_code == 4);
  CHECK(listDir(dir).empty());
}
