#include "lib/quant/bitpack.h"

#include <cstring>
#include <string>

#include "lib/util/error.h"

namespace ptq::quant {
namespace {

void checkArgs(const char* who, int64_t n, int bits) {
  if (bits < 1 || bits > 8) throwUsage(std::string(who) + ": bits must be in 1..8, got " + std::to_string(bits));
  if (n < 0) throwUsage(std::string(who) + ": negative count " + std::to_string(n));
}

inline uint8_t lowMask(int bits) { return static_cast<uint8_t>((1u << bits) - 1u); }

// Widths that do not divide 8 (and 1): codes run through a bit accumulator that flushes whole bytes.
void packStream(const uint8_t* codes, int64_t n, int bits, uint8_t* out) {
  const uint32_t mask = lowMask(bits);
  uint32_t acc = 0;
  int filled = 0;
  for (int64_t i = 0; i < n; ++i) {
    acc |= (codes[i] & mask) << filled;
    filled += bits;
    if (filled >= 8) {
      *out++ = static_cast<uint8_t>(acc);
      acc >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) *out = static_cast<uint8_t>(acc);
}

void unpackStream(const uint8_t* packed, int64_t n, int bits, uint8_t* out) {
  const uint32_t mask = lowMask(bits);
  uint32_t acc = 0;
  int filled = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (filled < bits) {  // bits <= 8, so one byte always suffices
      acc |= static_cast<uint32_t>(*packed++) << filled;
      filled += 8;
    }
    out[i] = static_cast<uint8_t>(acc & mask);
    acc >>= bits;
    filled -= bits;
  }
}

}  // namespace

int64_t packedBytes(int64_t n, int bits) {
  checkArgs("packedBytes", n, bits);
  return (n * bits + 7) / 8;
}

void packBitsRef(const uint8_t* codes, int64_t n, int bits, uint8_t* out) {
  checkArgs("packBitsRef", n, bits);
  const int64_t bytes = packedBytes(n, bits);
  if (bytes > 0) std::memset(out, 0, static_cast<size_t>(bytes));  // out may be null when n == 0
  for (int64_t i = 0; i < n; ++i) {
    for (int b = 0; b < bits; ++b) {
      const int64_t pos = i * bits + b;
      if ((codes[i] >> b) & 1) out[pos / 8] = static_cast<uint8_t>(out[pos / 8] | (1u << (pos % 8)));
    }
  }
}

void unpackBitsRef(const uint8_t* packed, int64_t n, int bits, uint8_t* out) {
  checkArgs("unpackBitsRef", n, bits);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t v = 0;
    for (int b = 0; b < bits; ++b) {
      const int64_t pos = i * bits + b;
      v |= ((packed[pos / 8] >> (pos % 8)) & 1u) << b;
    }
    out[i] = static_cast<uint8_t>(v);
  }
}

void packBits(const uint8_t* codes, int64_t n, int bits, uint8_t* out) {
  checkArgs("packBits", n, bits);
  if (bits == 8) {
    if (n > 0) std::memcpy(out, codes, static_cast<size_t>(n));
  } else if (bits == 4) {
    const int64_t whole = n / 2;
    for (int64_t i = 0; i < whole; ++i) {
      out[i] = static_cast<uint8_t>((codes[2 * i] & 0x0F) | ((codes[2 * i + 1] & 0x0F) << 4));
    }
    if (n % 2) out[whole] = codes[n - 1] & 0x0F;
  } else if (bits == 2) {
    const int64_t whole = n / 4;
    for (int64_t i = 0; i < whole; ++i) {
      const uint8_t* c = codes + 4 * i;
      out[i] = static_cast<uint8_t>((c[0] & 3) | ((c[1] & 3) << 2) | ((c[2] & 3) << 4) | ((c[3] & 3) << 6));
    }
    if (n % 4) {
      uint8_t last = 0;
      for (int64_t i = 4 * whole; i < n; ++i) last = static_cast<uint8_t>(last | ((codes[i] & 3) << (2 * (i % 4))));
      out[whole] = last;
    }
  } else {
    packStream(codes, n, bits, out);
  }
}

void unpackBits(const uint8_t* packed, int64_t n, int bits, uint8_t* out) {
  checkArgs("unpackBits", n, bits);
  if (bits == 8) {
    if (n > 0) std::memcpy(out, packed, static_cast<size_t>(n));
  } else if (bits == 4) {
    const int64_t whole = n / 2;
    for (int64_t i = 0; i < whole; ++i) {
      out[2 * i] = packed[i] & 0x0F;
      out[2 * i + 1] = packed[i] >> 4;
    }
    if (n % 2) out[n - 1] = packed[whole] & 0x0F;
  } else if (bits == 2) {
    for (int64_t i = 0; i < n; ++i) out[i] = (packed[i / 4] >> (2 * (i % 4))) & 3;
  } else {
    unpackStream(packed, n, bits, out);
  }
}

}  // namespace ptq::quant
