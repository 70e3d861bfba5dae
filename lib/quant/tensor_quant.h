// Quantize an N-D float tensor block-wise along one axis, in ONNX DequantizeLinear (opset 21)
// layout: codes keep the tensor's shape; scales and zero points have the tensor's shape with
// dim(axis) replaced by ceil(dim(axis) / block_size). block_size >= dim(axis) gives one block per
// position of the other axes (per-channel; the blocked dim becomes 1). axis == kPerTensor gives a
// single group and scalar (shape {}) parameters.
//
// When the blocked axis is not last, tiles of a few positions of the axes after it are gathered into
// contiguous rows in a cache-sized buffer, so the kernels see contiguous groups and no tensor-sized
// copy is made; codes and parameters are written straight into their places.
#pragma once
#include <cstdint>
#include <vector>

#include "lib/quant/grid.h"

namespace ptq::quant {

inline constexpr int64_t kPerTensor = -1;
// SQNR reported when the reconstruction is exact (the true value would be +inf).
inline constexpr double kMaxSqnrDb = 200.0;

struct ErrorStats {
  double mse = 0.0;      // mean of (x - x^)^2
  double max_abs = 0.0;  // max |x - x^|
  double sqnr_db = kMaxSqnrDb;  // 10 log10(sum x^2 / sum (x - x^)^2), capped at kMaxSqnrDb
};

struct QuantizedTensor {
  std::vector<int64_t> shape;        // shape of the input and of `codes`
  int64_t axis = kPerTensor;         // blocked axis, or kPerTensor
  int64_t block_size = 0;            // elements per block along `axis` (numel for kPerTensor)
  GridSpec grid;
  std::vector<uint8_t> codes;        // `shape`, row-major, one code per byte (grid.h conventions)
  std::vector<int64_t> scale_shape;  // `shape` with dim(axis) -> ceil(dim / block_size); {} per-tensor
  std::vector<float> scales;         // `scale_shape`
  std::vector<uint8_t> zero_points;  // `scale_shape`
  ErrorStats error;                  // against the input, e as in rtn_kernels.h ErrorSums
};

// x holds prod(shape) floats, row-major. Throws ptq::Error (usage) for a bad axis, block size or
// shape and (input) naming the position of a NaN/Inf.
QuantizedTensor quantizeTensor(const float* x, const std::vector<int64_t>& shape, int64_t axis, int64_t block_size,
                               const QuantOptions& opts);
// The same for floats at any address (`x` need not be aligned for float: a weight viewed in place
// inside a model file, ir::Tensor::bytes()), read without making an aligned copy of the tensor.
QuantizedTensor quantizeTensorBytes(const void* x, const std::vector<int64_t>& shape, int64_t axis, int64_t block_size,
                                    const QuantOptions& opts);

// The float tensor the codes stand for, in `shape` layout.
std::vector<float> dequantizeTensor(const QuantizedTensor& q);

ErrorStats measureError(const float* x, const float* x_hat, int64_t n);

// True when the parameters fit the opset-13 per-axis form: one block spans the whole blocked axis
// and at most one other axis has size > 1. *onnx_axis then receives that axis (0 when none).
// The per-axis scale vector is `scales` unchanged, of length prod(scale_shape).
bool perAxisForm(const QuantizedTensor& q, int64_t* onnx_axis);

}  // namespace ptq::quant
