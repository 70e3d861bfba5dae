#include "passes/rotation_math.h"

#include <omp.h>

#include "passes/linear_rewrite.h"

namespace ptq::passes {

void transformAxis(float* data, int64_t outer, int64_t n, int64_t inner, const AxisTransform& q, int threads) {
  // Vectors (o, j) are independent: each thread transforms whole vectors, so results do not depend
  // on the thread count.
  const int64_t count = outer * inner;
  constexpr int64_t kChunk = 64;  // vectors gathered per applyRows call
  const int64_t chunks = (count + kChunk - 1) / kChunk;
#pragma omp parallel num_threads(threads > 0 ? threads : omp_get_max_threads())
  {
    std::vector<double> buf(static_cast<size_t>(kChunk * n));
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t first = c * kChunk, rows = std::min(kChunk, count - first);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t o = (first + r) / inner, j = (first + r) % inner;
        const float* src = data + o * n * inner + j;
        double* x = buf.data() + r * n;
        double mean = 0;
        for (int64_t i = 0; i < n; ++i) {
          x[i] = src[i * inner];
          mean += x[i];
        }
        mean /= static_cast<double>(n);
        for (int64_t i = 0; i < n; ++i) {
          if (q.center) x[i] -= mean;
          if (q.signs) x[i] *= (*q.signs)[static_cast<size_t>(i)];
        }
      }
      if (q.t) q.t->applyRows(buf.data(), rows);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t o = (first + r) / inner, j = (first + r) % inner;
        float* dst = data + o * n * inner + j;
        const double* x = buf.data() + r * n;
        for (int64_t i = 0; i < n; ++i) dst[i * inner] = static_cast<float>(x[i]);
      }
    }
  }
}

void rotateLinearInput(ir::LinearMatch& l, const AxisTransform& q, pipeline::QuantPlan& plan, const std::string& pass,
                       int threads) {
  float* w = ownedWeightData(l, plan, pass);
  if (l.weight_transposed) transformAxis(w, l.out_features, l.in_features, 1, q, threads);  // [out, in]
  else transformAxis(w, 1, l.in_features, l.out_features, q, threads);                      // [in, out]
}

void rotateLinearOutput(ir::LinearMatch& l, const AxisTransform& q, pipeline::QuantPlan& plan, const std::string& pass,
                        int threads) {
  float* w = ownedWeightData(l, plan, pass);
  if (l.weight_transposed) transformAxis(w, 1, l.out_features, l.in_features, q, threads);
  else transformAxis(w, l.in_features, l.out_features, 1, q, threads);
  if (l.bias) transformAxis(ownedBiasData(l, plan, pass), 1, l.out_features, 1, q, threads);
}

}  // namespace ptq::passes
