// PP-OCRv4 recognizer character accuracy in ONNX Runtime on text lines rendered by
// scripts/ocr/make_lines.py (DejaVu fonts, English words and numbers), fp32 against w8a16 and w8a8.
// The recognizer is sensitive to activation quantization, so this is the end-to-end check that it stays
// usable: W8A8 (MSE activation observer, three layers float) within 1 point of fp32 character accuracy, w8a16 within 0.5.
// Needs node + onnxruntime-node, Debian's /usr/bin/python3 with numpy and PIL, the DejaVu fonts and the
// PP-OCRv4 models (scripts/fetch-ocr-models.sh); skips with a message otherwise.
// Every figure is printed (WARN) so the CI log carries the numbers.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "support/ort.h"
#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq::test;
using nlohmann::json;

namespace {

const std::string kSrc = PTQ_SOURCE_DIR;
const std::string kPython = "/usr/bin/python3";  // Debian's, with python3-numpy and python3-pil

// char_accuracy of MODEL on DATA in ONNX Runtime at graph optimization level OPT.
double charAccuracy(const std::string& model, const std::string& data, const std::string& keys, const std::string& opt) {
  const std::string cmd = "node '" + kSrc + "/scripts/ocr/ocr_eval.js' '" + model + "' '" + data + "' '" + keys +
                          "' --batch 25 --opt " + opt;
  auto r = runCommand(cmd);
  INFO(cmd << "\n" << r.output);
  REQUIRE(r.exit_code == 0);
  const json j = lastJsonLine(r.output);
  REQUIRE(j.contains("char_accuracy"));
  return j["char_accuracy"].get<double>();
}

}  // namespace

TEST_CASE("PP-OCRv4 rec: w8a16 and w8a8 character accuracy on rendered lines in ONNX Runtime", "[ort][ocr]") {
  PTQ_REQUIRE_ORT();
  const std::string rec = ocrModel("ch_PP-OCRv4_rec_infer.onnx"), keys = ocrModel("ppocr_keys_v1.txt");
  if (rec.empty() || keys.empty()) PTQ_SKIP("PP-OCRv4 models not fetched (scripts/fetch-ocr-models.sh)");
  if (runCommand(kPython + " -c 'import numpy, PIL'").exit_code != 0 ||
      !fileExists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
    PTQ_SKIP("needs " << kPython << " with numpy and PIL, and the DejaVu fonts "
                      << "(apt-get install python3-numpy python3-pil fonts-dejavu-core, or scripts/setup-deps.sh)");
  const std::string dir = tempDir("ocr_accuracy");

  // Evaluation: 100 clean lines and 100 "hard" lines (low contrast, blur, noise, up to 32 characters: more
  // quantization-sensitive); calibration: 32 clean lines with another seed.
  struct Set {
    std::string name, args;
  };
  const std::vector<Set> sets = {{"clean", "--n 100 --seed 0"}, {"hard", "--n 100 --seed 0 --style hard"}};
  for (const Set& s : std::vector<Set>{sets[0], sets[1], {"calib", "--n 32 --seed 1"}}) {
    const std::string cmd = kPython + " '" + kSrc + "/scripts/ocr/make_lines.py' '" + dir + "/" + s.name + "' " + s.args +
                            " --keys '" + keys + "' --png 0";
    auto r = runCommand(cmd);
    INFO(cmd << "\n" << r.output);
    REQUIRE(r.exit_code == 0);
  }

  // W8A8 with the MSE activation observer and three layers of the backbone's 240-channel stage left float
  // (the 1x1 -> 5x5 depthwise -> 1x1 convs p2o.Conv.12..14, the most sensitive in a skip-one sweep): the
  // one setting that stayed within 1 point of fp32 on every rendered set (clean and hard) and calibration
  // size (32, 64, 128 lines) tried; see scripts/ocr/README.md. The w8a8 preset (mse observer, nothing skipped) is
  // within 1 point on these 100 lines but not robustly (-1.03 points on 200 hard lines with 128 calibration
  // lines; the min/max observer was worse), so it only gets a 2-point guard.
  const std::string w8a8_cfg = dir + "/w8a8-mse-skip.json";
  {
    std::ofstream f(w8a8_cfg);
    f << R"({"name": "w8a8-mse-skip", "format": "qdq", "pipeline": ["rtn", "qdq"],
  "weights": {"bits": 8, "symmetric": true, "granularity": "channel"},
  "activations": {"bits": 8, "symmetric": false, "observer": "mse"},
  "layers": {"op_types": ["MatMul", "Gemm", "Conv"], "skip": ["p2o.Conv.12", "p2o.Conv.13", "p2o.Conv.14"]}})";
  }
  const std::string calib = " --calib 'x=" + dir + "/calib/x.npy'";
  struct Variant {
    std::string name, config, extra;
    double max_drop;
  };
  const std::vector<Variant> variants = {
      {"w8a16", "w8a16", "", 0.005},
      {"w4a16 (preset: 4-bit MatMul, 8-bit Conv)", "w4a16", "", 0.01},
      {"w8a8 (preset, mse observer)", "w8a8", calib, 0.02},
      {"w8a8 (mse observer, Conv.12-14 float)", w8a8_cfg, calib, 0.01},
  };

  std::map<std::string, double> fp32;
  for (const Set& s : sets) {
    fp32[s.name] = charAccuracy(rec, dir + "/" + s.name, keys, "basic");
    WARN("PP-OCRv4 rec fp32: char accuracy " << fp32[s.name] << " on 100 " << s.name << " lines");
  }
  // lower means the preprocessing or decoding is broken, not the quantizer (measured 0.99929 clean, 0.98209 hard)
  CHECK(fp32["clean"] >= 0.99);
  CHECK(fp32["hard"] >= 0.97);

  int i = 0;
  for (const Variant& v : variants) {
    const std::string out = dir + "/rec." + std::to_string(i++) + ".onnx";
    const std::string cmd = "'" + toolPath() + "' quantize '" + rec + "' --config '" + v.config + "' -o '" + out + "'" + v.extra + " -q";
    auto r = runCommand(cmd);
    INFO(cmd << "\n" << r.output);
    REQUIRE(r.exit_code == 0);
    for (const Set& s : sets)
      for (const char* opt : {"basic", "all"}) {
        const double acc = charAccuracy(out, dir + "/" + s.name, keys, opt);
        const double ref = fp32[s.name];
        WARN("PP-OCRv4 rec " << v.name << ", " << s.name << " lines, ORT opt " << opt << ": char accuracy " << acc
                             << " (fp32 " << ref << ", " << 100.0 * (acc - ref) << " points)");
        CHECK(acc >= ref - v.max_drop);
      }
  }
}

