// Helpers shared by rtn_kernels.cc (fast) and rtn_kernels_ref.cc (reference): size checks, error
// messages and the fixed lane-combination order. Internal to lib/quant; not an API.
#pragma once
#include <cmath>
#include <cstring>
#include <cstdint>
#include <string>

#include "lib/quant/rtn_kernels.h"
#include "lib/util/error.h"

namespace ptq::quant::detail {

// The one order in which both kernels fold the kErrorLanes partial sums of the clip search.
inline double combineLanes(const double* lane) {
  static_assert(kErrorLanes == 8, "combineLanes spells out 8 lanes");
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// The clip search sums in kSearchLanes lanes (four AVX2 or two AVX-512 accumulators, so the loop
// is not bound by the latency of one add chain), folded pairwise: lane i with lane i + half, halving.
// Written with vectors of 8 doubles (gcc/clang vector extensions, split into narrower registers where
// the ISA has them) because a fold of array elements compiled to 31 scalar adds from the stack, a
// third of the search's time. Each lane sees the same additions in the same order either way.
inline constexpr int kSearchLanes = 32;
inline double combineSearchLanes(const double* lane) {
  static_assert(kSearchLanes == 32, "combineSearchLanes spells out 32 lanes");
  typedef double Vec8 __attribute__((vector_size(64)));
  Vec8 v[4];
  std::memcpy(v, lane, sizeof v);
  const Vec8 w = (v[0] + v[2]) + (v[1] + v[3]);  // i + (i + 16), then i + (i + 8)
  const double a0 = w[0] + w[4], a1 = w[1] + w[5], a2 = w[2] + w[6], a3 = w[3] + w[7];
  return (a0 + a2) + (a1 + a3);
}

inline int64_t firstNonFinite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

inline std::string describeValue(float v) { return std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"); }

// Weights with NaN/Inf are a broken input model, never something to round.
[[noreturn]] inline void throwNonFinite(const char* who, const float* row, int64_t r, int64_t c) {
  throwInput(std::string(who) + ": non-finite value " + describeValue(row[c]) + " at row " + std::to_string(r) +
             ", column " + std::to_string(c));
}

[[noreturn]] inline void throwNonFiniteAt(const char* who, const float* x, int64_t i) {
  throwInput(std::string(who) + ": non-finite value " + describeValue(x[i]) + " at index " + std::to_string(i));
}

inline int64_t groupsPerRow(int64_t cols, int64_t group) { return cols == 0 ? 0 : (cols + group - 1) / group; }

// Validates sizes and options and returns an output with every buffer sized.
inline QuantizedRows allocateRows(const char* who, const float* x, int64_t rows, int64_t cols, int64_t group,
                                  const QuantOptions& opts) {
  validateOptions(opts);
  if (rows < 0 || cols < 0) {
    throwUsage(std::string(who) + ": negative size [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  }
  if (group < 1) throwUsage(std::string(who) + ": group must be >= 1, got " + std::to_string(group));
  if (x == nullptr && rows > 0 && cols > 0) throwUsage(std::string(who) + ": null input");
  QuantizedRows q;
  q.rows = rows;
  q.cols = cols;
  q.group = group;
  q.groups_per_row = groupsPerRow(cols, group);
  q.grid = opts.grid;
  q.codes.resize(static_cast<size_t>(rows * cols));
  q.scales.resize(static_cast<size_t>(rows * q.groups_per_row));
  q.zero_points.resize(static_cast<size_t>(rows * q.groups_per_row));
  return q;
}

// A QuantizedRows whose buffers disagree with its sizes can only come from a bug.
inline void checkRows(const char* who, const QuantizedRows& q, const float* out) {
  validateGrid(q.grid);
  const bool ok = q.rows >= 0 && q.cols >= 0 && q.group >= 1 && q.groups_per_row == groupsPerRow(q.cols, q.group) &&
                  q.codes.size() == static_cast<size_t>(q.rows * q.cols) &&
                  q.scales.size() == static_cast<size_t>(q.rows * q.groups_per_row) &&
                  q.zero_points.size() == q.scales.size() && (out != nullptr || q.codes.empty());
  if (!ok) throwInternal(std::string(who) + ": QuantizedRows buffers do not match its sizes");
}

}  // namespace ptq::quant::detail
