// Histogram building and the searches over it. The loops that touch every activation (range scan,
// bin indices) are shaped to vectorize without -ffast-math; OpenMP splits them into per-thread
// partial results that combine exactly (integer counts, min/max keys), so the thread count never
// changes a bit. The searches run in parallel over candidates, each candidate summed serially.
#include "lib/quant/float_order.h"
#include "lib/quant/histogram.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "lib/quant/rtn_detail.h"
#include "lib/util/error.h"

namespace ptq::quant {
namespace {

// Below this many elements the OpenMP fork costs more than it saves.
constexpr int64_t kParallelMinElements = int64_t{1} << 16;
// Bin indices are computed for this many values at a time (vectorized), then counted.
constexpr int64_t kIndexChunk = 2048;
// Smoothing of zero bins in the entropy search (MXNet / ONNX Runtime use the same value).
constexpr double kEntropyEps = 1e-4;

using detail::fromOrderKey;
using detail::orderKey;

}  // namespace

ValueRange scanFiniteRange(const char* who, const float* x, int64_t n) {
  if (n < 0 || (n > 0 && x == nullptr)) throwUsage(std::string(who) + ": bad batch (" + std::to_string(n) + " values)");
  if (n == 0) return {};
  uint32_t kmin = std::numeric_limits<uint32_t>::max(), kmax = 0;
#pragma omp parallel for schedule(static) reduction(min : kmin) reduction(max : kmax) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t k = orderKey(x[i]);
    kmin = k < kmin ? k : kmin;
    kmax = k > kmax ? k : kmax;
  }
  if (kmin <= orderKey(-std::numeric_limits<float>::infinity()) ||
      kmax >= orderKey(std::numeric_limits<float>::infinity())) {
    detail::throwNonFiniteAt(who, x, detail::firstNonFinite(x, n));
  }
  // + 0.0f turns -0 into +0, so which of +-0 a parallel reduction met first cannot show.
  return {fromOrderKey(kmin) + 0.0f, fromOrderKey(kmax) + 0.0f};
}

std::vector<ValueRange> scanFiniteChannelRanges(const char* who, const float* x, int64_t rows, int64_t channels) {
  if (rows < 1 || channels < 1 || x == nullptr) {
    throwUsage(std::string(who) + ": bad batch [" + std::to_string(rows) + ", " + std::to_string(channels) + "]");
  }
  const size_t nc = static_cast<size_t>(channels);
  std::vector<uint32_t> kmin(nc, std::numeric_limits<uint32_t>::max()), kmax(nc, 0);
#pragma omp parallel if (rows * channels >= kParallelMinElements)
  {
    std::vector<uint32_t> lmin(kmin), lmax(kmax);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * channels;
      for (size_t c = 0; c < nc; ++c) {
        const uint32_t k = orderKey(xr[c]);
        lmin[c] = k < lmin[c] ? k : lmin[c];
        lmax[c] = k > lmax[c] ? k : lmax[c];
      }
    }
    // min / max of keys: exact whatever order the threads arrive in.
#pragma omp critical(ptq_channel_range_merge)
    for (size_t c = 0; c < nc; ++c) {
      kmin[c] = std::min(kmin[c], lmin[c]);
      kmax[c] = std::max(kmax[c], lmax[c]);
    }
  }
  std::vector<ValueRange> out(nc);
  bool finite = true;
  for (size_t c = 0; c < nc; ++c) {
    finite = finite && kmin[c] > orderKey(-std::numeric_limits<float>::infinity()) &&
             kmax[c] < orderKey(std::numeric_limits<float>::infinity());
    out[c] = {fromOrderKey(kmin[c]) + 0.0f, fromOrderKey(kmax[c]) + 0.0f};
  }
  if (!finite) {
    const int64_t i = detail::firstNonFinite(x, rows * channels);
    throwInput(std::string(who) + ": non-finite value " + detail::describeValue(x[i]) + " at row " +
               std::to_string(i / channels) + ", channel " + std::to_string(i % channels));
  }
  return out;
}

