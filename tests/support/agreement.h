// How closely two float tensors of one shape agree: cosine similarity (1 for two all-zero tensors)
// and the largest absolute difference. Shared by the tests that compare the executor, its simulated
// quantized runs and ONNX Runtime.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "lib/ir/tensor.h"

namespace ptq::test {

struct Agreement {
  double cosine = 0, max_abs = 0;
};

inline Agreement agree(const ir::Tensor& a, const ir::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<float> x = a.toFloats(), y = b.toFloats();
  double dot = 0, nx = 0, ny = 0, m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    dot += static_cast<double>(x[i]) * y[i];
    nx += static_cast<double>(x[i]) * x[i];
    ny += static_cast<double>(y[i]) * y[i];
    m = std::max(m, std::fabs(static_cast<double>(x[i]) - y[i]));
  }
  return {nx == 0 && ny == 0 ? 1.0 : dot / std::sqrt(nx * ny), m};
}

}  // namespace ptq::test
