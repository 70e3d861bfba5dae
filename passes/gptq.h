// gptq: weight quantization that minimizes each layer's output error on calibration data (GPTQ,
// Frantar et al. 2023), layer after layer through the model.
//
// Before:  y = MatMul(x, W)                       W: float32 [K, N] initializer
// After:   y = MatMul(x, W)                       W.quant = {codes, scales, zero points}, method "gptq"
//
// Like rtn, the graph's structure is unchanged and legalize writes the codes GPTQ chose, exactly
// (qdq, MatMulNBits, packed). Per layer: H = (2/N) sum x x^T of the layer's real inputs over the whole
// calibration set (passes/hessian.h), then the solver (passes/gptq_solver.h) with the layer's plan
// settings (bits, symmetric, granularity, groups, clip search: a bit-allocation pass before it is
// obeyed).
//
// Sequential (the default): the model is run block by block (runtime::BlockRunner, cut at the narrowest
// points between layers: the residual stream of a transformer), on the model as it will be written
// (weights already quantized run as their dequantized codes). Inside a block the layers are taken in
// execution order, one distinct input at a time: the input is observed by running the block only as far
// as that value (BlockRunner::observeBlock), its Hessian built, every layer reading it quantized and
// reloaded into the session; at the end the block runs once more with all its layers quantized and its
// outputs feed the next block (from the block's last observed input, kept up to 512 MB, so what leads
// to it is not recomputed; the last block does not run). So layer k's Hessian comes from the quantized
// layers before it, the forward work is about 1.1-1.2 model passes (not layers x passes), and memory
// holds one block boundary per batch, that kept input, and the Hessian being used. `sequential: false` takes every Hessian from
// one run of the model before any layer is quantized (what ONNX Runtime's and INC's GPTQ approximate).
//
// The Hessians are left on the plan records (LayerPlan::hessian) when `keep_hessians` is set, for a
// later pass; Hessians an earlier pass left there (source "float", e.g. bit allocation) are reused
// where they are exact: always without `sequential`, and with it for inputs no quantized layer feeds.
// Layers GPTQ cannot take (embedding Gathers, layers inside If/Loop/Scan bodies, inputs that are not
// float) are rounded to nearest, noted in their history. Per-layer progress goes to stderr (info);
// the report gets each layer's loss ("gptq_loss", and "rtn_loss" for the same grid), damping and time.
#pragma once
#include "lib/pipeline/pass.h"
#include "lib/pipeline/pass_registry.h"

namespace ptq::passes {

pipeline::PassInfo gptqPassInfo();

}  // namespace ptq::passes
