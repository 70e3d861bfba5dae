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

void throwBadRange(float lo, float hi) {
  throwInternal("quant: paramsForRange needs finite lo <= 0 <= hi, got [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "]");
}

}  // namespace ptq::quant
