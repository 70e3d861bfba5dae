// Single-precision GEMM for the kernels: row-major C = alpha * op(A) * op(B) + beta * C.
// Backed, in order of preference, by oneDNN's dnnl_sgemm (libdnnl.so.2), OpenBLAS's cblas_sgemm
// (libopenblas.so.0) or Eigen. The libraries are loaded at first use, so the build needs no link
// flag; both dispatch on the CPU at run time, so an x86-64-v2 build still gets AVX2/AVX-512
// kernels (OpenBLAS only as far as OPENBLAS_CORETYPE lets it). Eigen is SSE4 in the default build.
// PTQ_GEMM=dnnl|openblas|eigen forces one. Each call is single-threaded; the parallel variants
// split C into tiles whose boundaries depend only on (M, N, K), so results are bit-identical at any
// thread count.
#pragma once
#include <cstdint>

namespace ptq::runtime {

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1.0f;
  const float* A = nullptr;
  int64_t lda = 0;  // row stride of A as stored (K if !trans_a, M if trans_a)
  const float* B = nullptr;
  int64_t ldb = 0;  // N if !trans_b, K if trans_b
  float beta = 0.0f;
  float* C = nullptr;
  int64_t ldc = 0;  // N
};

// One GEMM on the calling thread.
void sgemm(const GemmArgs& g);
// One GEMM, tiled over up to `threads` threads.
void sgemmParallel(const GemmArgs& g, int threads);
// `batch` GEMMs with element strides between consecutive A, B and C matrices (0 = shared).
void sgemmBatched(const GemmArgs& g, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
                  int threads);
// `batch` GEMMs whose A/B/C start at the given element offsets.
void sgemmBatchedOffsets(const GemmArgs& g, int64_t batch, const int64_t* a_off, const int64_t* b_off,
                         const int64_t* c_off, int threads);
// Which backend runs: "dnnl", "openblas" or "eigen".
// Whether oneDNN is taken when it loads and PTQ_GEMM is unset: false in AddressSanitizer builds.
bool dnnlByDefault();
const char* gemmBackend();
// A symbol of the OpenBLAS that sgemm uses (its LAPACK too: lib/runtime/cholesky), set to one thread;
// nullptr when it is not installed or PTQ_GEMM=eigen.
void* openblasSymbol(const char* name);

// Double GEMM (rare: float64 MatMul/Gemm), Eigen, single thread.
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

}  // namespace ptq::runtime
