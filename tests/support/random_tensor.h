// Seeded N(0, 1) float tensors for executor tests.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "lib/ir/tensor.h"

namespace ptq::test {

inline ir::Tensor randomTensor(ir::Shape shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(ir::shapeNumel(shape)));
  for (float& x : v) x = d(rng);
  return ir::Tensor::fromFloats(shape, v);
}

}  // namespace ptq::test
