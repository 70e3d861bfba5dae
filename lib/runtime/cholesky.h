// Dense Cholesky factorization and triangular inverse in double, for the solvers (gptq's inverse-Hessian
// factor). Through OpenBLAS's LAPACK (dpotrf, dtrtri: blocked, GEMM-based, and single-threaded like
// every OpenBLAS call here, so the bits do not depend on the thread count) when OpenBLAS is installed,
// Eigen's LLT and triangular solve otherwise (about 5x slower at n = 3072).
// Matrices are row-major n x n; only the lower triangle is read or written.
#pragma once
#include <cstdint>

namespace ptq::runtime {

// A (symmetric positive definite) -> L with A = L L^T in the lower triangle. False when A is not
// positive definite (A's lower triangle is then partly overwritten).
bool choleskyLower(double* a, int64_t n);
// L (lower triangular, nonzero diagonal) -> L^-1 (lower triangular) in place.
void invertLower(double* l, int64_t n);

}  // namespace ptq::runtime
