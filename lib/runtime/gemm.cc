#include "lib/runtime/gemm.h"

// Eigen's own threading is off: parallelism comes from our fixed tiling, which keeps results
// independent of the thread count.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "lib/runtime/ops/op_util.h"

#include <dlfcn.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>

namespace ptq::runtime {

namespace {
// CBLAS enums are ints: RowMajor=101, NoTrans=111, Trans=112.
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using SetThreadsFn = void (*)(int);

const char* forcedBackend() {
  const char* force = std::getenv("PTQ_GEMM");
  return force ? force : "";
}

// OpenBLAS, loaded at first use. Before loading: one BLAS thread (we parallelise over tiles), and
// on CPUs with the AVX-512 subsets of Skylake-X but a core name OpenBLAS 0.3.21 does not know
// (AMD Zen 4, which it would run with AVX2 kernels) the Skylake-X kernels. Both only when the user
// has not set the variable.
void* openblasHandle() {
  static void* const handle = []() -> void* {
    if (std::strcmp(forcedBackend(), "eigen") == 0) return nullptr;
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_is("amd"))
      setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
    void* h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libopenblas.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) return nullptr;
    auto st = reinterpret_cast<SetThreadsFn>(dlsym(h, "openblas_set_num_threads"));
    if (st) st(1);
    return h;
  }();
  return handle;
}

// oneDNN's row-major dnnl_sgemm (dnnl_dim_t is int64_t), loaded at first use like OpenBLAS. Its JIT
// picks the CPU's widest ISA at run time and ignores OPENBLAS_CORETYPE, which pins OpenBLAS to its
// AVX2 kernels on this project's machines: measured 210 vs 100 GFLOPS at one thread on the zoo's
// transformer shapes (Zen 5). Returns 0 (dnnl_success) when it ran.
using DnnlSgemmFn = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                            float, float*, int64_t);

// Under AddressSanitizer oneDNN runs only when PTQ_GEMM=dnnl asks for it: with its JIT code loaded,
// LeakSanitizer's exit-time tracer crashed in about one test process in ten (signal 11). The
// sanitizer build then checks our code on OpenBLAS's GEMMs.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

DnnlSgemmFn dnnlSgemm() {
  static const DnnlSgemmFn fn = []() -> DnnlSgemmFn {
    const char* force = forcedBackend();
    if (*force ? std::strcmp(force, "dnnl") != 0 : kAddressSanitizer) return nullptr;
    void* h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libdnnl.so", RTLD_NOW | RTLD_LOCAL);
    return h ? reinterpret_cast<DnnlSgemmFn>(dlsym(h, "dnnl_sgemm")) : nullptr;
  }();
  return fn;
}

// oneDNN (OpenMP runtime) runs a GEMM on omp_get_max_threads() threads unless it is called inside
// a parallel region. Outside one the calling thread's thread count is set to 1 for the call, so
// every tile is computed the same way whatever the session's thread count.
bool runDnnl(const GemmArgs& g) {
  const bool outside = !omp_in_parallel();
  const int saved = outside ? omp_get_max_threads() : 0;
  if (outside) omp_set_num_threads(1);
  const int status = dnnlSgemm()(g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', g.M, g.N, g.K, g.alpha, g.A, g.lda, g.B,
                                 g.ldb, g.beta, g.C, g.ldc);
  if (outside) omp_set_num_threads(saved);
  return status == 0;
}

SgemmFn blasSgemm() {
  static const SgemmFn fn = []() -> SgemmFn {
    void* h = openblasHandle();
    return h ? reinterpret_cast<SgemmFn>(dlsym(h, "cblas_sgemm")) : nullptr;
  }();
  return fn;
}
bool useBlas() { return blasSgemm() != nullptr; }

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using CMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using MMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;

