#include "lib/quant/tensor_quant.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "lib/quant/byte_transpose.h"
#include "lib/quant/column_stream.h"
#include "lib/quant/rtn_kernels.h"
#include "lib/util/error.h"
#include "lib/util/file_pages.h"

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

// Element i of a float array at any alignment (memcpy: a plain load, without the alignment UB).
inline float loadFloat(const unsigned char* x, int64_t i) {
  float f;
  std::memcpy(&f, x + i * 4, sizeof f);
  return f;
}

// The kernels only say that a NaN/Inf was met; name the first one in the caller's tensor.
[[noreturn]] void throwNonFiniteIn(const unsigned char* xb, const std::vector<int64_t>& shape, int64_t numel) {
  int64_t i = 0;
  while (i < numel && std::isfinite(loadFloat(xb, i))) ++i;
  if (i == numel) throwInternal("quantizeTensor: non-finite value reported but not found");
  std::vector<int64_t> index(shape.size());
  for (size_t a = shape.size(), rest = static_cast<size_t>(i); a-- > 0;) {
    index[a] = static_cast<int64_t>(rest % static_cast<size_t>(shape[a]));
    rest /= static_cast<size_t>(shape[a]);
  }
  throwInput("quantizeTensor: non-finite value " + std::string(std::isnan(loadFloat(xb, i)) ? "NaN" : "Inf") + " at index " +
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

ErrorStats combineRows(const std::vector<ErrorSums>& rows, int64_t n) {
  double signal = 0.0, noise = 0.0, max_abs = 0.0;
  for (const ErrorSums& r : rows) {  // row order: the same sum at any thread count
    signal += r.signal;
    noise += r.noise;
    max_abs = std::max(max_abs, r.max_abs);
  }
  return finishError(signal, noise, max_abs, n);
}

// Elements below which the OpenMP fork costs more than it saves.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;
// Positions along `inner` gathered per tile when the blocked axis is not last: 64 floats are four
// whole cache lines of each row, which the adjacent-line and stream prefetchers fetch ahead; with 16
// (one line per row, a page apart) the tiles of a GPT-2-small w4a16-rtn quantize spent 16% more
// user time waiting on DRAM.
constexpr int64_t kTileColumns = 64;
// Positions along `inner` from which a per-channel weight (one block along d, no clip search) is
// streamed by rows (column_stream.h) rather than gathered in tiles of columns.
constexpr int64_t kStreamMinColumns = 64;
// The page size the tiling assumes (the TLB's granule).
constexpr int64_t kPageBytes = 4096;

// The blocked axis is last (inner == 1): rows [outer, d] are contiguous, read in chunks of rows (the
// pages of each mapped before and given back after, column_stream.h). Floats that are not aligned (a
// weight viewed inside a protobuf file) are copied a row at a time into a cache-sized buffer.
// False on NaN/Inf.
bool quantizeContiguous(const unsigned char* xb, const AxisView& v, int64_t block, const QuantOptions& opts,
                        QuantizedTensor& out, std::vector<ErrorSums>& sums) {
  const bool aligned = reinterpret_cast<uintptr_t>(xb) % alignof(float) == 0;
  const bool parallel = v.outer * v.d >= kParallelMinElements;
  bool ok = true;
  detail::forRowChunks(xb, v.outer, v.d * 4, 1, [&](int64_t r0, int64_t r1) {
    bool chunk_ok = true;
#pragma omp parallel reduction(&& : chunk_ok) if (parallel)
    {
      std::vector<float> row(aligned ? 0 : static_cast<size_t>(v.d));
#pragma omp for schedule(static)
      for (int64_t r = r0; r < r1; ++r) {
        const float* x;
        if (aligned) {
          x = reinterpret_cast<const float*>(xb) + r * v.d;
        } else {
          std::memcpy(row.data(), xb + r * v.d * 4, static_cast<size_t>(v.d) * 4);
          x = row.data();
        }
        chunk_ok = quantizeRowWithError(x, v.d, block, opts, out.codes.data() + r * v.d, out.scales.data() + r * v.blocks,
                                        out.zero_points.data() + r * v.blocks, &sums[static_cast<size_t>(r)]) &&
                   chunk_ok;
      }
    }
    ok = ok && chunk_ok;
  });
  return ok;
}

// The transposes of a tile: `tk` <= kTileColumns floats from each of `len` rows `stride` floats
// apart (at any alignment) into tk rows of len, and codes back. Floats go eight rows at a time through
// a small row-major buffer, so that loads and stores are runs (an element-wise transpose with the tile
// width unknown at compile time was a fifth of the w4a16 run); kWidth is tk when it is the full tile
// width, so that the copies have a size known at compile time, and 0 (tk at run time) otherwise.
// Codes of a full tile go back in 16x16 byte transposes, those of the narrow last tile of a row
// through the same kind of small buffer.
template <int64_t kWidth>
void gatherTileOf(const unsigned char* src, int64_t stride, int64_t len, int64_t tk, float* xs) {
  const int64_t w = kWidth ? kWidth : tk;
  float tmp[8][kTileColumns];
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {
    for (int r = 0; r < 8; ++r) std::memcpy(tmp[r], src + (j + r) * stride * 4, static_cast<size_t>(w) * 4);
    for (int64_t c = 0; c < w; ++c)
      for (int r = 0; r < 8; ++r) xs[c * len + j + r] = tmp[r][c];
  }
  for (; j < len; ++j)
    for (int64_t c = 0; c < w; ++c) xs[c * len + j] = loadFloat(src, j * stride + c);
}

void scatterNarrowTile(const uint8_t* cs, int64_t len, int64_t tk, uint8_t* dst, int64_t stride) {
  const int64_t w = tk;
  uint8_t tmp[8][kTileColumns];
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {
    for (int64_t c = 0; c < w; ++c)
      for (int r = 0; r < 8; ++r) tmp[r][c] = cs[c * len + j + r];
    for (int r = 0; r < 8; ++r) std::memcpy(dst + (j + r) * stride, tmp[r], static_cast<size_t>(w));
  }
  for (; j < len; ++j)
    for (int64_t c = 0; c < w; ++c) dst[j * stride + c] = cs[c * len + j];
}

void gatherTile(const unsigned char* src, int64_t stride, int64_t len, int64_t tk, float* xs) {
  if (tk == kTileColumns) gatherTileOf<kTileColumns>(src, stride, len, tk, xs);
  else gatherTileOf<0>(src, stride, len, tk, xs);
}

void scatterTile(const uint8_t* cs, int64_t len, int64_t tk, uint8_t* dst, int64_t stride) {
  if (tk != kTileColumns) return scatterNarrowTile(cs, len, tk, dst, stride);
  // Full tiles in 16x16 blocks (the byte transpose by scalar moves was a third of quantizeTiles).
  static_assert(kTileColumns % 16 == 0, "the tile is transposed in 16x16 blocks");
  int64_t j = 0;
  for (; j + 16 <= len; j += 16)
    for (int64_t g = 0; g < kTileColumns; g += 16) transposeBytes16x16(cs + g * len + j, len, dst + j * stride + g, stride);
  for (; j < len; ++j)
    for (int64_t c = 0; c < kTileColumns; ++c) dst[j * stride + c] = cs[c * len + j];
}

// Rows [j0, j1) (whole blocks) of slabs [o0, o1) of a tensor whose blocked axis is not last: each task
// gathers kTileColumns positions of `inner` into rows of length j1 - j0 in a cache-sized scratch
// buffer, quantizes them, and writes codes and parameters straight to their places in the tensor's
// layout (no tensor-sized transposed copy). A row's error sums gain its blocks in order, chunk after
// chunk, as they would in one call. False on NaN/Inf.
bool quantizeTiles(const unsigned char* xb, const AxisView& v, int64_t block, const QuantOptions& opts, int64_t o0,
                   int64_t o1, int64_t j0, int64_t j1, QuantizedTensor& out, std::vector<ErrorSums>& sums) {
  const int64_t len = j1 - j0, b0 = j0 / block, nb = (len + block - 1) / block;
  const int64_t tiles_per_outer = (v.inner + kTileColumns - 1) / kTileColumns;
  const int64_t tiles = (o1 - o0) * tiles_per_outer;
  bool ok = true;
#pragma omp parallel reduction(&& : ok) if ((o1 - o0) * len * v.inner >= kParallelMinElements)
  {
    std::vector<float> xs(static_cast<size_t>(kTileColumns * len));
    std::vector<uint8_t> cs(static_cast<size_t>(kTileColumns * len));
    std::vector<float> ss(static_cast<size_t>(kTileColumns * nb));
    std::vector<uint8_t> zs(static_cast<size_t>(kTileColumns * nb));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t o = o0 + t / tiles_per_outer, k0 = t % tiles_per_outer * kTileColumns;
      const int64_t tk = std::min(kTileColumns, v.inner - k0);
      const int64_t base = o * v.d * v.inner + k0;
      gatherTile(xb + (base + j0 * v.inner) * 4, v.inner, len, tk, xs.data());
      for (int64_t c = 0; c < tk; ++c) {
        const size_t row = static_cast<size_t>(o * v.inner + k0 + c);
        ok = quantizeRowWithError(xs.data() + c * len, len, block, opts, cs.data() + c * len, ss.data() + c * nb,
                                  zs.data() + c * nb, &sums[row]) && ok;
      }
      scatterTile(cs.data(), len, tk, out.codes.data() + base + j0 * v.inner, v.inner);
      for (int64_t b = 0; b < nb; ++b) {
        const size_t at = static_cast<size_t>((o * v.blocks + b0 + b) * v.inner + k0);
        for (int64_t c = 0; c < tk; ++c) {
          out.scales[at + static_cast<size_t>(c)] = ss[static_cast<size_t>(c * nb + b)];
          out.zero_points[at + static_cast<size_t>(c)] = zs[static_cast<size_t>(c * nb + b)];
        }
      }
    }
  }
  return ok;
}

// The blocked axis is not last. Read in chunks (column_stream.h): several slabs [d, inner] per chunk
// when a slab is small, else chunks of whole blocks of rows within each slab (one chunk, the whole
// slab, when the slab is one block: a clip search needs the whole column). A per-channel weight without
// clip search is streamed by rows instead. False on NaN/Inf.
bool quantizeTiled(const unsigned char* xb, const AxisView& v, int64_t block, const QuantOptions& opts, QuantizedTensor& out,
                   std::vector<ErrorSums>& sums) {
  const int64_t slab_bytes = v.d * v.inner * 4;
  if (v.blocks == 1 && opts.clip == ClipSearch::kNone && v.inner >= kStreamMinColumns) {
    for (int64_t o = 0; o < v.outer; ++o) {
      if (!detail::quantizeColumnsStreamed(xb + o * slab_bytes, v.d, v.inner, opts, out.codes.data() + o * v.d * v.inner,
                                           out.scales.data() + o * v.inner, out.zero_points.data() + o * v.inner,
                                           sums.data() + o * v.inner))
        return false;
    }
    return true;
  }
  // Rows a page or more apart (a MatMul weight [K, N] blocked along K) are tiled one block of rows at
  // a time, so that a tile reads the same block's pages as the tile before it; a tile over all the
  // rows of a chunk touched a page per row each time, and waited on the TLB and DRAM for every one.
  const bool per_block = v.blocks > 1 && v.inner * 4 >= kPageBytes;
  bool ok = true;
  if (slab_bytes < detail::kStreamChunkBytes && !per_block) {
    detail::forRowChunks(xb, v.outer, slab_bytes, 1, [&](int64_t o0, int64_t o1) {
      ok = ok && quantizeTiles(xb, v, block, opts, o0, o1, 0, v.d, out, sums);
    });
    return ok;
  }
  for (int64_t o = 0; o < v.outer && ok; ++o) {
    detail::forRowChunks(xb + o * slab_bytes, v.d, v.inner * 4, v.blocks == 1 ? v.d : block, [&](int64_t j0, int64_t j1) {
      const int64_t step = per_block ? block : j1 - j0;
      for (int64_t jb = j0; jb < j1 && ok; jb += step)
        ok = quantizeTiles(xb, v, block, opts, o, o + 1, jb, std::min(j1, jb + step), out, sums);
    });
  }
  return ok;
}

}  // namespace

