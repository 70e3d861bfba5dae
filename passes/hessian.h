// Layer-input Hessians H = (2/N) sum_t x_t x_t^T, streamed from executor taps batch by batch: the
// analysis gptq minimizes with and a bit-allocation pass weighs quantization errors with (the plan keeps
// them: pipeline::LayerHessian). How a layer's input becomes rows x_t (InputUnfold):
//   MatMul   input [..., K]: every leading index is a row (a batched [B, T, K] input gives B*T tokens);
//   Gemm     A [M, K] (transA: [K, M]);
//   Conv     im2col patches of the input with the conv's kernel, strides, pads (auto_pad too),
//            dilations and groups: one row per output pixel, one H per group over C/group * kh * kw
//            columns, ordered (kh, kw, c) with c fastest (so a weight group along C is a contiguous run
//            of columns; gptq flattens the weight the same way).
// Sums go through runtime GEMMs (X^T X per batch, tiled by shape, only the lower triangle's tiles for wide
// inputs: the same bits at any thread count); im2col works in chunks of output pixels, so memory is H plus one chunk.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/ir/graph.h"
#include "lib/pipeline/quant_plan.h"

namespace ptq::passes {

struct InputUnfold {
  enum class Kind { kRows, kRowsTransposed, kConv };
  Kind kind = Kind::kRows;
  int64_t dim = 0;  // columns of H: K, or C/group * prod(kernel)
  // Conv only (1-D convs use kernel/stride/pad/dilation of height 1).
  int64_t groups = 1, channels = 0;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  std::string auto_pad;  // "" / NOTSET / VALID / SAME_UPPER / SAME_LOWER
  bool one_d = false;

  // Identifies H for one input value: layers with equal keys share it.
  std::string key(const std::string& input_name) const;
};

// How `node` (a plan layer's reader: MatMul, Gemm, Conv) unfolds its input, or nullopt with *why
// filled when its input cannot give a Hessian (Gather, an unsupported attribute).
std::optional<InputUnfold> inputUnfold(const ir::Node& node, const pipeline::LayerPlan& layer, std::string* why);

class HessianAccumulator {
 public:
  HessianAccumulator(InputUnfold u, int threads);
  // One batch of the layer's input (float32). Throws ptq::Error(kInput) for a shape that does not fit.
  void add(const ir::Tensor& x);
  int64_t rows() const { return rows_; }
  // H = (2/N) * sum, tagged with where the inputs came from ("float", "sequential").
  std::shared_ptr<pipeline::LayerHessian> finish(const std::string& source) const;

 private:
  void addRows(const float* x, int64_t n, int64_t g, bool transposed);
  InputUnfold u_;
  int threads_;
  std::vector<float> sum_;  // [groups, dim, dim]
  int64_t rows_ = 0;        // per group
  bool lower_only_ = false; // sum_ holds only tiles on and below the diagonal
};

}  // namespace ptq::passes