RangeHistogram::RangeHistogram(int bins) : bins_(bins) {
  if (bins < kMinHistogramBins || bins > kMaxHistogramBins || bins % 2 != 0) {
    throwUsage("observer option 'bins' must be an even number in [" + std::to_string(kMinHistogramBins) + ", " +
               std::to_string(kMaxHistogramBins) + "], got " + std::to_string(bins));
  }
  counts_.assign(2 * static_cast<size_t>(bins), 0);
}

void RangeHistogram::widenTo(float amax) {
  const int64_t b = bins_, half = b / 2;
  while (amax * kHistogramHeadroom > range_) {
    if (range_ > FLT_MAX / 2) {
      throwInput("histogram: |x| = " + std::to_string(amax) + " cannot be histogrammed after a first batch with max |x| " +
                 "far below it (range would overflow float)");
    }
    // |x| bin j of the doubled range holds old bins 2j and 2j + 1, on both sides. Ascending j
    // writes each slot only after reading the (farther out) slots it merges.
    uint64_t* c = counts_.data();
    for (int64_t j = 0; j < half; ++j) {
      c[b + j] = c[b + 2 * j] + c[b + 2 * j + 1];
      c[b - 1 - j] = c[b - 1 - 2 * j] + c[b - 2 - 2 * j];
    }
    std::fill(c + b + half, c + 2 * b, uint64_t{0});
    std::fill(c, c + half, uint64_t{0});
    range_ *= 2.0f;
  }
}

void RangeHistogram::add(const float* x, int64_t n, float batch_amax) {
  if (n <= 0) return;
  if (!(batch_amax >= 0.0f && batch_amax <= FLT_MAX)) {
    throwInternal("histogram: batch max |x| must be finite and >= 0, got " + std::to_string(batch_amax));
  }
  if (range_ == 0.0f) {
    // Only a first batch within 2^-16 of FLT_MAX loses the headroom; the clamp below covers it.
    range_ = std::min(std::max(batch_amax, kMinHistogramRange) * kHistogramHeadroom, FLT_MAX);
  } else {
    widenTo(batch_amax);
  }
  const int32_t b = bins_;
  const float inv_width = static_cast<float>(b) / range_;
  const int64_t chunks = (n + kIndexChunk - 1) / kIndexChunk;
  uint64_t zeros = 0;
#pragma omp parallel if (n >= kParallelMinElements) reduction(+ : zeros)
  {
    std::vector<uint64_t> local(counts_.size(), 0);
    int32_t idx[kIndexChunk];
#pragma omp for schedule(static)
    for (int64_t t = 0; t < chunks; ++t) {
      const float* xc = x + t * kIndexChunk;
      const int64_t m = std::min(kIndexChunk, n - t * kIndexChunk);
      int32_t chunk_zeros = 0;
      for (int64_t i = 0; i < m; ++i) {
        int32_t j = static_cast<int32_t>(std::fabs(xc[i]) * inv_width);
        j = j < b - 1 ? j : b - 1;  // only near FLT_MAX (see kHistogramHeadroom)
        idx[i] = xc[i] < 0.0f ? b - 1 - j : b + j;
        chunk_zeros += xc[i] == 0.0f ? 1 : 0;
      }
      zeros += static_cast<uint64_t>(chunk_zeros);
      for (int64_t i = 0; i < m; ++i) ++local[static_cast<size_t>(idx[i])];
    }
    // Integer sums: the order threads arrive in cannot change them.
#pragma omp critical(ptq_histogram_merge)
    for (size_t s = 0; s < local.size(); ++s) counts_[s] += local[s];
  }
  total_ += static_cast<uint64_t>(n);
  zeros_ += zeros;
}

std::vector<uint64_t> RangeHistogram::absCounts() const {
  const size_t b = static_cast<size_t>(bins_);
  std::vector<uint64_t> a(b);
  for (size_t j = 0; j < b; ++j) a[j] = counts_[b + j] + counts_[b - 1 - j];
  return a;
}

