// Synthetic input images for the PP-OCRv4 tests.
#pragma once
#include <cstdint>

#include "lib/ir/tensor.h"

namespace ptq::test {

// A light image with rows of dark strokes (text-like), normalised per channel, NCHW [1, 3, h, w]:
// detectors and recognizers answer such input with real activity, unlike noise.
inline ir::Tensor strokesImage(int64_t h, int64_t w, const float mean[3], const float stdev[3]) {
  ir::Tensor t(ir::DType::kFloat32, {1, 3, h, w});
  float* p = t.mutableData<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const bool row = (y % 28) >= 8 && (y % 28) < 20;
        const bool stroke = row && (x % 9) < 4 && x > 6 && x < w - 10;
        const float v = stroke ? 0.05f : 1.0f;
        p[(c * h + y) * w + x] = (v - mean[c]) / stdev[c];
      }
  return t;
}

}  // namespace ptq::test
