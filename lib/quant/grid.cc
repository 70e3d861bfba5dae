#include "lib/quant/grid.h"

#include <string>

#include "lib/util/error.h"

namespace ptq::quant {

const char* granularityName(Granularity g) {
  switch (g) {
    case Granularity::kTensor: return "tensor";
    case Granularity::kChannel: return "channel";
    case Granularity::kGroup: return "group";
  }
  return "?";
}

void validateGrid(const GridSpec& g) {
  // 1 bit has no symmetric grid (qmax = 0); 8 is the widest code one byte holds.
  if (g.bits < 2 || g.bits > 8) throwUsage("quant: bits must be in 2..8, got " + std::to_string(g.bits));
}

void validateActivationGrid(const GridSpec& g) {
  if (g.bits < 2 || g.bits > 16) throwUsage("quant: activation bits must be in 2..16, got " + std::to_string(g.bits));
}

void validateOptions(const QuantOptions& o) {
  validateGrid(o.grid);
  if (o.clip == ClipSearch::kNone) return;
  if (o.clip_steps < 1) throwUsage("quant: clip_steps must be >= 1, got " + std::to_string(o.clip_steps));
  // A ratio of 0 would make the clipped range empty; NaN fails both comparisons and lands here too.
  if (!(o.clip_min_ratio > 0.0f && o.clip_min_ratio <= 1.0f)) {
    throwUsage("quant: clip_min_ratio must be in (0, 1], got " + std::to_string(o.clip_min_ratio));
  }
}

GroupParams paramsForRange(float lo, float hi, const GridSpec& g) {
  if (!(lo <= 0.0f && hi >= 0.0f && std::isfinite(lo) && std::isfinite(hi))) {
    throwInternal("quant: paramsForRange needs finite lo <= 0 <= hi, got [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
  }
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

}  // namespace ptq::quant
