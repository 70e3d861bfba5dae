// lib/runtime/cholesky: the factor and its inverse on a hand-computed matrix, the upper triangle left
// alone, a matrix that is not positive definite refused, and L L^T = A, L L^-1 = I on a 300-wide one
// (wide enough for LAPACK's blocked path).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "lib/runtime/cholesky.h"

using ptq::runtime::choleskyLower;
using ptq::runtime::invertLower;

TEST_CASE("cholesky: a 3x3 matrix factors into the hand-computed L, and L^-1 is exact", "[cholesky]") {
  // A = L L^T with L = [[2,0,0],[1,2,0],[1,1,2]]; L^-1 = [[1/2,0,0],[-1/4,1/2,0],[-1/8,-1/4,1/2]].
  std::vector<double> a = {4, -7, -7, 2, 5, -7, 2, 3, 6};  // upper triangle: markers, never read
  REQUIRE(choleskyLower(a.data(), 3));
  const std::vector<double> l = {2, -7, -7, 1, 2, -7, 1, 1, 2};
  for (int i = 0; i < 9; ++i) CHECK(a[i] == Approx(l[i]).margin(1e-15));
  invertLower(a.data(), 3);
  const std::vector<double> inv = {0.5, -7, -7, -0.25, 0.5, -7, -0.125, -0.25, 0.5};
  for (int i = 0; i < 9; ++i) CHECK(a[i] == Approx(inv[i]).margin(1e-15));
}

TEST_CASE("cholesky: an indefinite matrix is refused", "[cholesky]") {
  std::vector<double> a = {1, 2, 2, 1};  // eigenvalues 3 and -1
  CHECK_FALSE(choleskyLower(a.data(), 2));
}

TEST_CASE("cholesky: L L^T = A and L L^-1 = I at n = 300", "[cholesky]") {
  const int n = 300;
  std::mt19937 rng(3);
  std::normal_distribution<double> nd;
  std::vector<double> x(static_cast<size_t>(n * n)), a(static_cast<size_t>(n * n), 0.0);
  for (auto& v : x) v = nd(rng);
  for (int i = 0; i < n; ++i)  // A = X X^T / n + I
    for (int j = 0; j <= i; ++j) {
      double s = 0;
      for (int k = 0; k < n; ++k) s += x[i * n + k] * x[j * n + k];
      a[i * n + j] = a[j * n + i] = s / n + (i == j ? 1.0 : 0.0);
    }
  std::vector<double> l = a;
  REQUIRE(choleskyLower(l.data(), n));
  double err = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j <= i; ++j) {
      double s = 0;
      for (int k = 0; k <= j; ++k) s += l[i * n + k] * l[j * n + k];
      err = std::max(err, std::fabs(s - a[i * n + j]));
    }
  CHECK(err < 1e-12);
  std::vector<double> inv = l;
  invertLower(inv.data(), n);
  double ierr = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j <= i; ++j) {
      double s = 0;
      for (int k = j; k <= i; ++k) s += l[i * n + k] * inv[k * n + j];
      ierr = std::max(ierr, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  CHECK(ierr < 1e-12);
}
