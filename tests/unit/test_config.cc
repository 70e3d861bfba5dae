// Config parsing: presets load, every bad key/type/value is an error naming the file and key path,
// overrides and skips resolve per layer.
#include <catch2/catch.hpp>

#include <fstream>

#include "lib/pipeline/config.h"
#include "lib/pipeline/pass_manager.h"
#include "lib/pipeline/quant_plan.h"
#include "lib/util/error.h"
#include "passes/registry.h"

using namespace ptq;
using namespace ptq::pipeline;

namespace {
const PassTable& table() { return passes::builtinPasses(); }
QuantConfig parse(const std::string& json) { return parseConfig(json, "cfg.json", table()); }
QuantConfig load(const std::string& path) { return loadConfig(path, table()); }
std::vector<std::string> names(const QuantConfig& c) {
  std::vector<std::string> n;
  for (const auto& p : c.pipeline) n.push_back(p.name());
  return n;
}
std::optional<WeightSettings> settingsFor(const QuantConfig& c, const std::string& node, const std::string& weight,
                                          const std::string& op) {
  return resolveSettings(c, node, weight, op, nullptr);
}

void expectUsageError(const std::string& json, const std::string& fragment) {
  try {
    parse(json);
    FAIL("expected an error for " << json);
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::kUsage);
    CHECK_THAT(e.what(), Catch::StartsWith("cfg.json: "));
    CHECK_THAT(e.what(), Catch::Contains(fragment));
  }
}
}  // namespace

TEST_CASE("presets in configs/ parse", "[config]") {
  for (const char* name : {"w8a16", "w4a16"}) {
    INFO(name);
    QuantConfig c = load(std::string(PTQ_SOURCE_DIR) + "/configs/" + name + ".json");
    CHECK(c.name == name);
    CHECK(names(c) == std::vector<std::string>{"rtn"});
  }
  QuantConfig w4 = load(std::string(PTQ_SOURCE_DIR) + "/configs/w4a16.json");
  CHECK(w4.weights.bits == 4);
  CHECK(w4.weights.granularity == Granularity::kGroup);
  CHECK(w4.weights.group_size == 128);
  CHECK(w4.format == OutputFormat::kMatMulNBits);
}

TEST_CASE("unknown keys, wrong types and out-of-range values name the key", "[config][errors]") {
  expectUsageError(R"({"wieghts": {}})", "wieghts: unknown key");
  expectUsageError(R"({"weights": {"bitz": 4}})", "weights.bitz: unknown key");
  expectUsageError(R"({"weights": {"bits": 9}})", "weights.bits: 9 is out of range 2..8");
  expectUsageError(R"({"weights": {"bits": "4"}})", "weights.bits: must be an integer");
  expectUsageError(R"({"weights": {"granularity": "row"}})", "weights.granularity: 'row' is not one of");
  expectUsageError(R"({"weights": {"group_size": 8}})", "weights.group_size: 8 is out of range 16..256");
  expectUsageError(R"({"pipeline": ["rtn", "magic"]})", "pipeline: unknown pass 'magic'");
  expectUsageError(R"({"format": "tflite"})", "'tflite' is not an output format");
  expectUsageError(R"({"layers": {"op_types": ["Relu"]}})", "layers.op_types: 'Relu' is not a quantizable op type");
  expectUsageError(R"({"overrides": [{"weights": {"bits": 4}}]})", "overrides[0].match: is required");
  expectUsageError(R"({"overrides": [{"match": "*", "weights": {"bits": 1}}]})", "overrides[0].weights.bits: 1 is out of range");
  expectUsageError(R"({"passes": {"rtn": {"alpha": 0.5}}})", "passes.rtn.alpha: unknown option (known: clip_steps, clip_min_ratio)");
  expectUsageError(R"({"passes": {"nope": {}}})", "passes.nope: unknown pass");
  expectUsageError(R"([1, 2])", "must be an object");
  expectUsageError(R"({"weights": )", "not valid JSON");
}

TEST_CASE("missing config file is a usage error naming it", "[config][errors]") {
  try {
    load("/nonexistent/cfg.json");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::kUsage);
    CHECK_THAT(e.what(), Catch::Contains("/nonexistent/cfg.json"));
  }
}

TEST_CASE("per-layer overrides and skips resolve in order", "[config]") {
  QuantConfig c = parse(R"({
    "weights": {"bits": 4, "granularity": "group", "group_size": 64},
    "layers": {"skip": ["*lm_head*"]},
    "overrides": [
      {"match": "/layers.0/*", "weights": {"bits": 8, "granularity": "channel"}},
      {"match": "*down_proj*", "op_type": "MatMul", "weights": {"bits": 6}},
      {"match": "*gate*", "skip": true}
    ]})");
  auto plain = settingsFor(c, "/layers.3/q_proj/MatMul", "w_q", "MatMul");
  REQUIRE(plain);
  CHECK(plain->bits == 4);
  CHECK(plain->group_size == 64);
  auto first = settingsFor(c, "/layers.0/q_proj/MatMul", "w_q0", "MatMul");
  REQUIRE(first);
  CHECK(first->bits == 8);
  CHECK(first->granularity == Granularity::kChannel);
  auto both = settingsFor(c, "/layers.0/down_proj/MatMul", "w", "MatMul");  // later override wins on bits
  REQUIRE(both);
  CHECK(both->bits == 6);
  CHECK(both->granularity == Granularity::kChannel);
  CHECK(settingsFor(c, "/layers.1/down_proj/Gemm", "w", "Gemm")->bits == 4);  // op_type filter
  CHECK_FALSE(settingsFor(c, "/lm_head/MatMul", "w", "MatMul"));
  CHECK_FALSE(settingsFor(c, "x", "model.gate.weight", "MatMul"));  // matches the weight name
}

