#include "lib/runtime/cholesky.h"

#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <climits>

#include "lib/runtime/gemm.h"
#include "lib/util/error.h"

namespace ptq::runtime {

namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// LAPACK's Fortran entry points as OpenBLAS implements them (in C: no hidden string-length arguments).
using PotrfFn = void (*)(const char* uplo, const int* n, double* a, const int* lda, int* info);
using TrtriFn = void (*)(const char* uplo, const char* diag, const int* n, double* a, const int* lda, int* info);

PotrfFn lapackPotrf() {
  static const PotrfFn fn = reinterpret_cast<PotrfFn>(openblasSymbol("dpotrf_"));
  return fn;
}
TrtriFn lapackTrtri() {
  static const TrtriFn fn = reinterpret_cast<TrtriFn>(openblasSymbol("dtrtri_"));
  return fn;
}

int lapackSize(int64_t n) {
  if (n > INT_MAX) throwInternal("cholesky: a " + std::to_string(n) + "-wide matrix is beyond LAPACK's int sizes");
  return static_cast<int>(n);
}

}  // namespace

// A row-major matrix is the column-major transpose of itself, so its lower triangle is LAPACK's upper
// one: dpotrf('U') gives R with A = R^T R in column-major upper = L = R^T in row-major lower, and
// dtrtri('U') on it gives R^-1 = (L^-1)^T, i.e. L^-1 in row-major lower.
bool choleskyLower(double* a, int64_t n) {
  if (n == 0) return true;
  if (PotrfFn potrf = lapackPotrf()) {
    const int m = lapackSize(n);
    int info = 0;
    potrf("U", &m, a, &m, &info);
    return info == 0;
  }
  Eigen::Map<MatD> map(a, n, n);
  Eigen::LLT<Eigen::Ref<MatD>, Eigen::Lower> llt(map);
  return llt.info() == Eigen::Success;
}

void invertLower(double* l, int64_t n) {
  if (n == 0) return;
  if (TrtriFn trtri = lapackTrtri()) {
    const int m = lapackSize(n);
    int info = 0;
    trtri("U", "N", &m, l, &m, &info);
    if (info != 0) throwInternal("cholesky: the triangular factor is singular at column " + std::to_string(info));
    return;
  }
  Eigen::Map<MatD> map(l, n, n);
  MatD inv = MatD::Identity(n, n);
  map.triangularView<Eigen::Lower>().solveInPlace(inv);
  map.triangularView<Eigen::Lower>() = inv.triangularView<Eigen::Lower>();
}

}  // namespace ptq::runtime
