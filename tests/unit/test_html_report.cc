// --report-html of quantize, eval and batch: self-contained pages (no scripts, nothing fetched), one
// SVG bar per quantized layer (weight SQNR, output-error attribution) and per batch model, and a
// headless Chromium render that is not blank (skipped, visibly, when Chromium cannot be installed).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <regex>

#include <nlohmann/json.hpp>

#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::test;
using nlohmann::json;

namespace {
const std::string kData = std::string(PTQ_SOURCE_DIR) + "/tests/data";
const std::string kDigits = kData + "/digits_cnn.onnx";
const std::string kDigitsX = "x=" + kData + "/digits_test_x_256x1x20x20_f32.bin";
const std::string kDigitsY = kData + "/digits_test_y_256_i64.bin";

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

void checkSelfContained(const std::string& html) {
  CHECK_THAT(html, Catch::StartsWith("<!DOCTYPE html>"));
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);
  CHECK(html.find("<img") == std::string::npos);
  CHECK(html.find("@import") == std::string::npos);
}

// Chromium (Debian's `chromium`), installed when missing and possible; skips the test case otherwise.
std::string chromium() {
  if (runCommand("command -v chromium").exit_code != 0) {
    if (::geteuid() != 0 || runCommand("command -v apt-get").exit_code != 0) PTQ_SKIP("chromium is not installed and cannot be (needs root and apt-get)");
    const auto r = runCommand("DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y --no-install-recommends chromium");
    if (r.exit_code != 0 || runCommand("command -v chromium").exit_code != 0)
      PTQ_SKIP("apt-get install chromium failed: " << r.output.substr(r.output.size() > 400 ? r.output.size() - 400 : 0));
  }
  return "chromium";
}

// Renders the page headless; returns png_stats.py's line.
std::string screenshot(const std::string& html, const std::string& png) {
  const std::string c = chromium();
  const auto r = runCommand("timeout 120 " + c + " --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-extensions" +
                            " --user-data-dir='" + png + ".profile' --window-size=1100,1400 --screenshot='" + png + "' 'file://" + html + "'");
  INFO(r.output);
  REQUIRE(fileExists(png));
  const auto s = runCommand("python3 '" + std::string(PTQ_SOURCE_DIR) + "/tests/support/png_stats.py' '" + png + "'");
  INFO(s.output);
  REQUIRE(s.exit_code == 0);
  return s.output;
}

void checkNotBlank(const std::string& stats) {
  std::smatch m;
  REQUIRE(std::regex_search(stats, m, std::regex("colours=(\\d+) non_background=([0-9.]+)")));
  WARN("screenshot: " << stats);
  CHECK(std::stoi(m[1]) >= 8);         // text, bars of several colours, table shading
  CHECK(std::stod(m[2]) > 0.02);       // more than 2% of the page is not background
}
}  // namespace

