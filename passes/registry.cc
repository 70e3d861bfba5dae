#include "passes/registry.h"

#include "passes/fold_norms.h"
#include "passes/hadamard_rotation.h"
#include "passes/qdq.h"
#include "passes/rtn.h"
#include "passes/scale_reparam.h"
#include "passes/smooth_quant.h"

namespace ptq::passes {

const pipeline::PassTable& builtinPasses() {
  static const pipeline::PassTable table = {foldNormsPassInfo(), smoothQuantPassInfo(), hadamardRotationPassInfo(), scaleReparamPassInfo(), rtnPassInfo(), qdqPassInfo()};
  return table;
}

}  // namespace ptq::passes
