// Hadamard constructions and transforms (lib/quant/hadamard.h): every matrix built satisfies
// H·Hᵀ = n·I exactly, every transform is orthonormal (T·Tᵀ = I), the Kronecker factorisation and
// the block-diagonal fallback give the sizes the rotation pass relies on, and the signs are seeded.
#include <catch2/catch.hpp>

#include <cmath>

#include "lib/quant/hadamard.h"

using namespace ptq::quant;

namespace {

double orthonormalityError(const HadamardTransform& t) {
  const std::vector<double> m = t.dense();
  const int64_t n = t.n;
  double err = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t s = r; s < n; ++s) {
      double dot = 0;
      for (int64_t c = 0; c < n; ++c) dot += m[static_cast<size_t>(r * n + c)] * m[static_cast<size_t>(s * n + c)];
      err = std::max(err, std::fabs(dot - (r == s ? 1.0 : 0.0)));
    }
  return err;
}

}  // namespace

TEST_CASE("Sylvester and Paley matrices are Hadamard", "[hadamard]") {
  for (int64_t n : {1, 2, 4, 8, 64, 256}) CHECK(isHadamard(sylvesterHadamard(n)));
  // REFERENCES.md's list (156 and 172 need Williamson constructions: not built), plus prime-power fields.
  for (int64_t n : {12, 20, 28, 36, 52, 60, 108, 140}) {
    INFO("order " << n);
    std::optional<SignMatrix> h = paleyHadamard(n);
    REQUIRE(h);
    CHECK(isHadamard(*h));
  }
  for (int64_t n : {24, 44, 76, 100, 124, 164, 244}) {  // q = 23, 43, 37, 49 = 7², 61·2.., 81 = 3⁴, 243 = 3⁵
    INFO("order " << n);
    std::optional<SignMatrix> h = paleyHadamard(n);
    REQUIRE(h);
    CHECK(isHadamard(*h));
  }
  CHECK_FALSE(paleyHadamard(156));
  CHECK_FALSE(paleyHadamard(172));
  CHECK_FALSE(paleyHadamard(10));
  // Every Paley order up to 256 that is built is Hadamard.
  int built = 0;
  for (int64_t n = 4; n <= 256; n += 4)
    if (std::optional<SignMatrix> h = paleyHadamard(n)) {
      INFO("order " << n);
      CHECK(isHadamard(*h));
      ++built;
    }
  CHECK(built == 40);  // every multiple of 4 up to 256 whose q is a prime power of the right residue
}

TEST_CASE("Hadamard transforms: Kronecker factors, block fallback, orthonormal", "[hadamard]") {
  struct Case {
    int64_t n;
    const char* form;
  };
  const Case cases[] = {
      {256, "H_256"},        {768, "H_12 ⊗ H_64"},        {1024, "H_32 ⊗ H_32"}, {384, "H_12 ⊗ H_32"},
      {1152, "H_36 ⊗ H_32"}, {256 * 3, "H_12 ⊗ H_64"}, {200, "H_100 ⊗ H_2"}, {156, "I_3 ⊗ H_52"},
      {172, "I_43 ⊗ H_4"},   {6, "I_3 ⊗ H_2"},             {7, "I_7"},           {40, "H_20 ⊗ H_2"},
  };
  for (const Case& c : cases) {
    INFO("n = " << c.n);
    HadamardTransform t = hadamardTransform(c.n);
    CHECK(t.describe() == c.form);
    CHECK(t.n == c.n);
    for (int64_t f : t.sizes) CHECK(f <= 256);
    CHECK(orthonormalityError(t) < 1e-12);
  }
  CHECK(exactHadamard(768));
  CHECK_FALSE(exactHadamard(156));
  CHECK_FALSE(exactHadamard(200 * 7));  // 1400 = 8·175: no construction for 175, 350, 700, 1400
  // A large size stays cheap: factors, never an n×n matrix.
  HadamardTransform big = hadamardTransform(11008);
  CHECK(big.describe() == "I_43 ⊗ H_256");
  HadamardTransform wide = hadamardTransform(4096 * 4);
  CHECK(wide.describe() == "H_128 ⊗ H_128");
}

TEST_CASE("Hadamard transform matches the dense Kronecker product in index order", "[hadamard]") {
  // x·(H_12 ⊗ H_4)/√48 computed by hand from the two sign matrices.
  const SignMatrix a = *paleyHadamard(12), b = sylvesterHadamard(4);
  HadamardTransform t = hadamardTransform(48);
  REQUIRE(t.describe() == "H_12 ⊗ H_4");
  std::vector<double> x(48);
  for (int i = 0; i < 48; ++i) x[static_cast<size_t>(i)] = std::sin(1.0 + i);
  std::vector<double> y = x;
  t.applyRows(y.data(), 1);
  for (int o1 = 0; o1 < 12; ++o1)
    for (int o2 = 0; o2 < 4; ++o2) {
      double want = 0;
      for (int i1 = 0; i1 < 12; ++i1)
        for (int i2 = 0; i2 < 4; ++i2) want += x[static_cast<size_t>(i1 * 4 + i2)] * a.at(i1, o1) * b.at(i2, o2);
      CHECK(y[static_cast<size_t>(o1 * 4 + o2)] == Approx(want / std::sqrt(48.0)).margin(1e-12));
    }
}

TEST_CASE("random signs are seeded", "[hadamard]") {
  const std::vector<double> a = randomSigns(256, 7), b = randomSigns(256, 7), c = randomSigns(256, 8);
  CHECK(a == b);
  CHECK(a != c);
  int plus = 0;
  for (double s : a) {
    CHECK(std::fabs(s) == 1.0);
    plus += s > 0;
  }
  CHECK(plus > 96);
  CHECK(plus < 160);
}
