// The integer grid a group of weights is rounded onto: code range, scale/zero-point formulas and
// the single-value quantize/dequantize every kernel in lib/quant (and GPTQ) must agree on.
//
// Conventions (tests and the ONNX writer depend on them, change them only together):
//  - One code per byte. For signed grids the byte holds the two's-complement int8 value; zero
//    points use the same byte convention (toByte / fromByte).
//  - Rounding is half-to-even, x / scale is a true division (ONNX QuantizeLinear divides; a
//    reciprocal multiply would give different codes on ties).
//  - code = clamp(nearbyint(x / scale) + zero, codeMin, codeMax); x^ = (code - zero) * scale.
//  - symmetric:  scale = amax / (2^(b-1) - 1); zero = 0 (signed) or 2^(b-1) (unsigned, the
//                MatMulNBits default zero point: unsigned code = signed code + 2^(b-1)).
//  - asymmetric: [lo, hi] always contains 0; scale = (hi - lo) / (2^b - 1);
//                unsigned zero = clamp(nearbyint(-lo / scale), 0, 2^b - 1); signed grids shift
//                zero and codes down by 2^(b-1).
//  - A range of 0 (or one so small that the scale underflows) gets scale 1, so dequantization
//    stays exact and no scale is ever 0.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace ptq::quant {

struct GridSpec {
  int bits = 8;           // 2..8
  bool symmetric = true;  // zero point fixed at the middle of the grid
  bool is_signed = true;  // code type: int8-style bytes (true) or uint8-style bytes (false)
};

// How many scales a weight gets: one for the tensor, one per output channel, or one per group of
// consecutive weights along the reduction axis. These are exactly ONNX DequantizeLinear's scalar,
// per-axis (opset 13) and blocked (opset 21, block_size) forms. The one granularity enum of the tool:
// configs, plans, annotations and files all use it (names: "tensor", "channel", "group").
enum class Granularity { kTensor, kChannel, kGroup };
const char* granularityName(Granularity g);

// How a group's range is chosen before rounding.
enum class ClipSearch {
  kNone,  // plain RTN: the full min/max range
  kMse,   // shrink the range (llama.cpp / AWQ style) and keep the ratio with the least squared error
};

struct QuantOptions {
  GridSpec grid;
  ClipSearch clip = ClipSearch::kNone;
  // kMse tries ratios 1 - (1 - clip_min_ratio) * i / clip_steps for i = 0..clip_steps, largest
  // first, and keeps the first one with the lowest error (ties keep the wider range).
  int clip_steps = 20;
  float clip_min_ratio = 0.5f;
};

// Throw ptq::Error (usage) naming the offending field.
void validateGrid(const GridSpec& g);
// Activation grids (observers, fake quantization of activations) may also be 16 bits wide (uint16/int16
// QuantizeLinear at opset 21): 2..16.
void validateActivationGrid(const GridSpec& g);
void validateOptions(const QuantOptions& o);

inline int64_t codeMin(const GridSpec& g) { return g.is_signed ? -(int64_t{1} << (g.bits - 1)) : 0; }
inline int64_t codeMax(const GridSpec& g) {
  return g.is_signed ? (int64_t{1} << (g.bits - 1)) - 1 : (int64_t{1} << g.bits) - 1;
}

// A group's quantization parameters; `zero` is in the code domain (negative allowed when signed).
struct GroupParams {
  float scale = 1.0f;
  int32_t zero = 0;
};

// The smallest scale written: the smallest normal float (2^-126). A range so small that its scale
// would be denormal gets this one instead (denormal scales are flushed to 0 by FTZ/DAZ kernels, and
// x / scale overflows); the passes report every scale equal to it (isClampedScale).
inline constexpr float kMinScale = 0x1p-126f;
inline bool isClampedScale(float s) { return s == kMinScale; }

// Parameters for a group whose values lie in [lo, hi]. Requires finite lo <= 0 <= hi (callers take
// lo = min(min(x), 0), hi = max(max(x), 0)). Symmetric grids use amax = max(-lo, hi). An all-zero
// range gets scale 1 (every code is the zero point, exact); a non-zero range whose scale would be
// below kMinScale (denormal, or rounding to 0) gets kMinScale.
// Inline: the clip search calls it once per candidate range, 21 times per group of 128 weights.
[[noreturn]] void throwBadRange(float lo, float hi);
inline GroupParams paramsForRange(float lo, float hi, const GridSpec& g) {
  if (!(lo <= 0.0f && hi >= 0.0f && std::isfinite(lo) && std::isfinite(hi))) throwBadRange(lo, hi);
  const int32_t half = int32_t{1} << (g.bits - 1);
  GroupParams p;
  if (g.symmetric) {
    const float amax = std::max(-lo, hi);
    p.scale = amax / static_cast<float>(half - 1);
    if (amax == 0.0f) p.scale = 1.0f;
    else if (!(p.scale >= kMinScale)) p.scale = kMinScale;  // denormal, or rounded to 0
    p.zero = g.is_signed ? 0 : half;
    return p;
  }
  // hi - lo can overflow float for ranges near FLT_MAX; the double difference cannot, and for
  // ranges where the float difference is exact the double route rounds to the same float scale.
  const double levels = static_cast<double>((int32_t{1} << g.bits) - 1);
  p.scale = static_cast<float>((static_cast<double>(hi) - static_cast<double>(lo)) / levels);
  if (hi == lo) p.scale = 1.0f;
  else if (!(p.scale >= kMinScale)) p.scale = kMinScale;  // denormal, or rounded to 0
  float z = std::nearbyint(-lo / p.scale);
  z = std::min(std::max(z, 0.0f), static_cast<float>((int32_t{1} << g.bits) - 1));
  p.zero = static_cast<int32_t>(z) - (g.is_signed ? half : 0);
  return p;
}

// The clip-search ratio of step i (0 <= i <= clip_steps); step 0 is exactly 1.
inline float clipRatio(const QuantOptions& o, int i) {
  return 1.0f - (1.0f - o.clip_min_ratio) * static_cast<float>(i) / static_cast<float>(o.clip_steps);
}

// Code of one finite value. The clamp happens in float before the int conversion because x / scale
// may overflow to +-inf; adding the zero in float is exact below 2^24 and saturates above it.
inline int32_t quantizeValue(float x, const GroupParams& p, const GridSpec& g) {
  float q = std::nearbyint(x / p.scale) + static_cast<float>(p.zero);
  q = std::max(q, static_cast<float>(codeMin(g)));
  q = std::min(q, static_cast<float>(codeMax(g)));
  return static_cast<int32_t>(q);
}

inline float dequantizeValue(int32_t code, const GroupParams& p) {
  return static_cast<float>(code - p.zero) * p.scale;
}

// Byte <-> code. Signed codes are stored as two's complement.
inline uint8_t toByte(int32_t code) { return static_cast<uint8_t>(code & 0xFF); }
inline int32_t fromByte(uint8_t b, const GridSpec& g) {
  return g.is_signed ? static_cast<int32_t>(b) - ((b & 0x80) ? 256 : 0) : static_cast<int32_t>(b);
}

}  // namespace ptq::quant
