// Activation range observers: calibration batches stream through observe() (nothing is kept but
// running statistics or a histogram), compute() turns what was seen into a clipping range and the
// grid parameters of grid.h (paramsForRange, so activations and weights share one formula).
//
//   name            statistic                                    depends on batch cuts / order
//   minmax          exact min / max                              no
//   moving_minmax   per-batch min / max, averaged with momentum  yes, by definition (EMA)
//   percentile      histogram quantile                           only via the histogram range*
//   mse             clip minimizing sum count (fq(c) - c)^2      only via the histogram range*
//   entropy         TensorRT KL-divergence cutoff                only via the histogram range*
//
// * The histogram's range is the first non-empty batch's max |x|, doubled as later batches need
//   (histogram.h). Re-binning is exact, so the histogram, and every result, is a function of the
//   data and the first batch's max |x| alone. A different first batch shifts the bin grid (the
//   final range lies in [max |x|, 2 max |x|)): percentiles move by at most about a bin, the MSE and
//   entropy searches a little more (the entropy threshold of the Laplace test moves 1% when the
//   sample comes in 10 batches instead of one).
// Every result is bit-identical across runs and OpenMP thread counts. An observer parallelizes
// internally; one instance must not be fed from several threads at once.
//
// Exact zeros count for percentiles but are left out of the MSE and entropy searches: 0 is exact on
// every grid, and a ReLU's spike of zeros would otherwise drag the entropy cutoff down.
//
// Ranges: for symmetric grids the result is [-a, a] with a the clip amax; for asymmetric grids
// [lo, hi] with lo <= 0 <= hi (0 is always representable). Histogram observers never report a
// clip beyond the observed min / max.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/quant/grid.h"

namespace ptq::quant {

struct RangeResult {
  float lo = 0.0f;  // clipping range handed to paramsForRange, lo <= 0 <= hi
  float hi = 0.0f;
  GroupParams params;
};

// [min(lo, 0), max(hi, 0)] (widened to [-a, a] for symmetric grids) and its parameters. -0 is
// reported as +0. Requires finite lo and hi.
RangeResult rangeResultFor(float lo, float hi, const GridSpec& g);

// One range for a whole tensor.
class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  // One batch of n values (any layout). Throws ptq::Error (input) naming the index of a NaN/Inf;
  // the batch is then not counted.
  virtual void observe(const float* x, int64_t n) = 0;
  // Throws ptq::Error (input) if no value was observed, (usage) for a bad grid.
  virtual RangeResult compute(const GridSpec& g) const = 0;
  virtual int64_t count() const = 0;  // values observed so far
  virtual const char* name() const = 0;
};

// One range per channel; the channel axis is the last, contiguous one: x is [rows, channels].
class ChannelObserver {
 public:
  virtual ~ChannelObserver() = default;
  // The first batch fixes the channel count; a later batch with another count is an input error.
  virtual void observe(const float* x, int64_t rows, int64_t channels) = 0;
  virtual std::vector<RangeResult> compute(const GridSpec& g) const = 0;
  virtual int64_t channels() const = 0;  // 0 before the first batch
  virtual const char* name() const = 0;
};

// Options a config or the CLI may set. An option the chosen observer does not read is a usage
// error (a key nobody reads must not pass silently), as is a value out of range.
struct ObserverOptions {
  std::optional<double> percentile;  // percentile: in [50, 100], default 99.99
  std::optional<double> momentum;    // moving_minmax: in (0, 1], default 0.01 (weight of the new batch)
  std::optional<int> bins;           // percentile, mse, entropy: |x| bins, even, [16, 2^20], default 2048
};

inline constexpr double kDefaultPercentile = 99.99;
inline constexpr double kDefaultMomentum = 0.01;
inline constexpr int kDefaultBins = 2048;

// "minmax", "moving_minmax", "percentile", "mse", "entropy". Throws ptq::Error (usage) naming the
// observer and the option for an unknown name, an option it does not take or a bad value.
std::unique_ptr<ActivationObserver> makeObserver(const std::string& name, const ObserverOptions& opts = {});
// Per-channel: "minmax" and "moving_minmax".
std::unique_ptr<ChannelObserver> makeChannelObserver(const std::string& name, const ObserverOptions& opts = {});

// The names makeObserver accepts, in table order (for --help and config validation).
std::vector<std::string> observerNames();

}  // namespace ptq::quant
