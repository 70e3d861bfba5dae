// smooth-quant: SmoothQuant (Xiao et al. 2023) — migrates activation outliers into the weights.
//
// Before:  x (outlier channels) → x · W_k                 for the linears k reading x
// After:   x' = x · diag(1/s)    → x' · (diag(s) W_k)      same function, flatter x'
//
// s_j = max|x_j|^α / max_k max|W_k[j, :]|^(1−α) (both clamped at 1e-5), one s per tensor shared by
// every linear reading it (q/k/v, gate/up). Per-channel maxima come from calibration data run
// through the executor on the model as the earlier passes left it. 1/s is folded into the producer:
// a norm's γ and β, or (targets = linears) a previous linear's output columns and bias; when neither
// can absorb it, a Mul(1/s) is inserted before the readers. With auto_alpha, α is searched per tensor
// on a grid (alpha_min … alpha_max, alpha_step) by the quantized output error of its linears on
// sampled calibration rows, Σ_k ‖Q_a(x') Q_w(diag(s) W_k) − x W_k‖², with the config's activation
// grid (bits, symmetric; min/max range) and each layer's weight settings from the plan; the
// unsmoothed layer is a candidate too, so smoothing never makes that error worse. The chosen α, the
// errors and the activations' max/mean ratio before and after go into each layer's history.
// Must run before weight quantization.
#pragma once
#include "lib/pipeline/pass.h"
#include "lib/pipeline/pass_registry.h"

namespace ptq::passes {

pipeline::PassInfo smoothQuantPassInfo();

}  // namespace ptq::passes
