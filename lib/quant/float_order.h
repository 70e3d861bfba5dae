// Float <-> unsigned keys with the same order, for min/max scans that vectorize.
#pragma once
#include <cstdint>
#include <cstring>

namespace ptq::quant::detail {

// Maps a float to an unsigned key whose integer order is the float order (-0 just below +0;
// NaNs sort beyond +-Inf). Float min/max reductions do not vectorize without -ffast-math
// (NaN and signed-zero rules); unsigned ones do, and the same pass finds NaN/Inf for free.
inline uint32_t orderKey(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u ^ ((0u - (u >> 31)) | 0x80000000u);  // negative: flip all bits; positive: flip the sign
}

inline float fromOrderKey(uint32_t k) {
  const uint32_t u = (k & 0x80000000u) ? (k ^ 0x80000000u) : ~k;
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

}  // namespace ptq::quant::detail
