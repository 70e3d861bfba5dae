// The table of the tool's passes: lib/pipeline knows no pass by name; the driver hands this table to
// config loading, the PassManager and `ptq-tool passes`. Adding a pass = one file pair in passes/ and
// one row in registry.cc.
#pragma once
#include "lib/pipeline/pass_registry.h"

namespace ptq::passes {

const pipeline::PassTable& builtinPasses();

}  // namespace ptq::passes
