// Activation observers (lib/quant/observer.h) and the histogram kernels under them. Expected values
// are worked out in the comments; the entropy search is checked against a slow, literal
// transcription of the TensorRT / MXNet procedure written below with plain loops.
#include <catch2/catch.hpp>

#include "support/error_text.h"
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lib/quant/grid.h"
#include "lib/quant/histogram.h"
#include "lib/quant/observer.h"
#include "lib/util/error.h"

using namespace ptq::quant;

namespace {

const GridSpec kInt8Sym{8, true, true};
const GridSpec kUint8Asym{8, false, false};

struct ThreadCount {  // restores the OpenMP thread count on scope exit
  int saved = omp_get_max_threads();
  explicit ThreadCount(int n) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved); }
};

using ptq::test::errorText;

bool sameBits(const RangeResult& a, const RangeResult& b) {
  return std::memcmp(&a.lo, &b.lo, sizeof a.lo) == 0 && std::memcmp(&a.hi, &b.hi, sizeof a.hi) == 0 &&
         std::memcmp(&a.params.scale, &b.params.scale, sizeof a.params.scale) == 0 && a.params.zero == b.params.zero;
}

RangeResult observeAll(const std::string& name, const std::vector<std::vector<float>>& batches, const GridSpec& g,
                       const ObserverOptions& o = {}) {
  auto obs = makeObserver(name, o);
  for (const auto& b : batches) obs->observe(b.data(), static_cast<int64_t>(b.size()));
  return obs->compute(g);
}

// Laplace(0, b = 1): exponential magnitude with a random sign.
std::vector<float> laplace(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::exponential_distribution<double> mag(1.0);
  std::vector<float> x(n);
  for (auto& v : x) {
    const double m = mag(gen);
    v = static_cast<float>((gen() & 1u) ? m : -m);
  }
  return x;
}

std::vector<float> gaussian(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<float> x(n);
  for (auto& v : x) v = static_cast<float>(d(gen));
  return x;
}

std::vector<float> uniform(size_t n, float a, float b, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(a, b);
  std::vector<float> x(n);
  for (auto& v : x) v = d(gen);
  return x;
}

// ---- slow reference of TensorRT's entropy calibration (MXNet _get_optimal_threshold, |x| form) ----

// _smooth_distribution: zero entries get eps, non-zero ones give up eps * zeros / non-zeros.
bool smoothRef(std::vector<double>& d) {
  const double eps = 1e-4;
  double zeros = 0, nonzeros = 0;
  for (double v : d) (v == 0 ? zeros : nonzeros) += 1;
  if (nonzeros == 0) return false;
  const double eps1 = eps * zeros / nonzeros;
  for (double& v : d) v = v == 0 ? eps : v - eps1;
  for (double v : d) {
    if (v <= 0) return false;
  }
  return true;
}

// scipy.stats.entropy(p, q): both normalized, sum p log(p / q).
double klRef(std::vector<double> p, std::vector<double> q) {
  double sp = 0, sq = 0;
  for (double v : p) sp += v;
  for (double v : q) sq += v;
  double kl = 0;
  for (size_t j = 0; j < p.size(); ++j) {
    const double pj = p[j] / sp, qj = q[j] / sq;
    kl += pj * std::log(pj / qj);
  }
  return kl;
}

int64_t entropyCutoffRef(const std::vector<double>& hist, int levels) {
  const int n = static_cast<int>(hist.size());
  double best = std::numeric_limits<double>::infinity();
  int64_t best_i = -1;
  for (int i = levels; i <= n; ++i) {
    std::vector<double> sliced(hist.begin(), hist.begin() + i);
    std::vector<double> p = sliced;
    for (int j = i; j < n; ++j) p[i - 1] += hist[j];
    const int merged = i / levels;
    std::vector<double> quantized(levels, 0.0);
    for (int k = 0; k < levels; ++k) {
      for (int j = k * merged; j < k * merged + merged; ++j) quantized[k] += sliced[j];
    }
    for (int j = levels * merged; j < i; ++j) quantized[levels - 1] += sliced[j];
    std::vector<double> q(i, 0.0);
    for (int k = 0; k < levels; ++k) {
      const int start = k * merged, stop = k == levels - 1 ? i : start + merged;
      int norm = 0;
      for (int j = start; j < stop; ++j) norm += p[j] != 0;
      if (norm == 0) continue;
      for (int j = start; j < stop; ++j) q[j] = quantized[k] / norm;
    }
    for (int j = 0; j < i; ++j) {
      if (p[j] == 0) q[j] = 0;
    }
    double kl = std::numeric_limits<double>::infinity();
    if (smoothRef(p) && smoothRef(q)) kl = klRef(p, q);
    if (kl < best) {
      best = kl;
      best_i = i;
    }
  }
  return best_i;
}