TEST_CASE("glob matching", "[config]") {
  CHECK(globMatch("*", ""));
  CHECK(globMatch("a*c", "abbbc"));
  CHECK(globMatch("a?c", "abc"));
  CHECK_FALSE(globMatch("a?c", "ac"));
  CHECK(globMatch("*/mlp/*", "/layers.1/mlp/fc1"));
  CHECK_FALSE(globMatch("*/mlp/*", "/layers.1/attn/q"));
}

TEST_CASE("pass options are typed, ranged and filled with defaults when the config loads", "[config][passes]") {
  QuantConfig c = parse(R"({"pipeline": ["rtn"], "passes": {"rtn": {"clip_min_ratio": 0.25}}})");
  REQUIRE(c.pipeline.size() == 1);
  CHECK(c.pipeline[0].options.real("clip_min_ratio") == 0.25);
  CHECK(c.pipeline[0].options.integer("clip_steps") == 20);  // default
  CHECK(c.pipeline[0].options.given("clip_min_ratio"));
  CHECK_FALSE(c.pipeline[0].options.given("clip_steps"));
  expectUsageError(R"({"passes": {"rtn": {"clip_min_ratio": 0}}})", "passes.rtn.clip_min_ratio: must be in (0, 1], got 0");
  expectUsageError(R"({"passes": {"rtn": {"clip_min_ratio": 1.5}}})", "passes.rtn.clip_min_ratio: must be in (0, 1]");
  expectUsageError(R"({"passes": {"rtn": {"clip_steps": 0}}})", "passes.rtn.clip_steps: must be in 1..1000, got 0");
  expectUsageError(R"({"passes": {"rtn": {"clip_steps": 2.5}}})", "passes.rtn.clip_steps: must be int, got 2.5");
  expectUsageError(R"({"pipeline": ["rtn", "qdq"], "activations": {}, "passes": {"qdq": {"observe": "ideal"}}})",
                   "passes.qdq.observe: 'ideal' is not one of: quantized, float");
  // Options of a pass the pipeline does not name are read by nobody.
  expectUsageError(R"({"pipeline": ["rtn"], "passes": {"qdq": {}}})", "passes.qdq: options for a pass the pipeline does not name");
  expectUsageError(R"({"pipeline": ["rtn", "rtn"]})", "pipeline: names pass 'rtn' twice");
}

TEST_CASE("observer options are accepted only next to the observer that reads them", "[config][errors]") {
  const std::string head = R"({"pipeline": ["rtn", "qdq"], "activations": )";
  expectUsageError(head + R"({"observer": "minmax", "percentile": 99.9}})",
                   "activations.percentile: is read only by the 'percentile' observer, not by 'minmax'");
  expectUsageError(head + R"({"observer": "mse", "momentum": 0.1}})", "activations.momentum: is read only by the 'moving_minmax'");
  expectUsageError(head + R"({"bins": 512}})", "activations.bins: is read only by the 'percentile', 'mse', 'entropy' observers");
  expectUsageError(head + R"({"observer": "percentile", "percentile": 20}})", "activations.percentile: must be in [50, 100]");
  expectUsageError(head + R"({"observer": "entropy", "bins": 513}})", "activations.bins: must be even");
  CHECK(parse(head + R"({"observer": "percentile", "percentile": 99.9, "bins": 1024}})").activations.bins == 1024);
  expectUsageError(R"({"pipeline": ["rtn"], "activations": {}})", "activations: is read only by 'qdq', which the pipeline does not name");
  expectUsageError(R"({"pipeline": ["rtn", "qdq"]})", "activations: is required: the pipeline quantizes activations");
}

TEST_CASE("the pipeline is checked as a whole before any pass runs", "[config][passes]") {
  auto expectPipelineError = [](const std::string& json, bool has_calibration, const std::string& fragment) {
    QuantConfig c = parse(json);
    try {
      PassManager::checkPipeline(c, has_calibration);
      FAIL("expected an error for " << json);
    } catch (const Error& e) {
      CHECK(e.code() == ExitCode::kUsage);
      CHECK_THAT(e.what(), Catch::Contains(fragment));
    }
  };
  const std::string w8a8 = R"({"pipeline": ["rtn", "qdq"], "activations": {}})";
  expectPipelineError(w8a8, false, "cfg.json: pipeline: pass 'qdq' needs calibration data");
  CHECK_NOTHROW(PassManager::checkPipeline(parse(w8a8), true));
  expectPipelineError(R"({"pipeline": ["qdq", "rtn"], "activations": {}})", true,
                      "pass 'qdq' observes the model as it will be written, so it must come after 'rtn'");
}

TEST_CASE("the README's example config parses and its pipeline checks out", "[config][readme]") {
  std::ifstream f(std::string(PTQ_SOURCE_DIR) + "/README.md");
  const std::string readme((std::istreambuf_iterator<char>(f)), {});
  // The first JSON block of the Configs section (other sections show manifests and reports).
  const size_t section = readme.find("\n## Configs");
  REQUIRE(section != std::string::npos);
  const size_t start = readme.find("```json\n", section);
  REQUIRE(start != std::string::npos);
  const size_t end = readme.find("```", start + 8);
  REQUIRE(end != std::string::npos);
  const QuantConfig c = parse(readme.substr(start + 8, end - start - 8));
  CHECK(names(c) == std::vector<std::string>{"rtn", "qdq"});
  CHECK(c.pipeline[0].options.real("clip_min_ratio") == 0.6);
  CHECK_NOTHROW(PassManager::checkPipeline(c, true));
}
