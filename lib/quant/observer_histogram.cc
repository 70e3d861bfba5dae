// Histogram observers: percentile, MSE-optimal clip and TensorRT entropy. All three stream batches
// into one RangeHistogram (histogram.h) plus the exact min / max, and do their search in compute().
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "lib/quant/histogram.h"
#include "lib/quant/observer_detail.h"
#include "lib/util/error.h"

namespace ptq::quant::detail {
namespace {

class HistogramObserver : public ActivationObserver {
 public:
  explicit HistogramObserver(int bins) : hist_(bins) {}

  void observe(const float* x, int64_t n) override {
    const ValueRange r = scanFiniteRange(who().c_str(), x, n);
    if (n == 0) return;
    hist_.add(x, n, std::max(-r.min, r.max));
    min_ = count_ == 0 ? r.min : std::min(min_, r.min);
    max_ = count_ == 0 ? r.max : std::max(max_, r.max);
    count_ += n;
  }

  RangeResult compute(const GridSpec& g) const override {
    validateActivationGrid(g);
    if (count_ == 0) throwInput(who() + ": no values observed");
    return computeFromHistogram(g);
  }
  int64_t count() const override { return count_; }

 protected:
  virtual RangeResult computeFromHistogram(const GridSpec& g) const = 0;
  std::string who() const { return std::string("observer '") + name() + "'"; }
  float amax() const { return std::max(-min_, max_); }
  // The histogram without its exact zeros (they sit in positive |x| bin 0): 0 is exact on every
  // grid, so zeros cannot favour one clip over another. Left in, a ReLU's spike of zeros dominates
  // the entropy search (pytorch-quantization patches it with bins[0] = bins[1]).
  std::vector<uint64_t> signedCountsWithoutZeros() const {
    std::vector<uint64_t> c = hist_.signedCounts();
    c[static_cast<size_t>(hist_.bins())] -= hist_.zeros();
    return c;
  }
  std::vector<uint64_t> absCountsWithoutZeros() const {
    std::vector<uint64_t> c = hist_.absCounts();
    c[0] -= hist_.zeros();
    return c;
  }

  RangeHistogram hist_;
  float min_ = 0.0f, max_ = 0.0f;  // exact, over all batches
  int64_t count_ = 0;
};

// Candidate clips for one side of the range: the upper edges of |x| bins 0 .. k-1 where bin k-1
// holds `edge` (the observed extreme |x|), with the last candidate exactly `edge`. Ascending.
std::vector<float> clipCandidates(float edge, const RangeHistogram& h) {
  if (!(edge > 0.0f)) return {0.0f};
  const double w = h.binWidth();
  const int64_t k = std::min<int64_t>(static_cast<int64_t>(static_cast<double>(edge) / w), h.bins() - 1) + 1;
  std::vector<float> c(static_cast<size_t>(k));
  for (int64_t j = 0; j + 1 < k; ++j) c[static_cast<size_t>(j)] = std::min(static_cast<float>((j + 1) * w), edge);
  c.back() = edge;
  return c;
}

// Index of the candidate with the least error; ties keep the wider (later) candidate. Errors are
// computed in parallel, one candidate per iteration, so the thread count cannot change them.
template <class ErrorOf>
size_t argminError(size_t n, ErrorOf error_of) {
  std::vector<double> err(n);
#pragma omp parallel for schedule(dynamic, 8) if (n >= 16)
  for (int64_t t = 0; t < static_cast<int64_t>(n); ++t) err[static_cast<size_t>(t)] = error_of(static_cast<size_t>(t));
  size_t best = n - 1;
  for (size_t t = n - 1; t-- > 0;) {
    if (err[t] < err[best]) best = t;
  }
  return best;
}

// ---- percentile ----------------------------------------------------------------------------------

// Symmetric grids: the p-th percentile of |x|. Asymmetric: the (100 - p)-th and p-th percentiles of
// x. Linear within the bin that holds the percentile; never beyond the observed min / max.
class PercentileObserver final : public HistogramObserver {
 public:
  PercentileObserver(double percentile, int bins) : HistogramObserver(bins), q_(percentile / 100.0) {}
  const char* name() const override { return "percentile"; }

