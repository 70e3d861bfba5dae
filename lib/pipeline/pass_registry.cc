#include "lib/pipeline/pass_registry.h"

#include <nlohmann/json.hpp>

#include "lib/util/error.h"
#include "passes/qdq.h"
#include "passes/rtn.h"

namespace ptq::pipeline {

const std::vector<PassInfo>& passRegistry() {
  static const std::vector<PassInfo> table = {
      {"rtn",
       "Round-to-nearest weight quantization with the config's weights settings (bits, symmetric, "
       "granularity, group_size, clip_search) and per-layer overrides.",
       {},
       passes::createRtnPass},
      {"qdq",
       "Activation quantization: runs the float model on the calibration data, observes the inputs and outputs "
       "of the selected layers with the config's \"activations\" observer, and marks them for QuantizeLinear/"
       "DequantizeLinear pairs (plus int32 biases) in the written model.",
       {},
       passes::createQdqPass},
  };
  return table;
}

const PassInfo* findPass(const std::string& name) {
  for (const auto& p : passRegistry())
    if (p.name == name) return &p;
  return nullptr;
}

void validatePassOptions(const PassInfo& info, const nlohmann::json& options, const std::string& where) {
  if (!options.is_object()) throwUsage(where + ": must be an object");
  for (auto it = options.begin(); it != options.end(); ++it) {
    const PassOptionInfo* opt = nullptr;
    for (const auto& o : info.options)
      if (o.name == it.key()) opt = &o;
    if (!opt) {
      std::string known;
      for (const auto& o : info.options) known += (known.empty() ? "" : ", ") + o.name;
      throwUsage(where + "." + it.key() + ": unknown option of pass '" + info.name + "'" +
                 (known.empty() ? " (it takes none)" : " (known: " + known + ")"));
    }
    const auto& v = it.value();
    const bool ok = (opt->type == "int" && v.is_number_integer()) || (opt->type == "float" && v.is_number()) ||
                    (opt->type == "bool" && v.is_boolean()) || (opt->type == "string" && v.is_string());
    if (!ok) throwUsage(where + "." + it.key() + ": must be of type " + opt->type + ", got " + v.dump());
  }
}

}  // namespace ptq::pipeline
