#include "passes/registry.h"

#include "passes/bit_allocation.h"
#include "passes/fold_norms.h"
#include "passes/gptq.h"
#include "passes/hadamard_rotation.h"
#include "passes/qdq.h"
#include "passes/rtn.h"
#include "passes/scale_reparam.h"
#include "passes/smooth_quant.h"

namespace ptq::passes {

const pipeline::PassTable& builtinPasses() {
  // In the order of ../shared/DESIGN.md's pipeline: transforms, then weight quantizers, then activations.
  static const pipeline::PassTable table = {foldNormsPassInfo(),  smoothQuantPassInfo(), hadamardRotationPassInfo(),
                                            scaleReparamPassInfo(), bitAllocationPassInfo(), gptqPassInfo(),       rtnPassInfo(),
                                            qdqPassInfo()};
  return table;
}

}  // namespace ptq::passes
