// What a pass declares about itself: name, summary, typed options, and what it needs from the
// pipeline. The table itself lives with the passes (passes/registry.cc fills it: passes::builtinPasses),
// so lib/pipeline knows no pass by name; config loading, `ptq-tool passes` and the PassManager's
// up-front checks all read the table they are given.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/pipeline/pass_options.h"

namespace ptq::pipeline {

class Pass;

// What a pass needs and does, checked for the whole pipeline before any pass runs.
struct PassTraits {
  bool needs_calibration = false;          // reads calibration data (--calib or the config's section)
  bool calibration_only_if_static = false; // ...but only for static activations (activations.dynamic = false)
  bool needs_float_weights = false;        // must run before every pass that quantizes weights
  bool quantizes_weights = false;          // attaches weight quantization
  bool reads_activations = false;          // reads the config's "activations" section (which it then requires)
  bool after_weight_quantization = false;  // observes the model as written: must run after every pass that quantizes weights

  // Whether the pass needs calibration data for a config whose activations are (not) dynamic.
  bool needsCalibration(bool dynamic_activations) const {
    return needs_calibration && !(calibration_only_if_static && dynamic_activations);
  }
};

struct PassInfo {
  std::string name;
  std::string summary;
  std::vector<OptionSpec> options;
  PassTraits traits;
  bool in_default_pipeline = false;  // part of the pipeline of a config that names none (in table order)
  // Builds the pass from its validated options.
  std::function<std::unique_ptr<Pass>(const OptionValues& options)> create;
};

using PassTable = std::vector<PassInfo>;

const PassInfo* findPass(const PassTable& table, const std::string& name);
// "rtn, qdq" for messages.
std::string passNames(const PassTable& table);
// The table as text for `ptq-tool passes`: each pass, its summary, traits and options (type, range, default).
std::string describePasses(const PassTable& table);

}  // namespace ptq::pipeline
