// lib/runtime/gemm: sgemm against a double-precision triple loop for every transpose combination,
// odd sizes, padded leading dimensions, alpha and beta; the tiled parallel forms bit-identical at 1,
// 2 and 3 threads; and oneDNN chosen whenever its library loads (it is the fast path the executor's
// speed figures rest on).
#include <catch2/catch.hpp>

#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "lib/runtime/gemm.h"
#include "support/skip.h"

using ptq::runtime::GemmArgs;

namespace {
std::vector<float> randoms(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// C = alpha op(A) op(B) + beta C in double, row-major, with the GemmArgs strides.
std::vector<double> reference(const GemmArgs& g, const std::vector<float>& c0) {
  std::vector<double> c(c0.begin(), c0.end());
  for (int64_t i = 0; i < g.M; ++i)
    for (int64_t j = 0; j < g.N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < g.K; ++k) {
        const double a = g.trans_a ? g.A[k * g.lda + i] : g.A[i * g.lda + k];
        const double b = g.trans_b ? g.B[j * g.ldb + k] : g.B[k * g.ldb + j];
        s += a * b;
      }
      c[i * g.ldc + j] = g.alpha * s + g.beta * c0[i * g.ldc + j];
    }
  return c;
}
}  // namespace

TEST_CASE("sgemm matches a double-precision reference for every transpose, stride, alpha and beta", "[gemm]") {
  INFO("backend " << ptq::runtime::gemmBackend());
  const int64_t M = 37, N = 29, K = 53, pad = 3;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      for (const float beta : {0.0f, 1.0f, -0.5f}) {
        GemmArgs g;
        g.trans_a = ta; g.trans_b = tb;
        g.M = M; g.N = N; g.K = K;
        g.alpha = 0.75f;
        g.beta = beta;
        g.lda = (ta ? M : K) + pad;
        g.ldb = (tb ? K : N) + pad;
        g.ldc = N + pad;
        const std::vector<float> a = randoms(static_cast<size_t>((ta ? K : M) * g.lda), 1);
        const std::vector<float> b = randoms(static_cast<size_t>((tb ? N : K) * g.ldb), 2);
        const std::vector<float> c0 = randoms(static_cast<size_t>(M * g.ldc), 3);
        std::vector<float> c = c0;
        g.A = a.data(); g.B = b.data(); g.C = c.data();
        const std::vector<double> want = reference(g, c0);
        ptq::runtime::sgemm(g);
        INFO("trans_a " << ta << " trans_b " << tb << " beta " << beta);
        double worst = 0;
        for (int64_t i = 0; i < M; ++i) {
          for (int64_t j = 0; j < N; ++j)
            worst = std::max(worst, std::abs(c[i * g.ldc + j] - want[i * g.ldc + j]));
          for (int64_t j = N; j < g.ldc; ++j) CHECK(c[i * g.ldc + j] == c0[i * g.ldc + j]);  // padding untouched
        }
        CHECK(worst < 1e-4);  // sums of 53 products of N(0,1) values: float rounding is ~1e-6
      }
}

TEST_CASE("the tiled parallel sgemm is bit-identical at 1, 2 and 3 threads", "[gemm]") {
  INFO("backend " << ptq::runtime::gemmBackend());
  for (const bool tb : {false, true}) {
    GemmArgs g;
    g.trans_b = tb;
    g.M = 300; g.N = 700; g.K = 256;  // large enough for the row tiling (>= 4e5 flops, M >= 128)
    g.lda = g.K; g.ldb = tb ? g.K : g.N; g.ldc = g.N;
    const std::vector<float> a = randoms(static_cast<size_t>(g.M * g.K), 4), b = randoms(static_cast<size_t>(g.K * g.N), 5);
    g.A = a.data(); g.B = b.data();
    std::vector<std::vector<float>> out;
    for (const int threads : {1, 2, 3}) {
      std::vector<float> c(static_cast<size_t>(g.M * g.N), 0.0f);
      g.C = c.data();
      ptq::runtime::sgemmParallel(g, threads);
      out.push_back(c);
    }
    CHECK(std::memcmp(out[0].data(), out[1].data(), out[0].size() * 4) == 0);
    CHECK(std::memcmp(out[0].data(), out[2].data(), out[0].size() * 4) == 0);
  }
}

TEST_CASE("oneDNN runs the GEMMs whenever libdnnl.so.2 loads and PTQ_GEMM does not say otherwise", "[gemm]") {
  if (std::getenv("PTQ_GEMM")) PTQ_SKIP("PTQ_GEMM is set");
  if (!ptq::runtime::dnnlByDefault())
    PTQ_SKIP("AddressSanitizer build: OpenBLAS runs unless PTQ_GEMM=dnnl (lib/runtime/gemm.cc)");
  void* h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (!h) PTQ_SKIP("libdnnl.so.2 is not installed (scripts/setup-deps.sh installs libdnnl2)");
  dlclose(h);
  CHECK(std::string(ptq::runtime::gemmBackend()) == "dnnl");
}
