// `ptq-tool inspect MODEL`: what is in a model — op histogram, parameter count, opsets, external
// data, the layers the quantizer would touch (with shapes), and ops the executor cannot run.
#pragma once
#include <string>

namespace ptq::driver {

// Returns the description as JSON text (json = true) or as a readable table.
std::string inspectModel(const std::string& model_path, bool json);

}  // namespace ptq::driver
