// Geometry of a 1-D/2-D convolution, shared by conv.cc (Conv, ConvTranspose) and conv_padded.cc
// (stride-1 Conv on the zero-padded input). Internal to lib/runtime/ops.
#pragma once
#include <algorithm>
#include <cstdint>

#include "lib/runtime/kernel.h"

namespace ptq::runtime::ops {

struct Geo {
  int64_t N, C, H, W;       // input (1-D: H = 1)
  int64_t M, kh, kw;        // output channels, kernel
  int64_t OH, OW;
  int64_t sh, sw, dh, dw, pt, pl;
  int64_t group;
};

// Output pixels per GEMM task: about `budget` floats of a block with `per_pixel` floats per pixel
// (im2col rows, or output channels), a multiple of 16, at least 64, at most `pixels`. From the shapes
// alone, so tasks do not depend on the thread count.
inline int64_t pixelChunk(int64_t pixels, int64_t per_pixel, int64_t budget) {
  return std::min(pixels, std::max<int64_t>(64, budget / std::max<int64_t>(per_pixel, 1) / 16 * 16));
}

// Stride-1 Conv (plain or depthwise, any dilation and padding; y gets the bias) on the
// zero-padded input: see conv_padded.cc.
void convStride1Padded(ExecContext& ctx, const Geo& g, bool depthwise, const float* x, const float* w,
                       const float* bias, float* y);

}  // namespace ptq::runtime::ops
