// Geometry of a 1-D/2-D convolution, shared by conv.cc (Conv, ConvTranspose) and conv_padded.cc
// (stride-1 Conv on the zero-padded input). Internal to lib/runtime/ops.
#pragma once
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

// Stride-1 Conv (plain or depthwise, any dilation and padding; y gets the bias) on the
// zero-padded input: see conv_padded.cc.
void convStride1Padded(ExecContext& ctx, const Geo& g, bool depthwise, const float* x, const float* w,
                       const float* bias, float* y);

}  // namespace ptq::runtime::ops
