// Fast RTN kernels. Same math as rtn_kernels_ref.cc; the loops are shaped so that gcc -O3
// -march=x86-64-v2 vectorizes them without -ffast-math (check with -fopt-info-vec), and the work is
// split over groups, which are independent, so the thread count cannot change a single byte.
#include <algorithm>
#include <cstring>
#include <limits>

#include "lib/quant/float_order.h"
#include "lib/quant/rtn_detail.h"
#include "lib/quant/rtn_kernels.h"

namespace ptq::quant {
namespace {

// Below this many elements the OpenMP fork costs more than it saves.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

using detail::fromOrderKey;
using detail::orderKey;

// [min(min(x), 0), max(max(x), 0)]; false if x holds a NaN or Inf.
bool rangeWithZero(const float* x, int64_t n, float* lo, float* hi) {
  uint32_t kmin = orderKey(0.0f), kmax = orderKey(0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t k = orderKey(x[i]);
    kmin = k < kmin ? k : kmin;
    kmax = k > kmax ? k : kmax;
  }
  if (kmin <= orderKey(-std::numeric_limits<float>::infinity()) ||
      kmax >= orderKey(std::numeric_limits<float>::infinity())) {
    return false;
  }
  // + 0.0f turns a -0 minimum into +0, which is what std::min(0.0f, -0.0f) in the reference keeps.
  *lo = fromOrderKey(kmin) + 0.0f;
  *hi = fromOrderKey(kmax);
  return true;
}

// The code grid as floats, so clamping happens before the (otherwise UB on overflow) int conversion.
struct FloatGrid {
  float lo, hi;
  explicit FloatGrid(const GridSpec& g) : lo(static_cast<float>(codeMin(g))), hi(static_cast<float>(codeMax(g))) {}
};

void quantizeGroup(const float* x, int64_t n, const GroupParams& p, const FloatGrid& fg, uint8_t* out) {
  const float s = p.scale, z = static_cast<float>(p.zero);
  for (int64_t i = 0; i < n; ++i) {
    float q = std::nearbyint(x[i] / s) + z;
    q = q < fg.lo ? fg.lo : q;
    q = q > fg.hi ? fg.hi : q;
    out[i] = static_cast<uint8_t>(static_cast<int32_t>(q) & 0xFF);
  }
}

// Squared error of one element, exactly as groupSquaredErrorRef computes it; (q - z) is an exact
// small integer in float, so it equals code - zero.
inline double squaredError(float x, float s, float z, const FloatGrid& fg) {
  float q = std::nearbyint(x / s) + z;
  q = q < fg.lo ? fg.lo : q;
  q = q > fg.hi ? fg.hi : q;
  const float e = static_cast<float>(static_cast<double>(x) - static_cast<double>(q - z) * static_cast<double>(s));
  return static_cast<double>(e) * static_cast<double>(e);
}

double groupError(const float* x, int64_t n, const GroupParams& p, const FloatGrid& fg) {
  const float s = p.scale, z = static_cast<float>(p.zero);
  double lane[kErrorLanes] = {};
  int64_t i = 0;
  for (; i + kErrorLanes <= n; i += kErrorLanes) {
    for (int l = 0; l < kErrorLanes; ++l) lane[l] += squaredError(x[i + l], s, z, fg);
  }
  for (int l = 0; i < n; ++i, ++l) lane[l] += squaredError(x[i], s, z, fg);
  return detail::combineLanes(lane);
}

// fitGroupRef without the throw (it runs inside OpenMP regions); false on NaN/Inf.
bool fitGroupFast(const float* x, int64_t n, const QuantOptions& opts, GroupParams* out) {
  float lo, hi;
  if (!rangeWithZero(x, n, &lo, &hi)) return false;
  GroupParams best = paramsForRange(lo, hi, opts.grid);
  if (opts.clip != ClipSearch::kNone && !(lo == 0.0f && hi == 0.0f)) {
    const FloatGrid fg(opts.grid);
    double best_err = groupError(x, n, best, fg);
    for (int i = 1; i <= opts.clip_steps; ++i) {
      const float r = clipRatio(opts, i);
      const GroupParams p = paramsForRange(lo * r, hi * r, opts.grid);
      const double err = groupError(x, n, p, fg);
      if (err < best_err) {  // strict: on ties the earlier (wider) range wins, as in the reference
        best = p;
        best_err = err;
      }
    }
  }
  *out = best;
  return true;
}

}  // namespace

double groupSquaredError(const float* x, int64_t n, const GroupParams& p, const GridSpec& g) {
  return groupError(x, n, p, FloatGrid(g));
}

GroupParams fitGroup(const float* x, int64_t n, const QuantOptions& opts) {
  validateOptions(opts);
  if (n < 1 || x == nullptr) throwUsage("fitGroup: need n >= 1 values, got " + std::to_string(n));
  GroupParams p;
  if (!fitGroupFast(x, n, opts, &p)) detail::throwNonFiniteAt("fitGroup", x, detail::firstNonFinite(x, n));
  return p;
}

QuantizedRows quantizeRows(const float* x, int64_t rows, int64_t cols, int64_t group, const QuantOptions& opts) {
  QuantizedRows q = detail::allocateRows("quantizeRows", x, rows, cols, group, opts);
  const int64_t gpr = q.groups_per_row;
  const int64_t total = rows * gpr;
  const FloatGrid fg(opts.grid);
  // Exceptions cannot leave an OpenMP region: record the first bad group (the lowest index is the
  // first NaN/Inf in row-major order, as the reference reports it) and throw afterwards.
  int64_t first_bad = total;
#pragma omp parallel for schedule(static) reduction(min : first_bad) if (rows * cols >= kParallelMinElements)
  for (int64_t t = 0; t < total; ++t) {
    const int64_t r = t / gpr;
    const int64_t begin = (t % gpr) * group;
    const int64_t n = std::min(group, cols - begin);
    const float* xg = x + r * cols + begin;
    GroupParams p;
    if (!fitGroupFast(xg, n, opts, &p)) {
      first_bad = std::min(first_bad, t);
      continue;
    }
    q.scales[t] = p.scale;
    q.zero_points[t] = toByte(p.zero);
    quantizeGroup(xg, n, p, fg, q.codes.data() + r * cols + begin);
  }
  if (first_bad < total) {
    const int64_t r = first_bad / gpr;
    detail::throwNonFinite("quantizeRows", x + r * cols, r, detail::firstNonFinite(x + r * cols, cols));
  }
  return q;
}

void dequantizeRows(const QuantizedRows& q, float* out) {
  detail::checkRows("dequantizeRows", q, out);
  const int64_t gpr = q.groups_per_row;
  const int64_t total = q.rows * gpr;
  // Signed bytes are sign-extended arithmetically ((b ^ 0x80) - 0x80) so the loop stays branch-free.
  const int32_t flip = q.grid.is_signed ? 0x80 : 0;
#pragma omp parallel for schedule(static) if (q.rows * q.cols >= kParallelMinElements)
  for (int64_t t = 0; t < total; ++t) {
    const int64_t r = t / gpr;
    const int64_t begin = (t % gpr) * q.group;
    const int64_t n = std::min(q.group, q.cols - begin);
    const uint8_t* c = q.codes.data() + r * q.cols + begin;
    float* o = out + r * q.cols + begin;
    const float s = q.scales[t];
    const int32_t z = fromByte(q.zero_points[t], q.grid);
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(((static_cast<int32_t>(c[i]) ^ flip) - flip) - z) * s;
  }
}

}  // namespace ptq::quant
