// Config keys of dynamic activation quantization: activations.dynamic and activations.granularity,
// the errors that name them, the calibration they no longer need, and their JSON form.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "lib/pipeline/config.h"
#include "lib/pipeline/pass_manager.h"
#include "lib/util/error.h"
#include "passes/registry.h"
#include "support/error_text.h"

using namespace ptq;
using namespace ptq::pipeline;

namespace {
QuantConfig parse(const std::string& json) { return parseConfig(json, "cfg.json", passes::builtinPasses()); }
std::string errorOf(const std::string& json) {
  ExitCode code = ExitCode::kOk;
  const std::string msg = test::errorText([&] { parse(json); }, &code);
  CHECK(code == ExitCode::kUsage);
  return msg;
}
const std::string kPipeline = R"("pipeline": ["rtn", "qdq"], )";
}  // namespace

TEST_CASE("activations.dynamic and activations.granularity parse, with their defaults", "[config][dynamic]") {
  const QuantConfig s = parse("{" + kPipeline + R"("activations": {}})");
  CHECK_FALSE(s.activations.dynamic);
  CHECK(s.activations.granularity == ActivationGranularity::kTensor);
  const QuantConfig d = parse("{" + kPipeline + R"("activations": {"dynamic": true, "granularity": "token", "bits": 4, "symmetric": true}})");
  CHECK(d.activations.dynamic);
  CHECK(d.activations.granularity == ActivationGranularity::kToken);
  CHECK(activationGranularityName(d.activations.granularity) == "token");
  const QuantConfig preset = loadConfig(std::string(PTQ_SOURCE_DIR) + "/configs/w8a8-dynamic.json", passes::builtinPasses());
  CHECK(preset.activations.dynamic);
  CHECK(preset.activations.bits == 8);
  CHECK(preset.activations.granularity == ActivationGranularity::kTensor);
  CHECK_FALSE(preset.needsCalibration());
}

TEST_CASE("dynamic-only and static-only activation keys are errors naming the key", "[config][dynamic][errors]") {
  CHECK(errorOf("{" + kPipeline + R"("activations": {"granularity": "token"}})") ==
        "cfg.json: activations.granularity: 'token' needs \"dynamic\": true (per-token scales are computed at run time)");
  CHECK_THAT(errorOf("{" + kPipeline + R"("activations": {"dynamic": true, "granularity": "row"}})"),
             Catch::Contains("activations.granularity: 'row' is not one of: tensor, token"));
  CHECK_THAT(errorOf("{" + kPipeline + R"("activations": {"dynamic": "yes"}})"),
             Catch::Contains("activations.dynamic: must be true or false"));
  for (const char* key : {R"("observer": "mse")", R"("observer": "percentile", "percentile": 99.9)",
                          R"("observer": "moving_minmax", "momentum": 0.9)", R"("bins": 256)"}) {
    INFO(key);
    const std::string msg = errorOf("{" + kPipeline + R"("activations": {"dynamic": true, )" + key + "}}");
    CHECK_THAT(msg, Catch::StartsWith("cfg.json: activations."));
    CHECK_THAT(msg, Catch::Contains("is read only by static quantization, not with \"dynamic\": true"));
  }
  CHECK_THAT(errorOf("{" + kPipeline + R"("activations": {"dynamic": true, "op_types": ["MatMul", "Add"]}})"),
             Catch::Contains("activations.op_types: 'Add' is read only by static quantization"));
  CHECK(errorOf("{" + kPipeline + R"("activations": {"dynamic": true}, "calibration": {"synthetic": true}})") ==
        "cfg.json: calibration: is read by no pass: activations are dynamic and no other pass of the pipeline needs "
        "calibration data");
}

TEST_CASE("the qdq pass needs calibration data only for static activations", "[config][dynamic]") {
  const QuantConfig s = parse("{" + kPipeline + R"("activations": {}})");
  CHECK(s.needsCalibration());
  CHECK_THAT(test::errorText([&] { PassManager::checkPipeline(s, false); }),
             Catch::Contains("pass 'qdq' needs calibration data"));
  const QuantConfig d = parse("{" + kPipeline + R"("activations": {"dynamic": true}})");
  CHECK_FALSE(d.needsCalibration());
  CHECK_NOTHROW(PassManager::checkPipeline(d, false));
  const PassInfo* qdq = findPass(passes::builtinPasses(), "qdq");
  REQUIRE(qdq);
  CHECK(qdq->traits.needsCalibration(false));
  CHECK_FALSE(qdq->traits.needsCalibration(true));
  CHECK_THAT(describePasses(passes::builtinPasses()), Catch::Contains("needs calibration data unless activations.dynamic"));
}

TEST_CASE("configToJson writes the dynamic keys, and a static config's JSON is unchanged", "[config][dynamic]") {
  const nlohmann::json d = nlohmann::json::parse(
      configToJson(parse("{" + kPipeline + R"("activations": {"dynamic": true, "granularity": "token"}})")));
  CHECK(d["activations"]["dynamic"] == true);
  CHECK(d["activations"]["granularity"] == "token");
  CHECK_FALSE(d["activations"].contains("observer"));
  const nlohmann::json s = nlohmann::json::parse(configToJson(parse("{" + kPipeline + R"("activations": {"observer": "mse"}})")));
  CHECK(s["activations"] == nlohmann::json::parse(R"({"bits": 8, "symmetric": false, "observer": "mse",
                                                     "op_types": ["MatMul", "Gemm", "Conv"]})"));
  // Round trip: the written JSON parses back to the same settings.
  const QuantConfig back = parse(d.dump());
  CHECK(back.activations.dynamic);
  CHECK(back.activations.granularity == ActivationGranularity::kToken);
}
