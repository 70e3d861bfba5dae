// Round-to-nearest (RTN) kernels over a row-major float matrix [rows, cols] whose rows are cut into
// groups of `group` consecutive elements (the last group of a row may be shorter; group >= cols is
// one group per row). No graph here: plain pointers and sizes.
//
// Every fast kernel has a scalar `...Ref` twin written as plain loops. The fast ones run OpenMP over
// groups with static scheduling and vectorizable inner loops, and must give byte-identical output
// to the reference at any thread count (tests check this), so:
//  - both divide by the scale (no reciprocal) for the codes they write and round with nearbyint
//    (half to even); the clip search rates its candidates with codes from x * (1/s) instead (a
//    division per weight and candidate was its whole cost; the two differ only within an ulp of a tie);
//  - the clip search sums squared errors in kErrorLanes interleaved partial sums
//    (element i goes to lane i % kErrorLanes) combined in one fixed order, which is the order the
//    vectorized loop uses; a plain serial sum would not vectorize without -ffast-math;
//  - each error is e = float(x - (code - zero) * scale) with the product taken in double, where it
//    is exact, and e^2 is summed in double, where it is exact too. With no inexact product left,
//    FMA contraction (-march with FMA, gcc's default -ffp-contract=fast) cannot change a result.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lib/quant/grid.h"

namespace ptq::quant {

inline constexpr int kErrorLanes = 8;

struct QuantizedRows {
  std::vector<uint8_t> codes;        // [rows, cols], one code per byte (see grid.h for signed bytes)
  std::vector<float> scales;         // [rows, groups_per_row]
  std::vector<uint8_t> zero_points;  // [rows, groups_per_row], same byte convention as codes
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t group = 0;
  int64_t groups_per_row = 0;  // ceil(cols / group)
  GridSpec grid;               // needed to read the bytes back (signed or not)
};

// Parameters for one group of n >= 1 values, including the clip search of `opts`.
// Throws ptq::Error (input) naming the index of a NaN/Inf value.
GroupParams fitGroupRef(const float* x, int64_t n, const QuantOptions& opts);
GroupParams fitGroup(const float* x, int64_t n, const QuantOptions& opts);

// Sum of (x - x^)^2 over n values under p, computed as described above (with the written codes):
// what a sensitivity measure like HAWQ's ||Q(W) - W||^2 needs, and, up to the reciprocal, what
// the clip search minimizes.
double groupSquaredErrorRef(const float* x, int64_t n, const GroupParams& p, const GridSpec& g);
double groupSquaredError(const float* x, int64_t n, const GroupParams& p, const GridSpec& g);

// Quantize x [rows, cols]. Throws ptq::Error (input) naming the row and column of the first
// NaN/Inf in row-major order, (usage) for bad sizes or options.
QuantizedRows quantizeRowsRef(const float* x, int64_t rows, int64_t cols, int64_t group,
                              const QuantOptions& opts);
QuantizedRows quantizeRows(const float* x, int64_t rows, int64_t cols, int64_t group,
                           const QuantOptions& opts);
// quantizeRows into the buffers of *out, which must be sized for x (rows, cols, group and grid set,
// as quantizeRows returns it): for callers that quantize many matrices of one shape, and for timing
// the kernel without the allocation.
void quantizeRowsInto(const float* x, const QuantOptions& opts, QuantizedRows* out);

// Error figures of quantized values against their inputs: sum(x^2), sum(e^2) and max |e|, with
// e = float(x - (code - zero) * scale) as the clip search computes it (the product exact in double).
struct ErrorSums {
  double signal = 0.0;
  double noise = 0.0;
  double max_abs = 0.0;
};

// One row of quantizeRows, with the row's error added to *sums (each group's sums taken in the
// fixed lane order, groups in order): codes [cols], scales and zero points [ceil(cols / group)].
// Returns false on NaN/Inf and throws nothing, so it can run inside OpenMP regions.
bool quantizeRowWithError(const float* x, int64_t cols, int64_t group, const QuantOptions& opts, uint8_t* codes,
                          float* scales, uint8_t* zero_points, ErrorSums* sums);

// The per-column form of quantizeRowWithError, for a matrix [d, cols] whose columns are the groups
// (one group per column, no clip search), fed one row at a time so that the matrix can be streamed
// (tensor_quant.cc). Same bytes and sums as the per-group kernels, in every instruction set.
//  - columnRangeRow widens kmin/kmax (detail::orderKey keys, starting at orderKey(0)) by row x [n].
//  - quantizeColumnsRow writes the codes of row j with scale s[c] and zero z[c] of column c; adds x^2,
//    e^2 to signal[c], noise[c] (the caller passes lane j % kErrorLanes's rows) and widens max_abs[c].
void columnRangeRow(const float* x, int64_t n, uint32_t* kmin, uint32_t* kmax);
void quantizeColumnsRow(const float* x, int64_t n, const float* s, const float* z, const GridSpec& g,
                        uint8_t* codes, double* signal, double* noise, float* max_abs);

// The instruction set the fast kernels run with: "avx512", "avx2" or "baseline" (SSE4.2, the build's
// -march). The widest the CPU has, unless PTQ_RTN_ISA names a narrower one. Every choice gives the
// same bytes (tests hold each to the reference).
const char* rtnKernelIsa();
// Switches the fast kernels to `name` ("" = the default choice); false (nothing changed) when the
// name is unknown or the CPU lacks it. For tests and benchmarks; not to be called while kernels run.
bool setRtnKernelIsa(const std::string& name);

// out [rows, cols] = (code - zero) * scale.
void dequantizeRowsRef(const QuantizedRows& q, float* out);
void dequantizeRows(const QuantizedRows& q, float* out);

}  // namespace ptq::quant
