// Shared by the tests of function-preserving rewrites (fold-norms, smooth-quant, hadamard-rotation,
// scale-reparam): output comparison, raw zoo bytes, and a pass's report counter.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "lib/driver/pipeline_run.h"
#include "lib/ir/tensor.h"

namespace ptq::test {

// max |ref − got| / max |ref| over all elements (shapes must match).
inline double maxRelativeError(const ir::Tensor& ref, const ir::Tensor& got) {
  REQUIRE(ref.shape() == got.shape());
  const std::vector<float> a = ref.toFloats(), b = got.toFloats();
  double scale = 0, err = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::fabs(static_cast<double>(a[i])));
    err = std::max(err, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return err / std::max(scale, 1e-30);
}

// The first `n` bytes of a file (REQUIREs that they exist).
inline std::vector<char> readBytes(const std::string& path, size_t n) {
  std::vector<char> v(n);
  FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f);
  REQUIRE(std::fread(v.data(), 1, n, f) == n);
  std::fclose(f);
  return v;
}

// Counter `name` of pass `pass` in the run's report, or -1 when absent.
inline int64_t passCounter(const driver::PipelineRun& run, const std::string& pass, const std::string& name) {
  for (const auto& p : run.report.passes)
    if (p.name == pass) return p.counters.count(name) ? p.counters.at(name) : -1;
  return -1;
}

}  // namespace ptq::test