// |x| histogram of `bins` bins over [0, max |x|], binned in double (independently of RangeHistogram).
std::vector<double> absHistogramRef(const std::vector<float>& x, int bins, double* width) {
  double amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(static_cast<double>(v)));
  *width = amax / bins;
  std::vector<double> h(static_cast<size_t>(bins), 0.0);
  for (float v : x) {
    const int j = std::min(static_cast<int>(std::floor(std::fabs(static_cast<double>(v)) / *width)), bins - 1);
    h[static_cast<size_t>(j)] += 1;
  }
  return h;
}

std::vector<double> asDouble(const std::vector<uint64_t>& c) { return std::vector<double>(c.begin(), c.end()); }

}  // namespace

// ---- MinMax ------------------------------------------------------------------------------------------

TEST_CASE("minmax: exact range over batches, 0 always inside", "[observer]") {
  const std::vector<std::vector<float>> batches = {{0.5f, 2.0f, 1.0f}, {}, {3.0f, 0.25f}};
  // min 0.25 -> lo 0; max 3. Asymmetric uint8: scale 3/255, zero 0.
  const RangeResult a = observeAll("minmax", batches, kUint8Asym);
  CHECK(a.lo == 0.0f);
  CHECK(a.hi == 3.0f);
  CHECK(a.params.scale == paramsForRange(0.0f, 3.0f, kUint8Asym).scale);
  CHECK(a.params.zero == 0);
  // Symmetric int8: [-3, 3], scale 3/127, zero 0.
  const RangeResult s = observeAll("minmax", batches, kInt8Sym);
  CHECK(s.lo == -3.0f);
  CHECK(s.hi == 3.0f);
  CHECK(s.params.scale == 3.0f / 127.0f);
  CHECK(s.params.zero == 0);
  // [-1, 3] asymmetric uint8: scale 4/255, zero = nearbyint(1 / (4/255)) = nearbyint(63.75) = 64.
  const RangeResult m = observeAll("minmax", {{-1.0f, 3.0f}, {0.0f}}, kUint8Asym);
  CHECK(m.lo == -1.0f);
  CHECK(m.hi == 3.0f);
  CHECK(m.params.zero == 64);
}

TEST_CASE("minmax: all-zero data gives range 0 and scale 1", "[observer]") {
  const RangeResult r = observeAll("minmax", {{0.0f, -0.0f, 0.0f}}, kInt8Sym);
  CHECK(r.lo == 0.0f);
  CHECK(r.hi == 0.0f);
  CHECK_FALSE(std::signbit(r.lo));
  CHECK(r.params.scale == 1.0f);
  for (const char* name : {"percentile", "mse", "entropy"}) {
    INFO(name);
    const RangeResult h = observeAll(name, {{0.0f, 0.0f}, {0.0f}}, kInt8Sym);
    CHECK(h.hi == 0.0f);
    CHECK(h.params.scale == 1.0f);
  }
}

TEST_CASE("per-channel minmax: one range per last-axis channel", "[observer]") {
  auto obs = makeChannelObserver("minmax");
  // [rows 2, channels 3], then one more row.
  const std::vector<float> b1 = {1.0f, -2.0f, 0.5f,  //
                                 -1.0f, 4.0f, 0.25f};
  const std::vector<float> b2 = {3.0f, -8.0f, 0.75f};
  obs->observe(b1.data(), 2, 3);
  obs->observe(b2.data(), 1, 3);
  CHECK(obs->channels() == 3);
  const std::vector<RangeResult> r = obs->compute(kUint8Asym);
  REQUIRE(r.size() == 3);
  CHECK((r[0].lo == -1.0f && r[0].hi == 3.0f));
  CHECK((r[1].lo == -8.0f && r[1].hi == 4.0f));
  CHECK((r[2].lo == 0.0f && r[2].hi == 0.75f));
  const std::vector<RangeResult> s = obs->compute(kInt8Sym);
  CHECK((s[1].lo == -8.0f && s[1].hi == 8.0f));
  CHECK(s[1].params.scale == 8.0f / 127.0f);

  ptq::ExitCode code;
  const std::string msg = errorText([&] { obs->observe(b2.data(), 1, 2); }, &code);
  CHECK(code == ptq::ExitCode::kInput);
  CHECK(msg.find("2 channels") != std::string::npos);
}

