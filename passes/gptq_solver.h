// The GPTQ solver for one weight matrix (Frantar et al., "GPTQ", ICLR 2023), with no graph in it:
// W [rows, cols] (rows = output channels, cols = the reduction, in the column order of H) and the
// input Hessian H [cols, cols] = (2/N) X X^T in, codes and grid parameters out, minimizing
// ||W X - W^ X||^2 column by column with optimal-brain-surgeon error feedback:
//
//   dead columns (H_jj = 0): H_jj = 1, W[:, j] = 0;  optional act-order (columns by diag H, descending);
//   H += damp * mean(diag H) * I;  U = upper Cholesky factor of H^-1  (double; lib/runtime/cholesky);
//   for each block of columns [i1, i2):                       (lazy batch updates, one GEMM per block)
//     for i in block: q = Q(w_i); e = (w_i - q) / U_ii; W[:, i+1:i2] -= e U[i, i+1:i2]
//     W[:, i2:] -= E U[i1:i2, i2:]                             (runtime::sgemmParallel)
//
// Grid parameters come from lib/quant (grid.h conventions, fitGroup with the optional MSE clip search),
// so the codes are exactly what the writers store. Per tensor and per channel, they are fitted once on
// W (dead columns zeroed). Groups: contiguous runs of columns (`group_starts`); each group's parameters
// are fitted when its first column is reached, on that row's weights as updated so far (the paper's
// "recomputed every g columns on the updated weights"; blocks are cut at group starts so the updates are
// complete then). With act-order, or static_groups, group parameters are fitted on W before any update
// (the reference's "static groups"), which keeps groups contiguous in the original column order, the
// only grouping ONNX's blocked DequantizeLinear and MatMulNBits can express (no g_idx).
// If the Cholesky factorization fails, damping is multiplied by 10 and retried (up to 1e6 x mean(diag)),
// reported in the result; codes are never computed from a NaN.
// Rows are independent inside a block and the block GEMM tiles by shape, so results are bit-identical
// at any thread count.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "lib/quant/grid.h"

namespace ptq::passes {

struct GptqSettings {
  quant::QuantOptions quant;        // grid (bits, symmetric, signed codes) and clip search
  bool per_tensor = false;          // one parameter set for the whole matrix (group_starts ignored)
  std::optional<quant::GroupParams> tensor_params;  // per_tensor: use these instead of fitting them on W
  std::vector<int64_t> group_starts = {0};  // per row: groups [start_k, start_k+1); {0} = per channel
  double damp = 0.01;               // fraction of mean(diag H) added to the diagonal
  int64_t block_size = 128;         // columns per lazy block
  bool act_order = false;
  bool static_groups = false;
  int threads = 1;
  bool propagate = true;            // false: round to nearest on the same parameters (no error feedback)
};

struct GptqResult {
  std::vector<uint8_t> codes;                 // [rows, cols], one code per byte (grid.h)
  std::vector<quant::GroupParams> params;     // [rows, groups], or one entry (per tensor)
  int64_t groups = 1;
  double damp = 0;                            // the damping fraction finally used
  int damp_retries = 0;                       // Cholesky failures before it
  int64_t dead_columns = 0;
  double objective = 0;                       // sum (w - q)^2 / U_ii^2 / 2 over the processed columns
};

// w: [rows, cols] row-major; h: [cols, cols] row-major (only needs to be symmetric). Throws ptq::Error
// (input) for a non-finite weight or Hessian entry, (internal) when no damping makes H positive definite.
GptqResult gptqQuantize(const float* w, int64_t rows, int64_t cols, const float* h, const GptqSettings& s);

// The dequantized matrix [rows, cols] of a result.
std::vector<float> gptqDequantize(const GptqResult& r, int64_t rows, int64_t cols, const GptqSettings& s);

// (1/2) sum_r d_r H d_r^T for d = W - W^: with H = (2/N) X X^T this is ||W X - W^ X||^2 / N, the output
// error per input row (token) that GPTQ minimizes. Computed with one GEMM, in double for the final sums.
double outputError(const float* w, const float* w_hat, int64_t rows, int64_t cols, const float* h, int threads);

}  // namespace ptq::passes
