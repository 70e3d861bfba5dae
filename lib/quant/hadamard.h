// Hadamard matrices and the orthonormal transforms built from them, for rotation (QuaRot): the
// residual-stream rotation folded into weights and the online Hadamard run as graph ops use the same
// HadamardTransform, so both see one index order.
//
// Constructions (../shared/REFERENCES.md "Hadamard sizes"):
//   Sylvester  H_{2n} = [[H, H], [H, -H]]                       orders 2^m
//   Paley I    q ≡ 3 (mod 4) a prime power                      order q + 1   (12, 20, 24, 28, 32, 44, 48, 60, ...)
//   Paley II   q ≡ 1 (mod 4) a prime power                      order 2(q + 1) (36, 52, 76, 100, 108, ...)
// and Kronecker products H_K ⊗ H_{2^m}. Prime powers use GF(p^k) arithmetic (27 = 3^3, 25 = 5^2, ...).
// A size with no construction gets a block-diagonal transform I_{n/b} ⊗ H_b with the largest b | n
// that has one (b = 1 leaves the vector unchanged). Orders 156 and 172 (Williamson-type) are not built.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ptq::quant {

// A square ±1 matrix, row-major.
struct SignMatrix {
  int64_t n = 0;
  std::vector<int8_t> v;
  int8_t at(int64_t r, int64_t c) const { return v[static_cast<size_t>(r * n + c)]; }
};

// Sylvester's H_n; n a power of two (1 gives [1]).
SignMatrix sylvesterHadamard(int64_t n);
// A Paley (I or II) Hadamard matrix of order n, or nullopt when n is not q+1 / 2(q+1) for a suitable
// prime power q.
std::optional<SignMatrix> paleyHadamard(int64_t n);
// H·Hᵀ == n·I exactly.
bool isHadamard(const SignMatrix& h);

// An orthonormal transform of vectors of length n = blocks · Π factor sizes:
//   x ← x · (I_blocks ⊗ F_1 ⊗ F_2 ⊗ ... ⊗ F_k)      (row vector; F_i = H_i / √f_i, f_i ≤ max_factor)
// Index order: i = (b, i_1, ..., i_k), row-major (b slowest, i_k fastest).
struct HadamardTransform {
  int64_t n = 0;
  int64_t blocks = 1;                        // > 1: the block-diagonal fallback
  std::vector<int64_t> sizes;                // f_1 .. f_k (empty when the block is 1)
  std::vector<std::vector<double>> factors;  // F_i, f_i × f_i row-major, entries ±1/√f_i

  int64_t blockSize() const { return n / blocks; }
  bool exact() const { return blocks == 1; }
  // "H_12 ⊗ H_64" or "I_3 ⊗ H_52" (or "I_n" when nothing could be built).
  std::string describe() const;
  // x ← x·T for `count` contiguous rows of length n (in place).
  void applyRows(double* x, int64_t count) const;
  // The n×n matrix (tests; small n only).
  std::vector<double> dense() const;
};

// The exact transform of size n (H_K ⊗ H_{2^m} with the smallest constructible K, the power of two
// split into factors ≤ max_factor), or nullopt when n has no construction.
std::optional<HadamardTransform> exactHadamard(int64_t n, int64_t max_factor = 256);
// exactHadamard(n), else the block-diagonal fallback.
HadamardTransform hadamardTransform(int64_t n, int64_t max_factor = 256);

// Random ±1 signs for n channels from `seed` (splitmix64: the same on every platform).
std::vector<double> randomSigns(int64_t n, uint64_t seed);

}  // namespace ptq::quant