// ---- moving average ----------------------------------------------------------------------------------

TEST_CASE("moving_minmax: first batch initialises, later ones move by momentum", "[observer]") {
  // Batch 1: min -1, max 2. Batch 2: min -3, max 4. momentum 0.01:
  //   min = -1 + 0.01 * (-3 - -1) = -1.02;  max = 2 + 0.01 * (4 - 2) = 2.02.
  const std::vector<std::vector<float>> batches = {{-1.0f, 0.5f, 2.0f}, {4.0f, -3.0f}};
  const RangeResult r = observeAll("moving_minmax", batches, kUint8Asym);
  CHECK(r.lo == static_cast<float>(-1.02));
  CHECK(r.hi == static_cast<float>(2.02));
  CHECK(r.params.scale == paramsForRange(static_cast<float>(-1.02), static_cast<float>(2.02), kUint8Asym).scale);
  // momentum 0.5: min = -1 + 0.5 * -2 = -2; max = 2 + 0.5 * 2 = 3.
  ObserverOptions o;
  o.momentum = 0.5;
  const RangeResult h = observeAll("moving_minmax", batches, kUint8Asym, o);
  CHECK(h.lo == -2.0f);
  CHECK(h.hi == 3.0f);

  // Per channel, same numbers on channel 0; channel 1 sees min 0 / max 1 then min 0 / max 3:
  // max = 1 + 0.5 * 2 = 2.
  auto ch = makeChannelObserver("moving_minmax", o);
  const std::vector<float> c1 = {-1.0f, 1.0f, 2.0f, 0.0f};  // [2, 2]
  const std::vector<float> c2 = {4.0f, 3.0f, -3.0f, 0.5f};
  ch->observe(c1.data(), 2, 2);
  ch->observe(c2.data(), 2, 2);
  const std::vector<RangeResult> pc = ch->compute(kUint8Asym);
  CHECK((pc[0].lo == -2.0f && pc[0].hi == 3.0f));
  CHECK((pc[1].lo == 0.0f && pc[1].hi == 2.0f));
}

// ---- histogram -----------------------------------------------------------------------------------------

TEST_CASE("histogram: counts match a plain binning loop, re-binning equals direct binning", "[observer]") {
  const std::vector<float> a = uniform(100000, -1.0f, 1.0f, 7);
  const ValueRange ra = scanFiniteRange("t", a.data(), static_cast<int64_t>(a.size()));
  // b spans 4x a's range: its own sample clamped to a's range, times 4 (exact).
  std::vector<float> b = uniform(100000, -1.0f, 1.0f, 8);
  for (float& v : b) v = 4.0f * std::min(std::max(v, ra.min), ra.max);
  const int bins = 256;
  RangeHistogram h(bins);
  h.add(a.data(), static_cast<int64_t>(a.size()), std::max(-ra.min, ra.max));
  const float r0 = h.range();
  CHECK(r0 == std::max(-ra.min, ra.max) * kHistogramHeadroom);
  const ValueRange rb = scanFiniteRange("t", b.data(), static_cast<int64_t>(b.size()));
  h.add(b.data(), static_cast<int64_t>(b.size()), std::max(-rb.min, rb.max));
  CHECK(h.range() == 4.0f * r0);  // two doublings
  CHECK(h.total() == a.size() + b.size());
  CHECK(h.zeros() == 0);

  // Plain loop at the final range over all the data: re-binning lost nothing.
  std::vector<uint64_t> ref(2 * bins, 0);
  const float inv = static_cast<float>(bins) / h.range();
  std::vector<float> all(a);
  all.insert(all.end(), b.begin(), b.end());
  for (float x : all) {
    const int j = std::min(static_cast<int>(std::fabs(x) * inv), bins - 1);
    ++ref[static_cast<size_t>(x < 0 ? bins - 1 - j : bins + j)];
  }
  CHECK(h.signedCounts() == ref);
  const std::vector<uint64_t> folded = h.absCounts();
  for (int j = 0; j < bins; ++j) CHECK(folded[j] == ref[bins + j] + ref[bins - 1 - j]);
}

