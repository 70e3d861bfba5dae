// Dense bit packing of quantization codes: a little-endian bit stream, each code's low `bits` bits,
// lowest bit first. For 4 bits the first code is the low nibble of byte 0 (ONNX int4/uint4 and
// MatMulNBits); 3-bit codes straddle byte boundaries. The last byte is zero-padded.
//
// Codes are masked to their low `bits` bits, so two's-complement signed bytes pack directly;
// unpacking returns the low bits only and signExtend recovers signed values.
#pragma once
#include <cstdint>

namespace ptq::quant {

// Bytes holding n codes of `bits` bits: ceil(n * bits / 8).
int64_t packedBytes(int64_t n, int bits);

// Fast paths for 2, 4 and 8 bits, the generic bit stream for the others. bits in 1..8.
void packBits(const uint8_t* codes, int64_t n, int bits, uint8_t* out);
void unpackBits(const uint8_t* packed, int64_t n, int bits, uint8_t* out);

// The generic bit stream for every width: the definition the fast paths are tested against.
void packBitsRef(const uint8_t* codes, int64_t n, int bits, uint8_t* out);
void unpackBitsRef(const uint8_t* packed, int64_t n, int bits, uint8_t* out);

// The low `bits` bits of code as a two's-complement value, e.g. signExtend(0xF, 4) == -1.
inline int8_t signExtend(uint8_t code, int bits) {
  const int32_t v = code & ((1 << bits) - 1);
  return static_cast<int8_t>(v & (1 << (bits - 1)) ? v - (1 << bits) : v);
}

}  // namespace ptq::quant
