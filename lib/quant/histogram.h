// Streaming value histogram for the calibration observers (percentile, MSE, entropy) and the
// search kernels that read it. No graph here: plain pointers and counts.
//
// Layout: `bins` bins of width w = range / bins over |x| in [0, range], kept twice: once for x >= 0
// (+0 and -0 included) and once for x < 0. Value x goes to |x| bin j = min(floor(|x| * (bins /
// range)), bins - 1) on its side. Folding the two sides gives the |x| histogram TensorRT's entropy
// calibration uses; laid end to end (negative side reversed) they are a uniform histogram of
// 2 * bins bins over [-range, range] for asymmetric grids. Because both views come from the same
// index, they agree exactly.
//
// Streaming without holding the data: the first non-empty batch sets range = max |x| of that batch
// times kHistogramHeadroom (at least kMinHistogramRange). A later batch whose max |x| (times the
// headroom) exceeds the range doubles it until the batch fits, merging bins in pairs. The headroom
// keeps every |x| * (bins / range) strictly below bins, so no value is ever clamped into the top bin
// and doubling is exact: bins / (2 range) is exactly half of bins / range, and the merged histogram
// is the one direct binning at the final range gives. A histogram therefore depends on the data and
// on the first batch's max |x| only, never on how later batches were cut or ordered. Observing the
// same batches in the same order is bit-identical at any thread count (per-thread integer counts
// are summed exactly).
//
// Exact zeros are also counted apart (zeros()): they sit in positive bin 0 like any other value, and
// the MSE and entropy searches leave them out, as 0 is exact on every grid (see observer.h).
#pragma once
#include <cstdint>
#include <vector>

#include "lib/quant/grid.h"

namespace ptq::quant {

// A first batch of zeros (or denormals) still needs a positive range so that bins / range is finite.
inline constexpr float kMinHistogramRange = 0x1p-64f;
// range >= max |x| * (1 + 2^-16): far more than the float rounding of |x| * (bins / range).
inline constexpr float kHistogramHeadroom = 1.0f + 0x1p-16f;
// Bin counts accepted by RangeHistogram (even: re-binning merges pairs).
inline constexpr int kMinHistogramBins = 16;
inline constexpr int kMaxHistogramBins = 1 << 20;

// Exact min and max of a batch (with -0 reported as +0). Throws ptq::Error (input) naming the index
// of the first NaN/Inf; `who` starts the message.
struct ValueRange {
  float min = 0.0f;
  float max = 0.0f;
};
ValueRange scanFiniteRange(const char* who, const float* x, int64_t n);
// The same per channel of x [rows, channels] (channel axis last, contiguous); rows >= 1. The NaN/Inf
// error names the row and channel of the first one in row-major order.
std::vector<ValueRange> scanFiniteChannelRanges(const char* who, const float* x, int64_t rows, int64_t channels);

class RangeHistogram {
 public:
  // Throws ptq::Error (usage) naming "bins" unless bins is even and in
  // [kMinHistogramBins, kMaxHistogramBins].
  explicit RangeHistogram(int bins);

  // Adds n finite values whose max |x| is batch_amax (from scanFiniteRange). Throws ptq::Error
  // (input) if the range would have to grow beyond float (|x| >= 2^127 after an earlier, much
  // smaller batch).
  void add(const float* x, int64_t n, float batch_amax);

  int bins() const { return bins_; }
  float range() const { return range_; }  // 0 until the first non-empty batch
  double binWidth() const { return static_cast<double>(range_) / bins_; }
  uint64_t total() const { return total_; }
  uint64_t zeros() const { return zeros_; }  // values equal to 0 (included in the bins too)
  // 2 * bins bins over [-range, range]: index s has lower edge (s - bins) * binWidth(), so x >= 0
  // with |x| bin j sits at bins + j and x < 0 with |x| bin j at bins - 1 - j.
  const std::vector<uint64_t>& signedCounts() const { return counts_; }
  // The folded |x| histogram: bins bins over [0, range].
  std::vector<uint64_t> absCounts() const;

 private:
  void widenTo(float amax);

  int bins_;
  float range_ = 0.0f;
  uint64_t total_ = 0;
  uint64_t zeros_ = 0;
  std::vector<uint64_t> counts_;  // signed order, see signedCounts()
};

// The value below which a fraction `q` in [0, 1] of the histogrammed values lie, for a uniform
// histogram whose bin k covers [lower0 + k * width, lower0 + (k + 1) * width); linear within the
// bin (values spread evenly in it). q = 0 gives the lower edge of the first non-empty bin. Needs a
// non-empty histogram.
double histogramQuantile(const std::vector<uint64_t>& counts, double lower0, double width, double q);

// TensorRT's entropy calibration on an |x| histogram (MXNet / ONNX Runtime formulation). For every
// cutoff i in [levels, counts.size()]:
//   P = counts[0 .. i-1] with the tail sum(counts[i ..]) added to P[i-1];
//   Q = counts[0 .. i-1] (no tail) merged into `levels` levels of i / levels bins each (the last
//       level also takes the i % levels remaining bins), each level's sum spread evenly over the
//       bins of the level where P is non-zero, and expanded back to i bins;
//   both smoothed (zero bins get eps = 1e-4, non-zero ones give up eps * zeros / non-zeros, on raw
//   counts), normalized, KL(P || Q) = sum P log(P / Q) in double.
// Returns the i with the smallest divergence (the smallest i on ties); the clipping threshold is
// the upper edge of the last kept bin, i * width. A cutoff whose smoothing would make an entry
// <= 0 (only for very sparse histograms) counts as an infinite divergence. Requires
// 1 <= levels <= counts.size() and a non-empty histogram. Parallel over cutoffs, each one summed
// serially, so the thread count cannot change the result. `divergences`, if given, receives the
// divergence of every cutoff (index i - levels).
int64_t entropyCutoff(const std::vector<uint64_t>& counts, int64_t levels, std::vector<double>* divergences = nullptr);

// The non-empty bins of a uniform histogram as weighted points: bin k becomes its centre
// lower0 + (k + 0.5) * width (rounded to float) with weight counts[k].
struct WeightedPoints {
  std::vector<float> x;
  std::vector<double> weight;
};
WeightedPoints binCentres(const std::vector<uint64_t>& counts, double lower0, double width);

// sum of weight * (fq(x) - x)^2 with fq the grid.h quantizeValue / dequantizeValue round trip
// under p: the quantity the MSE observer minimizes. Summed in kErrorLanes interleaved double lanes
// combined in one fixed order (as groupSquaredError does), so it vectorizes and stays reproducible.
double weightedSquaredError(const WeightedPoints& pts, const GroupParams& p, const GridSpec& g);

}  // namespace ptq::quant
