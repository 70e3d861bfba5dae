// 16x16 byte transposes for moving codes between [rows, columns] layouts (tiles of a [K, N] weight,
// MatMulNBits' column-major blocks). SSE2 where the target has it, scalar elsewhere.
#pragma once
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ptq::quant {

// dst[c * dst_stride + r] = src[r * src_stride + c] for r, c in [0, 16).
inline void transposeBytes16x16(const uint8_t* src, int64_t src_stride, uint8_t* dst, int64_t dst_stride) {
#if defined(__SSE2__)
  // A round interleaves row k with row k + 8 (k < 8) into rows 2k and 2k + 1, which rotates each
  // byte's 8-bit index (row bits, then column bits) left by one: four rounds swap row and column.
  // 64 unpacks per 256 bytes, against 256 byte loads and stores.
  __m128i v[16];
  for (int r = 0; r < 16; ++r) v[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + r * src_stride));
  for (int round = 0; round < 4; ++round) {
    __m128i t[16];
    for (int k = 0; k < 8; ++k) {
      t[2 * k] = _mm_unpacklo_epi8(v[k], v[k + 8]);
      t[2 * k + 1] = _mm_unpackhi_epi8(v[k], v[k + 8]);
    }
    for (int k = 0; k < 16; ++k) v[k] = t[k];
  }
  for (int c = 0; c < 16; ++c) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c * dst_stride), v[c]);
#else
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) dst[c * dst_stride + r] = src[r * src_stride + c];
#endif
}

}  // namespace ptq::quant