double histogramQuantile(const std::vector<uint64_t>& counts, double lower0, double width, double q) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  if (total == 0) throwInternal("histogramQuantile: empty histogram");
  const double target = std::min(std::max(q, 0.0), 1.0) * static_cast<double>(total);
  uint64_t before = 0;
  for (size_t k = 0; k < counts.size(); ++k) {
    if (counts[k] == 0) continue;
    const uint64_t through = before + counts[k];
    if (static_cast<double>(through) >= target) {
      const double frac = (target - static_cast<double>(before)) / static_cast<double>(counts[k]);
      return lower0 + (static_cast<double>(k) + std::max(frac, 0.0)) * width;
    }
    before = through;
  }
  // Only reachable through rounding of q * total just above total: the top of the last bin.
  size_t last = counts.size();
  while (counts[last - 1] == 0) --last;
  return lower0 + static_cast<double>(last) * width;
}

namespace {

// KL divergence of cutoff i (see entropyCutoff); +inf when smoothing breaks down.
double cutoffDivergence(const std::vector<uint64_t>& c, const std::vector<uint64_t>& cum,
                        const std::vector<int64_t>& nonzero_before, int64_t levels, int64_t i) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const uint64_t total = cum.back();
  const uint64_t last = c[static_cast<size_t>(i - 1)] + (total - cum[static_cast<size_t>(i)]);  // P[i-1]: tail folded in
  // P is non-zero exactly where the counts are, except at i-1 where the tail may fill an empty bin.
  auto p_nonzero_in = [&](int64_t start, int64_t stop) {
    int64_t nz = nonzero_before[static_cast<size_t>(stop)] - nonzero_before[static_cast<size_t>(start)];
    if (stop == i) nz += (last > 0 ? 1 : 0) - (c[static_cast<size_t>(i - 1)] > 0 ? 1 : 0);
    return nz;
  };
  const int64_t nnz_p = p_nonzero_in(0, i);
  if (nnz_p == 0) return kInf;
  const double eps1_p = kEntropyEps * static_cast<double>(i - nnz_p) / static_cast<double>(nnz_p);

  // First pass over the levels: Q's non-zero count, needed for its smoothing.
  const int64_t merged = i / levels;
  auto level_bounds = [&](int64_t k, int64_t* start, int64_t* stop) {
    *start = k * merged;
    *stop = k == levels - 1 ? i : *start + merged;
  };
  int64_t nnz_q = 0;
  for (int64_t k = 0; k < levels; ++k) {
    int64_t start, stop;
    level_bounds(k, &start, &stop);
    const uint64_t level_sum = cum[static_cast<size_t>(stop)] - cum[static_cast<size_t>(start)];
    if (level_sum > 0) nnz_q += p_nonzero_in(start, stop);
  }
  if (nnz_q == 0) return kInf;
  const double eps1_q = kEntropyEps * static_cast<double>(i - nnz_q) / static_cast<double>(nnz_q);

  // KL(P||Q) with P = ps / SP, Q = qs / SQ equals (1/SP) sum ps (log ps - log qs) + log(SQ / SP).
  // Bins where P is zero have ps = qs = eps and add nothing to the first sum.
  double a = 0.0, sp = kEntropyEps * static_cast<double>(i - nnz_p), sq = kEntropyEps * static_cast<double>(i - nnz_q);
  for (int64_t k = 0; k < levels; ++k) {
    int64_t start, stop;
    level_bounds(k, &start, &stop);
    const uint64_t level_sum = cum[static_cast<size_t>(stop)] - cum[static_cast<size_t>(start)];
    const int64_t norm = p_nonzero_in(start, stop);
    if (norm == 0) continue;
    double qs = kEntropyEps;
    if (level_sum > 0) {
      qs = static_cast<double>(level_sum) / static_cast<double>(norm) - eps1_q;
      if (!(qs > 0.0)) return kInf;
      sq += qs * static_cast<double>(norm);
    }
    const double log_qs = std::log(qs);
    for (int64_t j = start; j < stop; ++j) {
      const uint64_t p = j == i - 1 ? last : c[static_cast<size_t>(j)];
      if (p == 0) continue;
      const double ps = static_cast<double>(p) - eps1_p;
      if (!(ps > 0.0)) return kInf;
      a += ps * (std::log(ps) - log_qs);
      sp += ps;
    }
  }
  return a / sp + std::log(sq / sp);
}

}  // namespace

