// The one table of passes. `ptq-tool passes`, config validation ("pipeline" and "passes" keys) and
// pass construction all read it; adding a pass means adding one row in pass_registry.cc.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "lib/pipeline/pass.h"

namespace ptq::pipeline {

struct PassOptionInfo {
  std::string name;
  std::string type;      // "int", "float", "bool", "string"
  std::string default_value;
  std::string help;
};

struct PassInfo {
  std::string name;
  std::string summary;
  std::vector<PassOptionInfo> options;
  // Builds the pass from its validated options (a JSON object as text, "{}" when none were given).
  std::function<std::unique_ptr<Pass>(const std::string& options_json)> create;
};

const std::vector<PassInfo>& passRegistry();
const PassInfo* findPass(const std::string& name);
// Throws Error(kUsage) "<where>.<key>: ..." for unknown keys or wrong types.
void validatePassOptions(const PassInfo& info, const nlohmann::json& options, const std::string& where);

}  // namespace ptq::pipeline
