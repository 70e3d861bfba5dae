// Config parsing: presets load, every bad key/type/value is an error naming the file and key path,
// overrides and skips resolve per layer.
#include <catch2/catch.hpp>

#include "lib/pipeline/config.h"
#include "lib/util/error.h"

using namespace ptq;
using namespace ptq::pipeline;

namespace {
void expectUsageError(const std::string& json, const std::string& fragment) {
  try {
    parseConfig(json, "cfg.json");
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
    QuantConfig c = loadConfig(std::string(PTQ_SOURCE_DIR) + "/configs/" + name + ".json");
    CHECK(c.name == name);
    CHECK(c.pipeline == std::vector<std::string>{"rtn"});
  }
  QuantConfig w4 = loadConfig(std::string(PTQ_SOURCE_DIR) + "/configs/w4a16.json");
  CHECK(w4.weights.bits == 4);
  CHECK(w4.weights.granularity == Granularity::kPerGroup);
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
  expectUsageError(R"({"passes": {"rtn": {"alpha": 0.5}}})", "passes.rtn.alpha: unknown option");
  expectUsageError(R"({"passes": {"nope": {}}})", "passes.nope: unknown pass");
  expectUsageError(R"([1, 2])", "must be an object");
  expectUsageError(R"({"weights": )", "not valid JSON");
}

TEST_CASE("missing config file is a usage error naming it", "[config][errors]") {
  try {
    loadConfig("/nonexistent/cfg.json");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::kUsage);
    CHECK_THAT(e.what(), Catch::Contains("/nonexistent/cfg.json"));
  }
}

TEST_CASE("per-layer overrides and skips resolve in order", "[config]") {
  QuantConfig c = parseConfig(R"({
    "weights": {"bits": 4, "granularity": "group", "group_size": 64},
    "layers": {"skip": ["*lm_head*"]},
    "overrides": [
      {"match": "/layers.0/*", "weights": {"bits": 8, "granularity": "channel"}},
      {"match": "*down_proj*", "op_type": "MatMul", "weights": {"bits": 6}},
      {"match": "*gate*", "skip": true}
    ]})", "cfg.json");
  auto plain = c.settingsFor("/layers.3/q_proj/MatMul", "w_q", "MatMul");
  REQUIRE(plain);
  CHECK(plain->bits == 4);
  CHECK(plain->group_size == 64);
  auto first = c.settingsFor("/layers.0/q_proj/MatMul", "w_q0", "MatMul");
  REQUIRE(first);
  CHECK(first->bits == 8);
  CHECK(first->granularity == Granularity::kPerChannel);
  auto both = c.settingsFor("/layers.0/down_proj/MatMul", "w", "MatMul");  // later override wins on bits
  REQUIRE(both);
  CHECK(both->bits == 6);
  CHECK(both->granularity == Granularity::kPerChannel);
  CHECK(c.settingsFor("/layers.1/down_proj/Gemm", "w", "Gemm")->bits == 4);  // op_type filter
  CHECK_FALSE(c.settingsFor("/lm_head/MatMul", "w", "MatMul"));
  CHECK_FALSE(c.settingsFor("x", "model.gate.weight", "MatMul"));  // matches the weight name
}

TEST_CASE("glob matching", "[config]") {
  CHECK(globMatch("*", ""));
  CHECK(globMatch("a*c", "abbbc"));
  CHECK(globMatch("a?c", "abc"));
  CHECK_FALSE(globMatch("a?c", "ac"));
  CHECK(globMatch("*/mlp/*", "/layers.1/mlp/fc1"));
  CHECK_FALSE(globMatch("*/mlp/*", "/layers.1/attn/q"));
}