TEST_CASE("histogram quantile interpolates within the bin", "[observer]") {
  // 4 bins of width 1 over [0, 4] holding 1, 0, 2, 1 values. q = 0.5 -> target 2: bin 2 holds values
  // 2..3 of the order, 1 before it -> 2 + (2 - 1) / 2 = 2.5. q = 1 -> top of bin 3 = 4.
  const std::vector<uint64_t> c = {1, 0, 2, 1};
  CHECK(histogramQuantile(c, 0.0, 1.0, 0.5) == 2.5);
  CHECK(histogramQuantile(c, 0.0, 1.0, 1.0) == 4.0);
  CHECK(histogramQuantile(c, 0.0, 1.0, 0.0) == 0.0);
  CHECK(histogramQuantile(c, -2.0, 1.0, 0.25) == -1.0);  // target 1: all of bin 0 -> its top edge
}

// ---- percentile ------------------------------------------------------------------------------------------

TEST_CASE("percentile: uniform integers 1..10000", "[observer]") {
  std::vector<float> x(10000);
  for (int i = 0; i < 10000; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i + 1);
  const double width = 10000.0 / 2048;  // 4.88
  ObserverOptions o;
  o.percentile = 99.99;  // the 9999th of 10000 values
  const RangeResult r = observeAll("percentile", {x}, kInt8Sym, o);
  std::printf("[observer] percentile 99.99 of 1..10000: %.4f (bin width %.4f)\n", r.hi, width);
  CHECK(std::fabs(r.hi - 9999.0) <= width);
  o.percentile = 99.0;
  const RangeResult r99 = observeAll("percentile", {x}, kInt8Sym, o);
  std::printf("[observer] percentile 99 of 1..10000: %.4f\n", r99.hi);
  CHECK(std::fabs(r99.hi - 9900.0) <= width);
  o.percentile = 100.0;  // the maximum exactly
  CHECK(observeAll("percentile", {x}, kInt8Sym, o).hi == 10000.0f);

  // Asymmetric: x - 5000.5 spans [-4999.5, 4999.5]; the 0.01th / 99.99th percentiles are about
  // -4998.5 / 4998.5, within a bin.
  std::vector<float> xs(x);
  for (float& v : xs) v -= 5000.5f;
  o.percentile = 99.99;
  const RangeResult ra = observeAll("percentile", {xs}, kUint8Asym, o);
  std::printf("[observer] asymmetric percentile 99.99 of -4999.5..4999.5: [%.3f, %.3f]\n", ra.lo, ra.hi);
  CHECK(std::fabs(ra.hi - 4998.5) <= 4999.5 / 2048);
  CHECK(std::fabs(ra.lo + 4998.5) <= 4999.5 / 2048);
}

TEST_CASE("percentile: a second batch with 4x the range re-bins to the one-batch result", "[observer]") {
  const std::vector<float> a = laplace(200000, 11);
  std::vector<float> b = laplace(200000, 12);
  float amax_a = 0;
  for (float v : a) amax_a = std::max(amax_a, std::fabs(v));
  // Batch 2 spans exactly 4x batch 1: its own sample clamped to batch 1's range, times 4 (exact).
  for (float& v : b) v = 4.0f * std::min(std::max(v, -amax_a), amax_a);
  std::vector<float> all(a);
  all.insert(all.end(), b.begin(), b.end());
  for (double p : {99.0, 99.9, 99.99}) {
    ObserverOptions o;
    o.percentile = p;
    const RangeResult two = observeAll("percentile", {a, b}, kInt8Sym, o);
    const RangeResult one = observeAll("percentile", {all}, kInt8Sym, o);
    const double width = 4.0 * amax_a / 2048;
    std::printf("[observer] percentile %.2f: two batches %.5f, one batch %.5f (bin %.5f)\n", p, two.hi, one.hi, width);
    CHECK(std::fabs(two.hi - one.hi) <= width);
    // Reversed order: batch b first sets the range (4 amax_a), no re-binning: the same histogram.
    CHECK(sameBits(observeAll("percentile", {b, a}, kInt8Sym, o), one));
  }
}

