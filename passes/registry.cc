#include "passes/registry.h"

#include "passes/fold_norms.h"
#include "passes/gptq.h"
#include "passes/qdq.h"
#include "passes/rtn.h"
#include "passes/smooth_quant.h"

namespace ptq::passes {

const pipeline::PassTable& builtinPasses() {
  static const pipeline::PassTable table = {foldNormsPassInfo(), smoothQuantPassInfo(), gptqPassInfo(), rtnPassInfo(), qdqPassInfo()};
  return table;
}

}  // namespace ptq::passes
