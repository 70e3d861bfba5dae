// fold-norms: folds the affine part of every normalization into the linear layers that read it.
//
// Before:  y = norm(x) · γ + β ;  z_k = y · W_k + b_k        (every reader of y is a linear layer)
// After:   y = norm(x)          ;  z_k = y · (diag(γ) W_k) + (b_k + β · W_k)
//
// γ is set to 1 and β to 0 (the norm node stays, so ONNX Runtime still fuses it), a bias is created
// where a linear had none, a weight or γ shared with other readers is untied first. Norms matched:
// LayerNormalization, SimplifiedLayerNormalization and their decomposed forms (lib/ir/patterns.h);
// readers may sit behind channel-preserving Gathers (ViT's class-token pick). A norm whose output
// has any other reader (a residual, a graph output, an op that is not a linear) is left unchanged and
// the report says why. This is function-preserving in exact arithmetic; it is what rotation needs
// (a scale-free norm) and what lets smooth-quant fold its scales into γ alone.
#pragma once
#include "lib/pipeline/pass.h"
#include "lib/pipeline/pass_registry.h"

namespace ptq::passes {

pipeline::PassInfo foldNormsPassInfo();

}  // namespace ptq::passes