// ---- entropy -----------------------------------------------------------------------------------------

TEST_CASE("entropy: fast search equals the slow TensorRT reference on a Laplace sample", "[observer]") {
  const std::vector<float> x = laplace(1000000, 2024);
  auto obs = makeObserver("entropy");
  obs->observe(x.data(), static_cast<int64_t>(x.size()));
  const RangeResult r = obs->compute(kInt8Sym);

  // The same histogram, searched by both.
  RangeHistogram h(2048);
  const ValueRange vr = scanFiniteRange("t", x.data(), static_cast<int64_t>(x.size()));
  const float amax = std::max(-vr.min, vr.max);
  h.add(x.data(), static_cast<int64_t>(x.size()), amax);
  const int64_t fast = entropyCutoff(h.absCounts(), 128);
  const int64_t slow = entropyCutoffRef(asDouble(h.absCounts()), 128);
  CHECK(fast == slow);
  CHECK(r.hi == static_cast<float>(static_cast<double>(fast) * h.binWidth()));

  // The reference end to end, with its own (double) binning.
  double width = 0;
  const int64_t slow_raw = entropyCutoffRef(absHistogramRef(x, 2048, &width), 128);
  CHECK(slow_raw == fast);
  std::printf("[observer] entropy int8 on Laplace(b=1), 1e6 samples: cutoff bin %lld (reference %lld, raw %lld), "
              "threshold %.4f, max |x| %.4f, scale %.6g\n",
              static_cast<long long>(fast), static_cast<long long>(slow), static_cast<long long>(slow_raw), r.hi, amax,
              r.params.scale);
  CHECK(r.hi < 0.95f * amax);  // clips the tail
  CHECK(r.hi > 5.0f);          // but keeps far more than the bulk (99.3% of |x| < 5)

  // Ten batches: the first one's max sets the range; the threshold stays close.
  auto obs10 = makeObserver("entropy");
  for (size_t k = 0; k < 10; ++k) obs10->observe(x.data() + k * 100000, 100000);
  const RangeResult r10 = obs10->compute(kInt8Sym);
  std::printf("[observer] entropy, same data in 10 batches: threshold %.4f\n", r10.hi);
  CHECK(std::fabs(r10.hi - r.hi) < 0.1f * r.hi);
}

TEST_CASE("entropy: 4-bit search equals the reference, divergences are reported per cutoff", "[observer]") {
  const std::vector<float> x = laplace(200000, 5);
  RangeHistogram h(512);
  const ValueRange vr = scanFiniteRange("t", x.data(), static_cast<int64_t>(x.size()));
  h.add(x.data(), static_cast<int64_t>(x.size()), std::max(-vr.min, vr.max));
  std::vector<double> div;
  const int64_t fast = entropyCutoff(h.absCounts(), 8, &div);
  CHECK(div.size() == 512 - 8 + 1);
  CHECK(fast == entropyCutoffRef(asDouble(h.absCounts()), 8));
  // A histogram with empty bins and a lone far outlier exercises the smoothing paths.
  std::vector<uint64_t> sparse(300, 0);
  sparse[0] = 50;
  sparse[3] = 7;
  sparse[40] = 1;
  sparse[130] = 2;
  sparse[299] = 1;
  CHECK(entropyCutoff(sparse, 128) == entropyCutoffRef(asDouble(sparse), 128));
}

// ---- MSE ---------------------------------------------------------------------------------------------

