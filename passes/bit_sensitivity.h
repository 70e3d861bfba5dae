// What each bit-width choice of a layer costs, for bit-allocation (bit_allocation.h):
//   hessian   (HAWQ-v3)  Omega_i(b) = Tr(H_i)/n_i * ||Q_b(W_i) - W_i||^2, H_i the layer-input Hessian
//                        (2/N) sum x x^T of the float model on the calibration data (hessian.h; the same
//                        object gptq uses, left on the plan);
//   measured             the increase of the model's output error on calibration samples with only that
//                        layer at b bits (weights), or only that layer's input/output activations on a
//                        b-bit grid: KL(p_float || p_quantized) of the outputs' last axis (softmax of
//                        logits, or the values themselves when they are already probabilities), or their
//                        MSE relative to the float outputs' mean square. One model run per trial.
// And what it weighs: bytes at the true bit width as the .ptq file stores them (codes ceil(n*b/8), float32
// scales, zero points packed at b bits), and multiply-accumulates per sample for BOPs.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lib/ir/graph.h"
#include "lib/pipeline/quant_plan.h"

namespace ptq::calib {
class CalibrationSet;
}
namespace ptq::runtime {
class Session;
}

namespace ptq::passes {

constexpr int kFloatBits = 32;  // the "keep float" candidate's key and width

struct WeightCandidate {
  int bits = 8;                                // 2..8, or kFloatBits
  std::shared_ptr<ir::QuantizedWeight> quant;  // null for float
  double sq_error = 0;                         // ||Q_b(W) - W||^2 (sum over the weight)
  int64_t bytes = 0;                           // as stored in a .ptq file (float: 4 per weight)
};

// The layer's weight at `bits` with its other plan settings (granularity, groups, symmetry, clip search),
// rounded to nearest as rtn would.
WeightCandidate weightCandidate(const pipeline::LayerPlan& layer, int bits, int clip_steps, float clip_min_ratio);

// Bytes of a quantized weight in a .ptq file: codes and zero points at their true width, float32 scales.
int64_t storedBytes(const ir::QuantizedWeight& q);
// The same for `bits` with q's grouping (q's scale count), without quantizing again.
int64_t storedBytesAt(const ir::QuantizedWeight& q, int bits);

// Tr(H)/n over every conv group.
double meanHessianDiagonal(const pipeline::LayerHessian& h);

// H of every layer in `layers` whose input gives one (hessian.h's inputUnfold), from one run of the
// model as it is now over `batches`, left on the layers (LayerPlan::hessian, source "float"; layers
// reading one input share it). Returns the layers that got none, with why.
std::map<pipeline::LayerPlan*, std::string> collectHessians(runtime::Session& session,
                                                            const std::vector<std::map<std::string, ir::Tensor>>& batches,
                                                            const std::vector<pipeline::LayerPlan*>& layers);

enum class OutputMetric { kKl, kMse };

// The float model's outputs on a few calibration batches, and the error of another run against them.
class OutputErrorMeter {
 public:
  // Runs `reference` (the model with nothing quantized) on the first batches of `calibration` holding at
  // least `samples` samples (all when fewer). Keeps every float output of at least one dimension.
  OutputErrorMeter(runtime::Session& reference, const calib::CalibrationSet& calibration, int64_t samples,
                   OutputMetric metric);
  // Mean error over the kept batches of `session`'s outputs (same model, some values quantized).
  double measure(runtime::Session& session);
  int64_t samples() const { return samples_; }
  int64_t runs() const { return runs_; }
  const std::vector<std::map<std::string, ir::Tensor>>& batches() const { return batches_; }
  // Whether the outputs were read as probabilities (rows >= 0 summing to 1) rather than logits.
  bool probabilities() const { return probabilities_; }

 private:
  double error(const ir::Tensor& ref, const ir::Tensor& got) const;
  OutputMetric metric_;
  std::vector<std::map<std::string, ir::Tensor>> batches_;
  std::vector<std::map<std::string, ir::Tensor>> reference_;
  std::vector<std::string> outputs_;
  int64_t samples_ = 0, runs_ = 0;
  bool probabilities_ = false;
};

}  // namespace ptq::passes
