// Scalar reference twins of rtn_kernels.cc: the definitions written as plainly as possible, one
// element at a time through grid.h's quantizeValue / dequantizeValue. Tests hold the fast kernels
// to these byte for byte.
#include <algorithm>

#include "lib/quant/rtn_detail.h"
#include "lib/quant/rtn_kernels.h"

namespace ptq::quant {
namespace {

// The clip search's error of a candidate: as groupSquaredErrorRef, but with codes from x * (1/s)
// (the search runs 21 of these per weight, and a division costs as much as the rest of the loop).
double searchErrorRef(const float* x, int64_t n, const GroupParams& p, const GridSpec& g) {
  const float inv = 1.0f / p.scale;
  double lane[detail::kSearchLanes] = {};
  for (int64_t i = 0; i < n; ++i) {
    float q = std::nearbyint(x[i] * inv);
    q = std::max(q, static_cast<float>(codeMin(g) - p.zero));
    q = std::min(q, static_cast<float>(codeMax(g) - p.zero));
    const double exact_grid_point = static_cast<double>(q) * static_cast<double>(p.scale);
    const float e = static_cast<float>(static_cast<double>(x[i]) - exact_grid_point);
    lane[i % detail::kSearchLanes] += static_cast<double>(e) * static_cast<double>(e);
  }
  return detail::combineSearchLanes(lane);
}

// x is known finite and n >= 1.
GroupParams fitFiniteGroupRef(const float* x, int64_t n, const QuantOptions& opts) {
  float lo = 0.0f, hi = 0.0f;  // the range always includes 0
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  GroupParams best = paramsForRange(lo, hi, opts.grid);
  if (opts.clip == ClipSearch::kNone || (lo == 0.0f && hi == 0.0f)) return best;
  double best_err = searchErrorRef(x, n, best, opts.grid);
  for (int i = 1; i <= opts.clip_steps; ++i) {
    const float r = clipRatio(opts, i);
    const GroupParams p = paramsForRange(lo * r, hi * r, opts.grid);
    const double err = searchErrorRef(x, n, p, opts.grid);
    if (err < best_err) {  // strict: on ties the earlier (wider) range wins
      best = p;
      best_err = err;
    }
  }
  return best;
}

}  // namespace

double groupSquaredErrorRef(const float* x, int64_t n, const GroupParams& p, const GridSpec& g) {
  double lane[kErrorLanes] = {};
  for (int64_t i = 0; i < n; ++i) {
    const int32_t code = quantizeValue(x[i], p, g);
    const double exact_grid_point = static_cast<double>(code - p.zero) * static_cast<double>(p.scale);
    const float e = static_cast<float>(static_cast<double>(x[i]) - exact_grid_point);
    lane[i % kErrorLanes] += static_cast<double>(e) * static_cast<double>(e);
  }
  return detail::combineLanes(lane);
}

GroupParams fitGroupRef(const float* x, int64_t n, const QuantOptions& opts) {
  validateOptions(opts);
  if (n < 1 || x == nullptr) throwUsage("fitGroupRef: need n >= 1 values, got " + std::to_string(n));
  const int64_t bad = detail::firstNonFinite(x, n);
  if (bad >= 0) detail::throwNonFiniteAt("fitGroupRef", x, bad);
  return fitFiniteGroupRef(x, n, opts);
}

QuantizedRows quantizeRowsRef(const float* x, int64_t rows, int64_t cols, int64_t group, const QuantOptions& opts) {
  QuantizedRows q = detail::allocateRows("quantizeRowsRef", x, rows, cols, group, opts);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    const int64_t bad = detail::firstNonFinite(row, cols);
    if (bad >= 0) detail::throwNonFinite("quantizeRowsRef", row, r, bad);
    for (int64_t g = 0; g < q.groups_per_row; ++g) {
      const int64_t begin = g * group;
      const int64_t n = std::min(group, cols - begin);
      const GroupParams p = fitFiniteGroupRef(row + begin, n, opts);
      q.scales[r * q.groups_per_row + g] = p.scale;
      q.zero_points[r * q.groups_per_row + g] = toByte(p.zero);
      for (int64_t i = begin; i < begin + n; ++i) q.codes[r * cols + i] = toByte(quantizeValue(row[i], p, opts.grid));
    }
  }
  return q;
}

void dequantizeRowsRef(const QuantizedRows& q, float* out) {
  detail::checkRows("dequantizeRowsRef", q, out);
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t c = 0; c < q.cols; ++c) {
      const int64_t k = r * q.groups_per_row + c / q.group;
      const GroupParams p{q.scales[k], fromByte(q.zero_points[k], q.grid)};
      out[r * q.cols + c] = dequantizeValue(fromByte(q.codes[r * q.cols + c], q.grid), p);
    }
  }
}

}  // namespace ptq::quant
