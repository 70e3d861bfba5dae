// The arithmetic of smooth-quant (smooth_quant.h), apart from the graph: smoothing scales from
// channel maxima, and the quantized output error of a group of linear layers reading one tensor,
// which auto-α minimises. Pure functions of their arguments, so tests check them on hand values.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lib/pipeline/config.h"
#include "lib/quant/observer.h"

namespace ptq::passes::smooth {

// How the activation is quantized in the error model: the config's activation grid, per tensor
// (range from the per-channel min/max over all calibration data) or per token (each row's range).
struct ActivationGrid {
  int bits = 8;
  bool symmetric = false;
  bool per_token = false;
  // The static observer that will pick the per-tensor range (config "activations.observer"): "" or
  // "minmax" take the exact min/max from ChannelStats; others (mse, percentile, entropy) run on the
  // sampled rows, so the search sees the clipping the qdq pass will apply.
  std::string observer;
  quant::ObserverOptions observer_options;
};

// Statistics of the smoothed tensor per channel j over all calibration data.
struct ChannelStats {
  std::vector<float> absmax, min, max;
};

// One linear layer reading the tensor: its weight as [C, out] row-major floats and how the plan
// quantizes it (null: the weight stays float).
struct LinearTerm {
  std::vector<float> w;
  int64_t out = 0;
  const pipeline::WeightSettings* settings = nullptr;
};

// s_j = max(a_j, 1e-5)^α / max(w_j, 1e-5)^(1−α), clamped at 1e-5: a = activation absmax per
// channel, w = max |W[j, :]| over all the linears.
std::vector<double> smoothingScales(const std::vector<float>& act_absmax, const std::vector<float>& weight_absmax,
                                    double alpha);

// Σ_k ‖Q_a(X · diag(1/s)) · Q_w(diag(s) · W_k) − X · W_k‖² over the rows X [n, C] (s empty:
// unsmoothed). `reference` holds X · W_k per k (referenceOutputs).
double quantizedOutputError(const std::vector<float>& rows, int64_t n, int64_t channels, const ChannelStats& stats,
                            const std::vector<LinearTerm>& linears, const std::vector<std::vector<float>>& reference,
                            const std::vector<double>& s, const ActivationGrid& grid);
std::vector<std::vector<float>> referenceOutputs(const std::vector<float>& rows, int64_t n, int64_t channels,
                                                 const std::vector<LinearTerm>& linears);

// max_j v_j / mean_j v_j (1 for an empty or all-zero vector): how outlier-heavy a tensor's channels are.
double maxOverMean(const std::vector<double>& v);

}  // namespace ptq::passes::smooth