TEST_CASE("mse: Gaussian clip lands below the max and at the brute-force optimum", "[observer]") {
  const std::vector<float> x = gaussian(200000, 99);
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  for (int bits : {4, 8}) {
    const GridSpec g{bits, true, true};
    const RangeResult r = observeAll("mse", {x}, g);
    std::printf("[observer] mse int%d on N(0,1), 2e5 samples: clip %.4f (max |x| %.4f)\n", bits, r.hi, amax);
    CHECK(r.hi < amax);
    // Brute force over the same candidates (|x| bin edges, then max |x|) with grid.h's quantize /
    // dequantize at the bin centres.
    RangeHistogram h(2048);
    h.add(x.data(), static_cast<int64_t>(x.size()), amax);
    const double w = h.binWidth();
    const std::vector<uint64_t>& c = h.signedCounts();
    auto error = [&](float a) {
      const GroupParams p = paramsForRange(-a, a, g);
      double e = 0;
      for (int s = 0; s < 2 * 2048; ++s) {
        if (c[static_cast<size_t>(s)] == 0) continue;
        const float centre = static_cast<float>((s - 2048 + 0.5) * w);
        const double d = static_cast<double>(dequantizeValue(quantizeValue(centre, p, g), p)) - centre;
        e += static_cast<double>(c[static_cast<size_t>(s)]) * d * d;
      }
      return e;
    };
    float best = amax;
    double best_err = error(amax);
    for (int k = static_cast<int>(amax / w); k-- > 0;) {
      const float a = std::min(static_cast<float>((k + 1) * w), amax);
      const double e = error(a);
      if (e < best_err * (1 - 1e-12)) {
        best = a;
        best_err = e;
      }
    }
    CHECK(std::fabs(r.hi - best) <= w);
  }
  // The 4-bit optimum for a unit Gaussian is about 2.5-3 (ACIQ: 2.55 for 16 uniform levels).
  const RangeResult r4 = observeAll("mse", {x}, GridSpec{4, true, true});
  CHECK(r4.hi > 2.0f);
  CHECK(r4.hi < 3.5f);
}

TEST_CASE("asymmetric histogram observers keep one-sided data one-sided", "[observer]") {
  std::vector<float> relu = gaussian(100000, 3);
  for (float& v : relu) v = std::max(v, 0.0f);
  for (const char* name : {"percentile", "mse", "entropy"}) {
    INFO(name);
    const RangeResult r = observeAll(name, {relu}, kUint8Asym);
    CHECK(r.lo == 0.0f);
    CHECK(r.params.zero == 0);
    CHECK(r.hi > 2.0f);
    std::printf("[observer] %s uint8 on ReLU(N(0,1)): [%.4f, %.4f]\n", name, r.lo, r.hi);
  }
  // Two-sided data with a skew: the asymmetric MSE search moves both ends inside [min, max].
  std::vector<float> skew = gaussian(100000, 4);
  for (float& v : skew) v = v > 0 ? 2.0f * v : v;
  const RangeResult m = observeAll("mse", {skew}, GridSpec{4, false, false});
  const RangeResult mm = observeAll("minmax", {skew}, GridSpec{4, false, false});
  std::printf("[observer] mse uint4 on skewed Gaussian: [%.4f, %.4f] (minmax [%.4f, %.4f])\n", m.lo, m.hi, mm.lo, mm.hi);
  CHECK(m.lo > mm.lo);
  CHECK(m.hi < mm.hi);
  CHECK(m.hi > -m.lo);
}

// ---- determinism -----------------------------------------------------------------------------------

TEST_CASE("observers are bit-identical across runs and thread counts", "[observer]") {
  const std::vector<float> a = laplace(300000, 21);
  std::vector<float> b = laplace(300000, 22);
  for (float& v : b) v *= 3.0f;
  for (const std::string& name : observerNames()) {
    for (const GridSpec& g : {kInt8Sym, kUint8Asym, GridSpec{4, true, true}}) {
      INFO(name << " bits " << g.bits << (g.symmetric ? " symmetric" : " asymmetric"));
      RangeResult one, many, again;
      {
        ThreadCount t(1);
        one = observeAll(name, {a, b}, g);
      }
      {
        ThreadCount t(4);
        many = observeAll(name, {a, b}, g);
        again = observeAll(name, {a, b}, g);
      }
      CHECK(sameBits(one, many));
      CHECK(sameBits(many, again));
    }
  }
  // Per channel: [rows 3000, channels 100], big enough to go parallel.
  std::vector<RangeResult> one, many;
  {
    ThreadCount t(1);
    auto obs = makeChannelObserver("minmax");
    obs->observe(a.data(), 3000, 100);
    one = obs->compute(kUint8Asym);
  }
  {
    ThreadCount t(4);
    auto obs = makeChannelObserver("minmax");
    obs->observe(a.data(), 3000, 100);
    many = obs->compute(kUint8Asym);
  }
  REQUIRE(one.size() == many.size());
  for (size_t c = 0; c < one.size(); ++c) CHECK(sameBits(one[c], many[c]));
}

