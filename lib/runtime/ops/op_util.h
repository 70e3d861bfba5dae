// Small helpers shared by the kernels: axis/shape arithmetic, broadcasting, dtype dispatch, fixed
// parallel chunking (chunk boundaries depend only on sizes, never on the thread count, so results
// are bit-identical at any thread count). No Eigen here: this header is included by every op file.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <type_traits>
#include <vector>

#include "lib/runtime/kernel.h"
#include "lib/util/denormals.h"

namespace ptq::runtime::ops {

// axis in [-rank, rank) -> [0, rank); runError otherwise.
int64_t normAxis(int64_t axis, int64_t rank, const char* what = "axis");
// numpy broadcasting of two shapes; runError when incompatible.
Shape broadcastShapes(const Shape& a, const Shape& b);
// Strides of `in` (row-major) aligned to `out` (broadcast dims get stride 0). in.size() <= out.size().
std::vector<int64_t> broadcastStrides(const Shape& in, const Shape& out);
std::vector<int64_t> rowMajorStrides(const Shape& s);
// Integer tensor (int32/int64/uint8/...) -> int64 values; runError for floats.
std::vector<int64_t> toInts(const Tensor& t, const char* what);
int64_t scalarInt(const Tensor& t, const char* what);
double scalarDouble(const Tensor& t);
// "float32[2, 3]"
std::string typeShape(const Tensor& t);
// Requires the tensor to have the given dtype at run time (inputs whose dtype was unknown at plan).
void expectType(const Tensor& t, DType d, const char* what);

// Product of dims [from, to).
inline int64_t dimProduct(const Shape& s, int64_t from, int64_t to) {
  int64_t n = 1;
  for (int64_t i = from; i < to; ++i) n *= s[static_cast<size_t>(i)];
  return n;
}

// Runs fn(begin, end) over [0, n) in chunks of `grain` items on up to `threads` threads.
template <typename F>
void parallelFor(int threads, int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  if (chunks == 1 || threads <= 1) {
    for (int64_t c = 0; c < chunks; ++c) fn(c * grain, std::min(n, (c + 1) * grain));
    return;
  }
  // Exceptions must not escape an OpenMP region: keep the first, rethrow after it. Workers compute
  // with the caller's denormal flags (lib/util/denormals.h), whatever their own were.
  std::exception_ptr error;
  const unsigned flags = denormalFlags();
#pragma omp parallel num_threads(threads)
  {
    const ScopedDenormalFlags same_as_caller(flags);
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c) {
      try {
        fn(c * grain, std::min(n, (c + 1) * grain));
      } catch (...) {
#pragma omp critical(ptq_parallel_for_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

// Grain for elementwise work so that a chunk has ~`target` scalar operations.
inline int64_t grainFor(int64_t work_per_item, int64_t target = 32768) {
  return std::max<int64_t>(1, target / std::max<int64_t>(1, work_per_item));
}

// Calls f(T{}) for the C++ type of dtype `t` among the listed groups; returns false if none matched.
template <typename F>
bool dispatchFloat(DType t, F&& f) {
  switch (t) {
    case DType::kFloat32: f(float{}); return true;
    case DType::kFloat64: f(double{}); return true;
    default: return false;
  }
}
template <typename F>
bool dispatchInt(DType t, F&& f) {
  switch (t) {
    case DType::kInt64: f(int64_t{}); return true;
    case DType::kInt32: f(int32_t{}); return true;
    case DType::kInt8: f(int8_t{}); return true;
    case DType::kUInt8: f(uint8_t{}); return true;
    case DType::kInt16: f(int16_t{}); return true;
    case DType::kUInt16: f(uint16_t{}); return true;
    case DType::kUInt32: f(uint32_t{}); return true;
    case DType::kUInt64: f(uint64_t{}); return true;
    default: return false;
  }
}
template <typename F>
bool dispatchNumeric(DType t, F&& f) {
  return dispatchFloat(t, f) || dispatchInt(t, f);
}
// Any fixed-width dtype by its storage size (for data movement: Transpose, Gather, Concat, ...).
// int4/uint4 are not byte-addressable and are rejected by the callers.
template <typename F>
bool dispatchBytes(DType t, F&& f) {
  switch (ir::dtypeBits(t)) {
    case 8: f(uint8_t{}); return true;
    case 16: f(uint16_t{}); return true;
    case 32: f(uint32_t{}); return true;
    case 64: f(uint64_t{}); return true;
    default: return false;
  }
}

inline constexpr std::initializer_list<DType> kFloatTypes = {DType::kFloat32, DType::kFloat64};
// Dtypes that data-movement kernels (which only copy bytes) accept.
bool isMovableType(DType t);
void requireMovable(const NodeInfo& info, size_t input);

// Output of `in`'s shape (and `dtype`, same element size), written in place over `in` when the
// executor moved in its last reference. `x` points at the input elements either way.
struct InPlace {
  Tensor y;
  const void* x = nullptr;
  Tensor keep;  // the input, when not reused
};
inline InPlace inPlace(ExecContext& ctx, Tensor& in, DType dtype) {
  InPlace r;
  r.keep = std::move(in);
  const Shape shape = r.keep.shape();
  r.y = ctx.reuse(r.keep, dtype, shape);
  r.x = r.keep.empty() ? r.y.data() : r.keep.data();
  return r;
}

// Window geometry shared by Conv and the pools. pads = [begin_0.., end_0..].
struct Window {
  std::vector<int64_t> kernel, strides, dilations, pads;
  std::string auto_pad = "NOTSET";
  bool ceil_mode = false;
};
// Reads kernel_shape/strides/dilations/pads/auto_pad/ceil_mode; `spatial` = number of spatial dims
// when known from the weights (else 0: taken from kernel_shape).
Window readWindow(const NodeInfo& info, int64_t spatial);
// Fills defaults for a window whose rank was unknown at planning; runError on size mismatches.
void completeWindow(Window& w, int64_t spatial);
// Output spatial dims for `in` spatial dims; resolves auto_pad into w.pads.
std::vector<int64_t> windowOutput(Window& w, const std::vector<int64_t>& in);

// Copies a (possibly strided/broadcast) tensor into dense row-major output: out[idx] = in[sum idx*strides].
void stridedCopy(const void* in, void* out, size_t elem_bytes, const Shape& out_shape,
                 const std::vector<int64_t>& in_strides, int threads);

}  // namespace ptq::runtime::ops
