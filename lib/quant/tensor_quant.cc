#include "lib/quant/tensor_quant.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "lib/quant/rtn_kernels.h"
#include "lib/util/error.h"

namespace ptq::quant {
namespace {

std::string shapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t product(const std::vector<int64_t>& shape, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end; ++i) n *= shape[i];
  return n;
}

// The tensor seen as [outer, d, inner] around the blocked axis.
struct AxisView {
  int64_t outer = 1, d = 1, inner = 1, blocks = 1;
};

AxisView viewAround(const std::vector<int64_t>& shape, int64_t axis, int64_t block_size) {
  AxisView v;
  const auto a = static_cast<size_t>(axis);
  v.outer = product(shape, 0, a);
  v.d = shape[a];
  v.inner = product(shape, a + 1, shape.size());
  v.blocks = v.d == 0 ? 0 : (v.d + block_size - 1) / block_size;
  return v;
}

// [outer, d, inner] -> [outer, inner, d] (to_last) or back. Tiled so that neither side is walked
// with a large stride for long; parallel over tiles, each output element written once.
template <class T>
void moveAxis(const T* in, int64_t outer, int64_t d, int64_t inner, bool to_last, T* out) {
  constexpr int64_t kTile = 32;
  const int64_t d_tiles = (d + kTile - 1) / kTile, k_tiles = (inner + kTile - 1) / kTile;
  const int64_t tiles = outer * d_tiles * k_tiles;
#pragma omp parallel for schedule(static) if (outer * d * inner >= (int64_t{1} << 16))
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t o = t / (d_tiles * k_tiles);
    const int64_t j0 = (t / k_tiles) % d_tiles * kTile, k0 = t % k_tiles * kTile;
    const int64_t j1 = std::min(d, j0 + kTile), k1 = std::min(inner, k0 + kTile);
    for (int64_t j = j0; j < j1; ++j) {
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t axis_major = (o * d + j) * inner + k, axis_last = (o * inner + k) * d + j;
        if (to_last) {
          out[axis_last] = in[axis_major];
        } else {
          out[axis_major] = in[axis_last];
        }
      }
    }
  }
}

// quantizeRows reports positions in the transposed layout; name the position in the caller's tensor.
[[noreturn]] void throwNonFiniteIn(const float* x, const std::vector<int64_t>& shape, int64_t numel) {
  int64_t i = 0;
  while (i < numel && std::isfinite(x[i])) ++i;
  if (i == numel) throwInternal("quantizeTensor: non-finite value reported but not found");
  std::vector<int64_t> index(shape.size());
  for (size_t a = shape.size(), rest = static_cast<size_t>(i); a-- > 0;) {
    index[a] = static_cast<int64_t>(rest % static_cast<size_t>(shape[a]));
    rest /= static_cast<size_t>(shape[a]);
  }
  throwInput("quantizeTensor: non-finite value " + std::string(std::isnan(x[i]) ? "NaN" : "Inf") + " at index " +
             shapeText(index) + " of tensor " + shapeText(shape));
}

void checkTensor(const QuantizedTensor& q) {
  validateGrid(q.grid);
  const int64_t numel = product(q.shape, 0, q.shape.size());
  const int64_t nscales = product(q.scale_shape, 0, q.scale_shape.size());
  const bool ok = q.codes.size() == static_cast<size_t>(numel) && q.scales.size() == static_cast<size_t>(nscales) &&
                  q.zero_points.size() == q.scales.size() && q.block_size >= 1 &&
                  (q.axis == kPerTensor ? q.scale_shape.empty()
                                        : q.axis >= 0 && static_cast<size_t>(q.axis) < q.shape.size() &&
                                              q.scale_shape.size() == q.shape.size());
  if (!ok) throwInternal("dequantizeTensor: QuantizedTensor buffers do not match its shape " + shapeText(q.shape));
}

}  // namespace

namespace {
ErrorStats finishError(double signal, double noise, double max_abs, int64_t n) {
  ErrorStats s;
  if (n <= 0) return s;
  s.mse = noise / static_cast<double>(n);
  s.max_abs = max_abs;
  if (noise > 0.0) {
    // signal == 0 with noise > 0 gives -inf, which the clamp turns into -kMaxSqnrDb.
    s.sqnr_db = std::clamp(10.0 * std::log10(signal / noise), -kMaxSqnrDb, kMaxSqnrDb);
  }
  return s;
}
}  // namespace

ErrorStats measureError(const float* x, const float* x_hat, int64_t n) {
  double signal = 0.0, noise = 0.0, max_abs = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double xi = x[i], e = xi - static_cast<double>(x_hat[i]);
    signal += xi * xi;
    noise += e * e;
    max_abs = std::max(max_abs, std::fabs(e));
  }
  return finishError(signal, noise, max_abs, n);
}

namespace {
// The error of quantized rows against the rows they came from, dequantizing on the fly: no
// tensor-sized float buffer (quantize's peak memory), same serial sum order on every run.
ErrorStats rowsError(const float* x, const QuantizedRows& q) {
  double signal = 0.0, noise = 0.0, max_abs = 0.0;
  for (int64_t r = 0; r < q.rows; ++r)
    for (int64_t g = 0; g < q.groups_per_row; ++g) {
      const size_t pi = static_cast<size_t>(r * q.groups_per_row + g);
      const GroupParams p{q.scales[pi], fromByte(q.zero_points[pi], q.grid)};
      const int64_t begin = r * q.cols + g * q.group, end = r * q.cols + std::min(q.cols, (g + 1) * q.group);
      for (int64_t i = begin; i < end; ++i) {
        const double xi = x[i];
        const double e = xi - static_cast<double>(dequantizeValue(fromByte(q.codes[static_cast<size_t>(i)], q.grid), p));
        signal += xi * xi;
        noise += e * e;
        max_abs = std::max(max_abs, std::fabs(e));
      }
    }
  return finishError(signal, noise, max_abs, q.rows * q.cols);
}
}  // namespace

