// PP-OCRv4 recognizer character accuracy in ONNX Runtime on text lines rendered by
// scripts/ocr/make_lines.py (DejaVu fonts, English words and numbers), fp32 against w8a16 and w8a8.
// The recognizer is quantization-sensitive, so this is the end-to-end check that activation
// quantization keeps it usable: W8A8 must stay within 1 point of fp32 character accuracy.
// Needs node + onnxruntime-node, Debian's /usr/bin/python3 with numpy and PIL, the DejaVu fonts and the
// PP-OCRv4 models (scripts/fetch-ocr-models.sh); skips with a message otherwise.
// Every figure is printed (WARN) so the CI log carries the numbers.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::test;
using nlohmann::json;

namespace {

const std::string kSrc = PTQ_SOURCE_DIR;
const std::string kPython = "/usr/bin/python3";  // Debian's, with python3-numpy and python3-pil

std::string ocrAsset(const std::string& name) {
  const char* cache = std::getenv("PTQ_CACHE");
  const std::string base = cache ? cache : std::string(std::getenv("HOME") ? std::getenv("HOME") : "/root") + "/.cache/ptq-tool";
  const std::string p = base + "/ocr/ocr-models-1.4.2/package/assets/" + name;
  return fileExists(p) ? p : "";
}

json lastJson(const std::string& out) {
  std::istringstream in(out);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{') last = line;
  return last.empty() ? json() : json::parse(last);
}

// char_accuracy of MODEL on DATA in ONNX Runtime at graph optimization level OPT.
double charAccuracy(const std::string& model, const std::string& data, const std::string& keys, const std::string& opt) {
  const std::string cmd = "node '" + kSrc + "/scripts/ocr/ocr_eval.js' '" + model + "' '" + data + "' '" + keys +
                          "' --batch 25 --opt " + opt;
  auto r = runCommand(cmd);
  INFO(cmd << "\n" << r.output);
  REQUIRE(r.exit_code == 0);
  const json j = lastJson(r.output);
  REQUIRE(j.contains("char_accuracy"));
  return j["char_accuracy"].get<double>();
}

}  // namespace

TEST_CASE("PP-OCRv4 rec: w8a16 and w8a8 character accuracy on rendered lines in ONNX Runtime", "[ort][ocr]") {
  PTQ_REQUIRE_ORT();
  const std::string rec = ocrAsset("ch_PP-OCRv4_rec_infer.onnx"), keys = ocrAsset("ppocr_keys_v1.txt");
  if (rec.empty() || keys.empty()) {
    WARN("skipped: PP-OCRv4 models not fetched (scripts/fetch-ocr-models.sh)");
    return;
  }
  if (runCommand(kPython + " -c 'import numpy, PIL'").exit_code != 0 ||
      !fileExists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")) {
    WARN("skipped: needs " << kPython << " with numpy and PIL and the DejaVu fonts "
                           << "(apt-get install python3-numpy python3-pil fonts-dejavu-core; scripts/setup-deps.sh)");
    return;
  }
  const std::string dir = tempDir("ocr_accuracy");

  // 100 evaluation lines (seed 0) and 32 calibration lines (seed 1), rendered and preprocessed.
  for (const auto& [name, args] : {std::pair<std::string, std::string>{"eval", "--n 100 --seed 0"}, {"calib", "--n 32 --seed 1"}}) {
    const std::string cmd = kPython + " '" + kSrc + "/scripts/ocr/make_lines.py' '" + dir + "/" + name + "' " + args +
                            " --keys '" + keys + "' --png 0";
    auto r = runCommand(cmd);
    INFO(cmd << "\n" << r.output);
    REQUIRE(r.exit_code == 0);
  }
  const std::string eval = dir + "/eval";

  // W8A8 with the percentile activation observer (see scripts/ocr/README.md for the observer comparison).
  const std::string w8a8_cfg = dir + "/w8a8-percentile.json";
  {
    std::ofstream f(w8a8_cfg);
    f << R"({"name": "w8a8-percentile", "format": "qdq", "pipeline": ["rtn", "qdq"],
  "weights": {"bits": 8, "symmetric": true, "granularity": "channel"},
  "activations": {"bits": 8, "symmetric": false, "observer": "percentile"},
  "layers": {"op_types": ["MatMul", "Gemm", "Conv"]}})";
  }
  struct Variant {
    std::string name, config, extra;
  };
  const std::vector<Variant> variants = {
      {"w8a16", "w8a16", ""},
      {"w8a8", "w8a8", " --calib 'x=" + dir + "/calib/x.npy'"},
      {"w8a8-percentile", w8a8_cfg, " --calib 'x=" + dir + "/calib/x.npy'"},
  };

  const double fp32 = charAccuracy(rec, eval, keys, "basic");
  WARN("PP-OCRv4 rec fp32: char accuracy " << fp32 << " on 100 rendered lines");
  CHECK(fp32 >= 0.97);  // lower means the preprocessing or decoding is broken, not the quantizer

  for (const auto& v : variants) {
    const std::string out = dir + "/rec." + v.name + ".onnx";
    const std::string cmd = "'" + toolPath() + "' quantize '" + rec + "' --config '" + v.config + "' -o '" + out + "'" + v.extra + " -q";
    auto r = runCommand(cmd);
    INFO(cmd << "\n" << r.output);
    REQUIRE(r.exit_code == 0);
    for (const char* opt : {"basic", "all"}) {
      const double acc = charAccuracy(out, eval, keys, opt);
      WARN("PP-OCRv4 rec " << v.name << " (ORT opt " << opt << "): char accuracy " << acc << " (fp32 " << fp32 << ", "
                           << 100.0 * (acc - fp32) << " points)");
      CHECK(acc >= fp32 - 0.01);
    }
  }
}