template <typename T>
void eigenGemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc) {
  MMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (beta == T(0)) c.setZero();
  else if (beta != T(1)) c *= beta;
  if (K == 0) return;
  CMap<T> a(A, ta ? K : M, ta ? M : K, Eigen::OuterStride<>(lda));
  CMap<T> b(B, tb ? N : K, tb ? K : N, Eigen::OuterStride<>(ldb));
  if (!ta && !tb) c.noalias() += alpha * a * b;
  else if (ta && !tb) c.noalias() += alpha * a.transpose() * b;
  else if (!ta && tb) c.noalias() += alpha * a * b.transpose();
  else c.noalias() += alpha * a.transpose() * b.transpose();
}
}  // namespace

void* openblasSymbol(const char* name) {
  void* h = openblasHandle();
  return h ? dlsym(h, name) : nullptr;
}

bool dnnlByDefault() { return !kAddressSanitizer; }

const char* gemmBackend() { return dnnlSgemm() ? "dnnl" : useBlas() ? "openblas" : "eigen"; }

void sgemm(const GemmArgs& g) {
  if (g.M <= 0 || g.N <= 0) return;
  if (dnnlSgemm() && g.K > 0 && runDnnl(g)) return;
  if (useBlas() && g.K > 0) {
    blasSgemm()(101, g.trans_a ? 112 : 111, g.trans_b ? 112 : 111, static_cast<int>(g.M), static_cast<int>(g.N),
                static_cast<int>(g.K), g.alpha, g.A, static_cast<int>(g.lda), g.B, static_cast<int>(g.ldb), g.beta,
                g.C, static_cast<int>(g.ldc));
    return;
  }
  eigenGemm<float>(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.A, g.lda, g.B, g.ldb, g.beta, g.C, g.ldc);
}

namespace {
// Tile sizes from the problem shape alone.
void tiles(const GemmArgs& g, int64_t* tm, int64_t* tn) {
  const double flops = 2.0 * g.M * g.N * g.K;
  *tm = g.M;
  *tn = g.N;
  if (flops < 4e5) return;
  if (g.M >= 128) *tm = std::max<int64_t>(64, (g.M + 7) / 8 / 16 * 16);  // about 8 row tiles, >= 64 rows
  else if (g.N >= 512) *tn = std::max<int64_t>(256, (g.N + 7) / 8 / 16 * 16);
}

GemmArgs tile(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  GemmArgs t = g;
  t.M = m1 - m0;
  t.N = n1 - n0;
  t.A = g.trans_a ? g.A + m0 : g.A + m0 * g.lda;
  t.B = g.trans_b ? g.B + n0 * g.ldb : g.B + n0;
  t.C = g.C + m0 * g.ldc + n0;
  return t;
}
}  // namespace

void sgemmParallel(const GemmArgs& g, int threads) { sgemmBatched(g, 1, 0, 0, 0, threads); }

void sgemmBatched(const GemmArgs& g, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
                  int threads) {
  std::vector<int64_t> a(batch), b(batch), c(batch);
  for (int64_t i = 0; i < batch; ++i) { a[i] = i * stride_a; b[i] = i * stride_b; c[i] = i * stride_c; }
  sgemmBatchedOffsets(g, batch, a.data(), b.data(), c.data(), threads);
}

void sgemmBatchedOffsets(const GemmArgs& g, int64_t batch, const int64_t* a_off, const int64_t* b_off,
                         const int64_t* c_off, int threads) {
  if (batch <= 0 || g.M <= 0 || g.N <= 0) return;
  dnnlSgemm();  // initialise outside the parallel region
  useBlas();
  int64_t tm, tn;
  tiles(g, &tm, &tn);
  const int64_t mt = (g.M + tm - 1) / tm, nt = (g.N + tn - 1) / tn;
  const int64_t tasks = batch * mt * nt;
  ops::parallelFor(threads, tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / (mt * nt), r = t % (mt * nt);
      const int64_t i = r / nt, j = r % nt;
      GemmArgs one = g;
      one.A = g.A + a_off[b];
      one.B = g.B + b_off[b];
      one.C = g.C + c_off[b];
      sgemm(tile(one, i * tm, std::min(g.M, (i + 1) * tm), j * tn, std::min(g.N, (j + 1) * tn)));
    }
  });
}

void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  eigenGemm<double>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace ptq::runtime