TEST_CASE("quantize and eval --report-html: self-contained, one weight-SQNR bar and one output-SQNR bar per quantized layer", "[html]") {
  const std::string dir = tempDir("html_quantize");
  const auto r = runCommand("'" + toolPath() + "' quantize '" + kDigits + "' -c w4a16 -o '" + dir + "/d.onnx' --report '" + dir + "/r.json' --report-html '" +
                            dir + "/r.html' --eval-data '" + kDigitsX + "' --eval-labels '" + kDigitsY + "' --eval-samples 64 --eval-attribution" +
                            " --max-drop top1:-2 --max-drop 'sqnr:>=60' -q");
  INFO(r.output);
  CHECK(r.exit_code == 3);
  const json report = json::parse(readAll(dir + "/r.json"));
  size_t quantized = 0;
  for (const json& l : report["layers"]) quantized += l["bits"].get<int>() > 0;
  const std::string html = readAll(dir + "/r.html");
  checkSelfContained(html);
  CHECK(count(html, "data-kind=\"weight_sqnr\"") == quantized);
  CHECK(count(html, "data-kind=\"output_sqnr\"") == report["evaluation"]["attribution"].size());
  for (const json& l : report["layers"])
    if (l["bits"].get<int>() > 0) CHECK_THAT(html, Catch::Contains("data-kind=\"weight_sqnr\" data-layer=\"" + l["node"].get<std::string>() + "\""));
  CHECK_THAT(html, Catch::Contains("FAIL: a gate does not hold"));
  CHECK_THAT(html, Catch::Contains("sqnr:&gt;=60"));
  CHECK_THAT(html, Catch::Contains("accuracy (64 labels)"));

  const auto e = runCommand("'" + toolPath() + "' eval '" + kDigits + "' '" + dir + "/d.onnx' --data '" + kDigitsX + "' --samples 32 --attribution --isolate 2 --report-html '" +
                            dir + "/e.html' -q");
  INFO(e.output);
  REQUIRE(e.exit_code == 0);
  const std::string eh = readAll(dir + "/e.html");
  checkSelfContained(eh);
  CHECK(count(eh, "data-kind=\"output_sqnr\"") == quantized);
  CHECK_THAT(eh, Catch::Contains("Only this layer quantized"));
  // An unwritable page is exit 4 before any work.
  CHECK(runCommand("'" + toolPath() + "' quantize '" + kDigits + "' -c w8a16 -o '" + dir + "/x.onnx' --report-html '" + dir + "/no/such/r.html'").exit_code == 4);
  CHECK_FALSE(fileExists(dir + "/x.onnx"));
}

TEST_CASE("batch --report-html: one row and one ratio bar per model, each model's own page", "[html][batch]") {
  const std::string dir = tempDir("html_batch");
  REQUIRE(std::system(("cp '" + kDigits + "' '" + dir + "/'").c_str()) == 0);
  json m = {{"models", {{{"name", "a"}, {"model", "digits_cnn.onnx"}, {"config", "w8a16"}},
                        {{"name", "b"}, {"model", "digits_cnn.onnx"}, {"config", "w4a16"}},
                        {{"name", "c"}, {"model", "missing.onnx"}, {"config", "w8a16"}}}}};
  std::ofstream(dir + "/manifest.json") << m.dump();
  const auto r = runCommand("'" + toolPath() + "' batch '" + dir + "/manifest.json' --out-dir '" + dir + "/out' --report-html '" + dir + "/out/summary.html'");
  INFO(r.output);
  CHECK(r.exit_code == 6);
  const std::string html = readAll(dir + "/out/summary.html");
  checkSelfContained(html);
  CHECK(count(html, "data-kind=\"ratio\"") == 3);
  CHECK(count(html, "<tr class=") == 3);
  CHECK(fileExists(dir + "/out/a/report.html"));
  CHECK_THAT(html, Catch::Contains("<a href=\"a/report.html\">"));
}

TEST_CASE("the HTML report renders in headless Chromium: not blank", "[html][chromium]") {
  const std::string dir = tempDir("html_chromium");
  const auto r = runCommand("'" + toolPath() + "' quantize '" + kDigits + "' -c w4a16 -o '" + dir + "/d.onnx' --report-html '" + dir +
                            "/r.html' --eval-data '" + kDigitsX + "' --eval-labels '" + kDigitsY + "' --eval-samples 64 --eval-attribution --max-drop top1:-2 -q");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const std::string html = readAll(dir + "/r.html");
  CHECK(count(html, "data-kind=\"weight_sqnr\"") == 7);
  checkNotBlank(screenshot(dir + "/r.html", dir + "/r.png"));
  // A blank page is told apart: the check is not vacuous.
  std::ofstream(dir + "/blank.html") << "<!DOCTYPE html><html><body></body></html>";
  const std::string blank = screenshot(dir + "/blank.html", dir + "/blank.png");
  CHECK_THAT(blank, Catch::Contains("colours=1 "));
}
