// GPTQ solver time per layer shape (the GPT-2-small shapes: 768 -> 2304/768/3072, 3072 -> 768). Prints
// figures; asserts nothing. H = X^T X of correlated random inputs (as calibration activations are), W
// random; w4 group-128 asymmetric like the w4a16-gptq preset.
//   bench_gptq_solver [threads]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "lib/runtime/gemm.h"
#include "passes/gptq_solver.h"

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// H = (2/N) X^T X for N = 2*cols rows of x_t = A z_t (A random, so the columns are correlated).
std::vector<float> correlatedHessian(int64_t cols, std::mt19937& rng) {
  const int64_t n = 2 * cols;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> z(static_cast<size_t>(n * cols)), a(static_cast<size_t>(cols * cols)), x(z.size()),
      h(static_cast<size_t>(cols * cols));
  for (auto& v : z) v = nd(rng);
  for (auto& v : a) v = nd(rng) / static_cast<float>(cols);
  for (int64_t j = 0; j < cols; ++j) a[static_cast<size_t>(j * cols + j)] += 1.0f;
  ptq::runtime::GemmArgs g;
  g.M = n, g.N = cols, g.K = cols, g.A = z.data(), g.lda = cols, g.B = a.data(), g.ldb = cols, g.C = x.data(), g.ldc = cols;
  ptq::runtime::sgemmParallel(g, 0);
  ptq::runtime::GemmArgs h2;
  h2.trans_a = true, h2.M = cols, h2.N = cols, h2.K = n, h2.alpha = 2.0f / static_cast<float>(n), h2.A = x.data();
  h2.lda = cols, h2.B = x.data(), h2.ldb = cols, h2.C = h.data(), h2.ldc = cols;
  ptq::runtime::sgemmParallel(h2, 0);
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  std::printf("GPTQ solver, int4 g128 asymmetric, %d thread(s), gemm backend %s\n", threads, ptq::runtime::gemmBackend());
  std::printf("%-14s %10s %10s\n", "rows x cols", "seconds", "GFLOP/s*");
  const int64_t shapes[][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}};
  std::mt19937 rng(7);
  double total = 0;
  for (const auto& sh : shapes) {
    const int64_t rows = sh[0], cols = sh[1];
    std::vector<float> h = correlatedHessian(cols, rng);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (auto& v : w) v = nd(rng);
    ptq::passes::GptqSettings s;
    s.quant.grid.bits = 4;
    s.quant.grid.symmetric = false;
    s.quant.grid.is_signed = false;
    for (int64_t c = 128; c < cols; c += 128) s.group_starts.push_back(c);
    s.threads = threads;
    const double t0 = now();
    const ptq::passes::GptqResult r = ptq::passes::gptqQuantize(w.data(), rows, cols, h.data(), s);
    const double dt = now() - t0;
    total += dt;
    // * nominal work: the block updates (rows * cols^2) plus the factorizations (cols^3), as flops.
    const double flops = 2.0 * static_cast<double>(rows) * cols * cols + 2.0 * static_cast<double>(cols) * cols * cols;
    std::printf("%5lld x %-6lld %10.3f %10.1f   (objective %.4g, damp %.3g)\n", static_cast<long long>(rows),
                static_cast<long long>(cols), dt, flops / dt * 1e-9, r.objective, r.damp);
  }
  std::printf("one GPT-2-small block (qkv, proj, fc1, fc2): %.3f s; 12 blocks: %.1f s\n", total, 12 * total);
  return 0;
}