int64_t entropyCutoff(const std::vector<uint64_t>& counts, int64_t levels, std::vector<double>* divergences) {
  const int64_t n = static_cast<int64_t>(counts.size());
  if (levels < 1 || levels > n) {
    throwInternal("entropyCutoff: need 1 <= levels <= bins, got levels " + std::to_string(levels) + ", bins " +
                  std::to_string(n));
  }
  std::vector<uint64_t> cum(static_cast<size_t>(n) + 1, 0);
  std::vector<int64_t> nonzero_before(static_cast<size_t>(n) + 1, 0);
  for (int64_t j = 0; j < n; ++j) {
    cum[static_cast<size_t>(j + 1)] = cum[static_cast<size_t>(j)] + counts[static_cast<size_t>(j)];
    nonzero_before[static_cast<size_t>(j + 1)] = nonzero_before[static_cast<size_t>(j)] + (counts[static_cast<size_t>(j)] > 0);
  }
  if (cum.back() == 0) throwInternal("entropyCutoff: empty histogram");
  const int64_t cutoffs = n - levels + 1;
  std::vector<double> div(static_cast<size_t>(cutoffs));
  // Work grows with i: dynamic chunks balance it; each entry is computed by one thread alone.
#pragma omp parallel for schedule(dynamic, 16) if (cutoffs * n >= kParallelMinElements)
  for (int64_t t = 0; t < cutoffs; ++t) {
    div[static_cast<size_t>(t)] = cutoffDivergence(counts, cum, nonzero_before, levels, levels + t);
  }
  int64_t best = 0;
  for (int64_t t = 1; t < cutoffs; ++t) {
    if (div[static_cast<size_t>(t)] < div[static_cast<size_t>(best)]) best = t;
  }
  if (divergences) *divergences = std::move(div);
  return levels + best;
}

WeightedPoints binCentres(const std::vector<uint64_t>& counts, double lower0, double width) {
  WeightedPoints pts;
  for (size_t k = 0; k < counts.size(); ++k) {
    if (counts[k] == 0) continue;
    pts.x.push_back(static_cast<float>(lower0 + (static_cast<double>(k) + 0.5) * width));
    pts.weight.push_back(static_cast<double>(counts[k]));
  }
  return pts;
}

double weightedSquaredError(const WeightedPoints& pts, const GroupParams& p, const GridSpec& g) {
  const float s = p.scale, z = static_cast<float>(p.zero);
  const float lo = static_cast<float>(codeMin(g)), hi = static_cast<float>(codeMax(g));
  // quantizeValue / dequantizeValue spelled out on floats (q - z is an exact small integer, so
  // the product equals dequantizeValue's) so that the loop vectorizes.
  auto err = [&](size_t i) {
    const float x = pts.x[i];
    float q = std::nearbyint(x / s) + z;
    q = q < lo ? lo : q;
    q = q > hi ? hi : q;
    const double e = static_cast<double>((q - z) * s) - static_cast<double>(x);
    return pts.weight[i] * (e * e);
  };
  double lane[kErrorLanes] = {};
  const size_t n = pts.x.size();
  size_t i = 0;
  for (; i + kErrorLanes <= n; i += kErrorLanes) {
    for (int l = 0; l < kErrorLanes; ++l) lane[l] += err(i + static_cast<size_t>(l));
  }
  for (int l = 0; i < n; ++i, ++l) lane[l] += err(i);
  return detail::combineLanes(lane);
}

}  // namespace ptq::quant