QuantizedTensor quantizeTensor(const float* x, const std::vector<int64_t>& shape, int64_t axis, int64_t block_size,
                               const QuantOptions& opts) {
  validateOptions(opts);
  for (int64_t dim : shape) {
    if (dim < 0) throwUsage("quantizeTensor: negative dimension in shape " + shapeText(shape));
  }
  const auto rank = static_cast<int64_t>(shape.size());
  if (axis != kPerTensor && (axis < 0 || axis >= rank)) {
    throwUsage("quantizeTensor: axis " + std::to_string(axis) + " out of range for shape " + shapeText(shape) +
               " (use kPerTensor = -1 for one group)");
  }
  if (axis != kPerTensor && block_size < 1) {
    throwUsage("quantizeTensor: block_size must be >= 1, got " + std::to_string(block_size));
  }
  const int64_t numel = product(shape, 0, shape.size());
  if (numel > 0 && x == nullptr) throwUsage("quantizeTensor: null input");

  QuantizedTensor out;
  out.shape = shape;
  out.axis = axis;
  out.grid = opts.grid;
  try {
    if (axis == kPerTensor) {
      out.block_size = std::max<int64_t>(numel, 1);
      if (numel == 0) {
        // ONNX still needs a scalar scale for an empty tensor: the all-zero parameters.
        const GroupParams p = paramsForRange(0.0f, 0.0f, opts.grid);
        out.scales = {p.scale};
        out.zero_points = {toByte(p.zero)};
        return out;
      }
      QuantizedRows qr = quantizeRows(x, 1, numel, numel, opts);
      out.error = rowsError(x, qr);
      out.codes = std::move(qr.codes);
      out.scales = std::move(qr.scales);
      out.zero_points = std::move(qr.zero_points);
    } else {
      out.block_size = block_size;
      const AxisView v = viewAround(shape, axis, block_size);
      out.scale_shape = shape;
      out.scale_shape[static_cast<size_t>(axis)] = v.blocks;
      // With inner == 1 the blocked axis is already last: no copies.
      std::vector<float> moved;
      if (v.inner > 1) {
        moved.resize(static_cast<size_t>(numel));
        moveAxis(x, v.outer, v.d, v.inner, /*to_last=*/true, moved.data());
      }
      QuantizedRows qr = quantizeRows(v.inner > 1 ? moved.data() : x, v.outer * v.inner, v.d, block_size, opts);
      out.error = rowsError(v.inner > 1 ? moved.data() : x, qr);
      std::vector<float>().swap(moved);  // not needed any more: free before the codes move back
      if (v.inner > 1) {
        out.codes.resize(qr.codes.size());
        out.scales.resize(qr.scales.size());
        out.zero_points.resize(qr.zero_points.size());
        moveAxis(qr.codes.data(), v.outer, v.d, v.inner, /*to_last=*/false, out.codes.data());
        moveAxis(qr.scales.data(), v.outer, v.blocks, v.inner, /*to_last=*/false, out.scales.data());
        moveAxis(qr.zero_points.data(), v.outer, v.blocks, v.inner, /*to_last=*/false, out.zero_points.data());
      } else {
        out.codes = std::move(qr.codes);
        out.scales = std::move(qr.scales);
        out.zero_points = std::move(qr.zero_points);
      }
    }
  } catch (const Error& e) {
    if (e.code() == ExitCode::kInput) throwNonFiniteIn(x, shape, numel);
    throw;
  }
  return out;
}

std::vector<float> dequantizeTensor(const QuantizedTensor& q) {
  checkTensor(q);
  std::vector<float> out(q.codes.size());
  if (q.axis == kPerTensor) {
    const GroupParams p{q.scales[0], fromByte(q.zero_points[0], q.grid)};
    for (size_t i = 0; i < out.size(); ++i) out[i] = dequantizeValue(fromByte(q.codes[i], q.grid), p);
    return out;
  }
  const AxisView v = viewAround(q.shape, q.axis, q.block_size);
  // One task per (outer, position along axis): a run of `inner` elements sharing a block row.
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(out.size()) >= (int64_t{1} << 16))
  for (int64_t oj = 0; oj < v.outer * v.d; ++oj) {
    const int64_t o = oj / v.d, j = oj % v.d;
    const int64_t s0 = (o * v.blocks + j / q.block_size) * v.inner;
    for (int64_t k = 0; k < v.inner; ++k) {
      const GroupParams p{q.scales[s0 + k], fromByte(q.zero_points[s0 + k], q.grid)};
      out[oj * v.inner + k] = dequantizeValue(fromByte(q.codes[oj * v.inner + k], q.grid), p);
    }
  }
  return out;
}


bool perAxisForm(const QuantizedTensor& q, int64_t* onnx_axis) {
  if (q.axis == kPerTensor || q.scale_shape[static_cast<size_t>(q.axis)] != 1) return false;
  int64_t found = -1;
  for (int64_t a = 0; a < static_cast<int64_t>(q.shape.size()); ++a) {
    if (a == q.axis) continue;
    if (q.shape[static_cast<size_t>(a)] > 1) {
      if (found >= 0 && q.shape[static_cast<size_t>(found)] > 1) return false;  // two axes vary
      found = a;
    } else if (found < 0) {
      found = a;  // a size-1 axis serves when no axis varies
    }
  }
  if (found < 0) return false;  // rank 1: a single scale, which is the per-tensor (scalar) form
  if (onnx_axis) *onnx_axis = found;
  return true;
}

}  // namespace ptq::quant