 protected:
  RangeResult computeFromHistogram(const GridSpec& g) const override {
    const double w = hist_.binWidth();
    if (g.symmetric) {
      const float a = std::min(static_cast<float>(histogramQuantile(hist_.absCounts(), 0.0, w, q_)), amax());
      return rangeResultFor(-a, a, g);
    }
    const double lower0 = -static_cast<double>(hist_.bins()) * w;
    const float hi = std::min(static_cast<float>(histogramQuantile(hist_.signedCounts(), lower0, w, q_)), max_);
    const float lo = std::max(static_cast<float>(histogramQuantile(hist_.signedCounts(), lower0, w, 1.0 - q_)), min_);
    return rangeResultFor(lo, hi, g);
  }

 private:
  double q_;
};

// ---- MSE -----------------------------------------------------------------------------------------

// Minimizes sum count * (fq(c) - c)^2 over the bin centres c of the signed histogram (exact zeros
// left out), with the grid.h rounding. Symmetric grids: one clip a over the |x| bin edges up to max |x|. Asymmetric
// grids: two rounds of coordinate descent from [min, max], first hi over the positive bin edges,
// then lo over the negative ones (a full 2-D search costs bins^2 evaluations of the whole histogram).
class MseObserver final : public HistogramObserver {
 public:
  explicit MseObserver(int bins) : HistogramObserver(bins) {}
  const char* name() const override { return "mse"; }

 protected:
  RangeResult computeFromHistogram(const GridSpec& g) const override {
    const double w = hist_.binWidth();
    const WeightedPoints pts = binCentres(signedCountsWithoutZeros(), -static_cast<double>(hist_.bins()) * w, w);
    auto error_at = [&](float lo, float hi) { return weightedSquaredError(pts, paramsForRange(lo, hi, g), g); };
    if (g.symmetric) {
      const std::vector<float> a = clipCandidates(amax(), hist_);
      const size_t best = argminError(a.size(), [&](size_t t) { return error_at(-a[t], a[t]); });
      return rangeResultFor(-a[best], a[best], g);
    }
    const std::vector<float> his = clipCandidates(std::max(max_, 0.0f), hist_);
    const std::vector<float> los = clipCandidates(std::max(-min_, 0.0f), hist_);
    float lo = -los.back(), hi = his.back();
    for (int round = 0; round < 2; ++round) {
      hi = his[argminError(his.size(), [&](size_t t) { return error_at(lo, his[t]); })];
      lo = -los[argminError(los.size(), [&](size_t t) { return error_at(-los[t], hi); })];
    }
    return rangeResultFor(lo, hi, g);
  }
};

// ---- entropy -------------------------------------------------------------------------------------

// TensorRT's KL calibration (entropyCutoff) on the |x| histogram without exact zeros; the threshold t is the upper edge
// of the last kept bin, capped at max |x|. Levels: 2^(bits-1) as TensorRT's 128 for int8, or 2^bits
// for an asymmetric grid over one-sided data (all codes then lie on that side). Symmetric grids get
// [-t, t]; asymmetric ones [max(min, -t), min(max, t)].
class EntropyObserver final : public HistogramObserver {
 public:
  explicit EntropyObserver(int bins) : HistogramObserver(bins) {}
  const char* name() const override { return "entropy"; }

 protected:
  RangeResult computeFromHistogram(const GridSpec& g) const override {
    const bool one_sided = !(min_ < 0.0f && max_ > 0.0f);
    const int64_t levels = int64_t{1} << (g.symmetric || !one_sided ? g.bits - 1 : g.bits);
    if (levels > hist_.bins()) {
      throwUsage(who() + ": option 'bins' (" + std::to_string(hist_.bins()) + ") must be at least the " +
                 std::to_string(levels) + " levels of a " + std::to_string(g.bits) + "-bit grid");
    }
    if (hist_.zeros() == hist_.total()) return rangeResultFor(0.0f, 0.0f, g);
    const int64_t cutoff = entropyCutoff(absCountsWithoutZeros(), levels);
    const float t = std::min(static_cast<float>(static_cast<double>(cutoff) * hist_.binWidth()), amax());
    if (g.symmetric) return rangeResultFor(-t, t, g);
    return rangeResultFor(std::max(min_, -t), std::min(max_, t), g);
  }
};

}  // namespace

std::unique_ptr<ActivationObserver> makePercentileObserver(double percentile, int bins) {
  return std::make_unique<PercentileObserver>(percentile, bins);
}
std::unique_ptr<ActivationObserver> makeMseObserver(int bins) { return std::make_unique<MseObserver>(bins); }
std::unique_ptr<ActivationObserver> makeEntropyObserver(int bins) { return std::make_unique<EntropyObserver>(bins); }

}  // namespace ptq::quant::detail
