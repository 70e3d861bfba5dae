// Configs and pipeline runs for tests, through the same library calls the CLI makes.
#pragma once
#include <string>

#include "lib/driver/pipeline_run.h"
#include "lib/pipeline/config.h"
#include "passes/registry.h"

namespace ptq::test {

inline pipeline::QuantConfig parseConfig(const std::string& json) {
  return pipeline::parseConfig(json, "test.json", passes::builtinPasses());
}

}  // namespace ptq::test
