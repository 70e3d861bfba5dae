// Per-channel quantization of a matrix [d, cols] whose columns are the groups (one scale per column,
// no clip search: a MatMul weight [K, N] quantized per output channel), streamed a chunk of rows at a
// time instead of gathered column by column. Internal to lib/quant (tensor_quant.cc); not an API.
#pragma once
#include <algorithm>
#include <cstdint>

#include "lib/quant/rtn_kernels.h"

namespace ptq::quant::detail {

// Codes [d, cols], scales and zero points [cols] of x [d, cols] (floats at any alignment), each
// column's error added to sums[c]: the bytes and sums quantizeRowWithError gives each column.
// Reads the rows twice (ranges, then codes) in chunks of a few MB; a chunk's pages of a file mapping
// are mapped before it is read and given back after (lib/util/file_pages.h), so a weight larger than
// memory is never resident whole. False on NaN/Inf (nothing else is reported).
bool quantizeColumnsStreamed(const unsigned char* xb, int64_t d, int64_t cols, const QuantOptions& opts, uint8_t* codes,
                             float* scales, uint8_t* zero_points, ErrorSums* sums);

// Calls fn(j0, j1) over [0, d) in chunks of rows of `row_bytes` bytes each (a multiple of `align`
// rows, so that a chunk holds whole blocks), with the chunk's pages of a file mapping (if xb lies in
// one) mapped before and given back after.
template <typename Fn>
void forRowChunks(const unsigned char* xb, int64_t d, int64_t row_bytes, int64_t align, Fn&& fn);

}  // namespace ptq::quant::detail

#include "lib/util/file_pages.h"

namespace ptq::quant::detail {

// About 16 MB of rows per chunk: large enough that each madvise call covers thousands of pages.
inline constexpr int64_t kStreamChunkBytes = int64_t{16} << 20;

template <typename Fn>
void forRowChunks(const unsigned char* xb, int64_t d, int64_t row_bytes, int64_t align, Fn&& fn) {
  align = std::max<int64_t>(1, align);
  const int64_t fit = row_bytes > 0 ? kStreamChunkBytes / row_bytes : d;
  const int64_t rows_per_chunk = std::max(align, fit / align * align);
  for (int64_t j0 = 0; j0 < d; j0 += rows_per_chunk) {
    const int64_t j1 = std::min(d, j0 + rows_per_chunk);
    const unsigned char* p = xb + j0 * row_bytes;
    const auto n = static_cast<size_t>((j1 - j0) * row_bytes);
    util::prefaultFilePages(p, n);
    fn(j0, j1);
    util::releaseFilePages(p, n);
  }
}

}  // namespace ptq::quant::detail