QuantizedTensor quantizeTensor(const float* x, const std::vector<int64_t>& shape, int64_t axis, int64_t block_size,
                               const QuantOptions& opts) {
  return quantizeTensorBytes(x, shape, axis, block_size, opts);
}

QuantizedTensor quantizeTensorBytes(const void* x, const std::vector<int64_t>& shape, int64_t axis, int64_t block_size,
                                    const QuantOptions& opts) {
  validateOptions(opts);
  const auto* xb = static_cast<const unsigned char*>(x);
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
  if (axis == kPerTensor) {
    out.block_size = std::max<int64_t>(numel, 1);
    if (numel == 0) {
      // ONNX still needs a scalar scale for an empty tensor: the all-zero parameters.
      const GroupParams p = paramsForRange(0.0f, 0.0f, opts.grid);
      out.scales = {p.scale};
      out.zero_points = {toByte(p.zero)};
      return out;
    }
  } else {
    out.block_size = block_size;
  }
  // Per-tensor is one row holding one block.
  const AxisView v = axis == kPerTensor ? AxisView{1, numel, 1, 1} : viewAround(shape, axis, block_size);
  if (axis != kPerTensor) {
    out.scale_shape = shape;
    out.scale_shape[static_cast<size_t>(axis)] = v.blocks;
  }
  out.codes.reserve(static_cast<size_t>(numel));
  util::adviseHugePages(out.codes.data(), static_cast<size_t>(numel));
  out.codes.resize(static_cast<size_t>(numel));
  out.scales.resize(static_cast<size_t>(v.outer * v.blocks * v.inner));
  out.zero_points.resize(out.scales.size());
  std::vector<ErrorSums> sums(static_cast<size_t>(v.outer * v.inner));
  const bool ok = v.inner == 1 ? quantizeContiguous(xb, v, out.block_size, opts, out, sums)
                               : quantizeTiled(xb, v, out.block_size, opts, out, sums);
  if (!ok) throwNonFiniteIn(xb, shape, numel);
  out.error = combineRows(sums, numel);
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
