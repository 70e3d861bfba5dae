#include "lib/pipeline/pass_registry.h"

#include <sstream>

namespace ptq::pipeline {

const PassInfo* findPass(const PassTable& table, const std::string& name) {
  for (const auto& p : table)
    if (p.name == name) return &p;
  return nullptr;
}

std::string passNames(const PassTable& table) {
  std::string s;
  for (const auto& p : table) s += (s.empty() ? "" : ", ") + p.name;
  return s;
}

std::string describePasses(const PassTable& table) {
  std::ostringstream o;
  for (const auto& p : table) {
    o << p.name << "\n    " << p.summary << "\n";
    std::vector<std::string> traits;
    if (p.traits.needs_calibration)
      traits.push_back(p.traits.calibration_only_if_static ? "needs calibration data unless activations.dynamic"
                                                           : "needs calibration data");
    if (p.traits.needs_float_weights) traits.push_back("runs before any pass that quantizes weights");
    if (p.traits.quantizes_weights) traits.push_back("quantizes weights");
    if (p.traits.reads_activations) traits.push_back("reads the \"activations\" section");
    if (p.traits.after_weight_quantization) traits.push_back("runs after every pass that quantizes weights");
    if (!traits.empty()) {
      o << "    traits:";
      for (size_t i = 0; i < traits.size(); ++i) o << (i ? "; " : " ") << traits[i];
      o << "\n";
    }
    if (p.options.empty()) o << "    options: none\n";
    for (const auto& opt : p.options) {
      o << "    " << opt.name << " (" << opt.typeName();
      const std::string range = opt.rangeText();
      if (!range.empty()) o << " in " << range;
      o << ", default " << opt.defaultText() << "): " << opt.help << "\n";
    }
  }
  return o.str();
}

}  // namespace ptq::pipeline