// w8a8-auto: no skip list; bit-allocation measures every layer's activations at 8 and 16 bits (KL of the
// outputs on 16 calibration lines) and keeps at most 10% of the layers off 8 bits. Its own test case: the
// 141 measured trials take 5-10 minutes on a loaded 2-core machine. Measured 0.9972 clean, 0.9815 / 0.9805
// hard (ORT basic / all) against fp32 0.9993 / 0.9821.
TEST_CASE("PP-OCRv4 rec: w8a8-auto within 1 point of fp32 character accuracy without a skip list", "[ort][ocr][bit_allocation]") {
  PTQ_REQUIRE_ORT();
  const std::string rec = ocrModel("ch_PP-OCRv4_rec_infer.onnx"), keys = ocrModel("ppocr_keys_v1.txt");
  if (rec.empty() || keys.empty()) PTQ_SKIP("PP-OCRv4 models not fetched (scripts/fetch-ocr-models.sh)");
  if (runCommand(kPython + " -c 'import numpy, PIL'").exit_code != 0 ||
      !fileExists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
    PTQ_SKIP("needs " << kPython << " with numpy and PIL, and the DejaVu fonts");
  const std::string dir = tempDir("ocr_auto");
  for (const auto& [name, args] : std::vector<std::pair<std::string, std::string>>{
           {"clean", "--n 100 --seed 0"}, {"hard", "--n 100 --seed 0 --style hard"}, {"calib", "--n 32 --seed 1"}}) {
    const std::string cmd = kPython + " '" + kSrc + "/scripts/ocr/make_lines.py' '" + dir + "/" + name + "' " + args +
                            " --keys '" + keys + "' --png 0";
    auto r = runCommand(cmd);
    INFO(cmd << "\n" << r.output);
    REQUIRE(r.exit_code == 0);
  }
  const std::string out = dir + "/rec.auto.onnx", report = dir + "/r.json";
  const std::string cmd = "'" + toolPath() + "' quantize '" + rec + "' --config w8a8-auto -o '" + out + "' --calib 'x=" + dir +
                          "/calib/x.npy' -q --report '" + report + "'";
  auto r = runCommand(cmd);
  INFO(cmd << "\n" << r.output);
  REQUIRE(r.exit_code == 0);
  std::ifstream f(report);
  const json rep = json::parse(f);
  for (const auto& p : rep["passes"])
    if (p["name"] == "bit-allocation") {
      CHECK(p["figures"]["used_activations_not_at_8_bits"].get<double>() <= p["figures"]["budget_activations_not_at_8_bits"].get<double>());
      WARN("PP-OCRv4 rec w8a8-auto: " << p["counters"].dump());
    }
  for (const char* set : {"clean", "hard"})
    for (const char* opt : {"basic", "all"}) {
      const double ref = charAccuracy(rec, dir + "/" + set, keys, "basic");
      const double acc = charAccuracy(out, dir + "/" + set, keys, opt);
      WARN("PP-OCRv4 rec w8a8-auto, " << set << " lines, ORT opt " << opt << ": char accuracy " << acc << " (fp32 " << ref
                                      << ", " << 100.0 * (acc - ref) << " points)");
      CHECK(acc >= ref - 0.01);
    }
}