// ---- errors ------------------------------------------------------------------------------------------

TEST_CASE("factory: bad names and option values are usage errors naming the option", "[observer]") {
  auto usage = [](const std::string& name, const ObserverOptions& o, const std::string& needle, bool channel = false) {
    ptq::ExitCode code;
    const std::string msg =
        errorText([&] { channel ? (void)makeChannelObserver(name, o) : (void)makeObserver(name, o); }, &code);
    INFO(msg);
    CHECK(code == ptq::ExitCode::kUsage);
    CHECK(msg.find(needle) != std::string::npos);
  };
  usage("kl", {}, "unknown observer 'kl' (known: minmax, moving_minmax, percentile, mse, entropy)");
  ObserverOptions o;
  o.percentile = 20;
  usage("percentile", o, "option 'percentile' must be in [50, 100], got 20");
  o.percentile = 100.5;
  usage("percentile", o, "'percentile'");
  o.percentile = std::nan("");
  usage("percentile", o, "'percentile'");
  usage("mse", o, "observer 'mse' does not take option 'percentile'");
  o = {};
  o.momentum = 0;
  usage("moving_minmax", o, "option 'momentum' must be in (0, 1], got 0");
  o.momentum = 1.5;
  usage("moving_minmax", o, "'momentum'", true);
  o.momentum = 0.1;
  usage("minmax", o, "observer 'minmax' does not take option 'momentum'");
  o = {};
  o.bins = 2047;
  usage("entropy", o, "option 'bins' must be an even number in [16, 1048576], got 2047");
  o.bins = 8;
  usage("mse", o, "'bins'");
  o.bins = 2048;
  usage("moving_minmax", o, "does not take option 'bins'");
  usage("entropy", {}, "observer 'entropy' has no per-channel form (per-channel: minmax, moving_minmax)", true);

  // Valid values at the edges are accepted.
  o = {};
  o.percentile = 100;
  o.bins = 16;
  CHECK(makeObserver("percentile", o) != nullptr);
  o = {};
  o.momentum = 1;
  CHECK(makeObserver("moving_minmax", o) != nullptr);

  // Entropy needs at least as many bins as grid levels; known only with the grid.
  o = {};
  o.bins = 64;
  auto e = makeObserver("entropy", o);
  const std::vector<float> x = {1.0f, -2.0f};
  e->observe(x.data(), 2);
  ptq::ExitCode code;
  const std::string msg = errorText([&] { e->compute(kInt8Sym); }, &code);
  CHECK(code == ptq::ExitCode::kUsage);
  CHECK(msg.find("option 'bins' (64) must be at least the 128 levels of a 8-bit grid") != std::string::npos);
  CHECK(e->compute(GridSpec{4, true, true}).hi > 0.0f);
}

TEST_CASE("observers reject NaN/Inf batches and computing before any data", "[observer]") {
  for (const std::string& name : observerNames()) {
    INFO(name);
    auto obs = makeObserver(name);
    ptq::ExitCode code;
    CHECK(errorText([&] { obs->compute(kInt8Sym); }, &code).find("no values observed") != std::string::npos);
    CHECK(code == ptq::ExitCode::kInput);
    const std::vector<float> bad = {1.0f, 2.0f, std::numeric_limits<float>::quiet_NaN(), 3.0f};
    const std::string msg = errorText([&] { obs->observe(bad.data(), 4); }, &code);
    CHECK(code == ptq::ExitCode::kInput);
    CHECK(msg.find("NaN at index 2") != std::string::npos);
    CHECK(obs->count() == 0);  // the bad batch was not counted
    const std::vector<float> inf = {-std::numeric_limits<float>::infinity()};
    CHECK(errorText([&] { obs->observe(inf.data(), 1); }).find("-Inf at index 0") != std::string::npos);
  }
  auto ch = makeChannelObserver("minmax");
  const std::vector<float> bad = {1.0f, 2.0f, 3.0f, std::numeric_limits<float>::infinity()};
  CHECK(errorText([&] { ch->observe(bad.data(), 2, 2); }).find("+Inf at row 1, channel 1") != std::string::npos);
}
