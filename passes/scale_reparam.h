// scale-reparam: RepQ-ViT (Li et al. 2023) scale reparameterization of post-LayerNorm activations,
// and (softmax_bits > 0) a post-Softmax quantizer: its log√2 grid or a uniform one (softmax_quant.h).
//
// A LayerNorm output has very different ranges per channel; one per-tensor quantizer fits it badly.
// From calibration data, per-channel asymmetric parameters (s_c, z_c) on the activation grid
// (activations.bits; range [min(x,0), max(x,0)]) are turned into one (s̃, z̃) = (mean s, mean z):
//   r = s / s̃,   b = s̃·(z̃ − z)
//   γ' = γ / r,  β' = β / r − b             (the norm now outputs y' = y / r − b: one range for all channels)
//   W' = diag(r)·W,  bias' = bias + b·W'     (every linear reading the norm: the same function)
// r is clamped to [1/64, 64] (a dead channel must not blow up γ'). Norms read by anything but linear
// layers, or without a shift it can set (decomposed without Add(β)), are left unchanged and reported.
// Needs calibration data; must run before fold-norms (it needs γ and β) and weight quantization.
#pragma once
#include "lib/pipeline/pass.h"
#include "lib/pipeline/pass_registry.h"

namespace ptq::passes {

pipeline::PassInfo scaleReparamPassInfo();

}  // namespace ptq::passes
