#include "lib/quant/hadamard.h"

#include <cmath>
#include <stdexcept>

namespace ptq::quant {

namespace {

// q = p^k with p prime, or {0, 0}.
std::pair<int64_t, int> primePower(int64_t q) {
  if (q < 2) return {0, 0};
  int64_t p = 2;
  while (p * p <= q && q % p != 0) ++p;
  if (q % p != 0) p = q;  // q is prime
  int k = 0;
  int64_t r = q;
  while (r % p == 0) {
    r /= p;
    ++k;
  }
  return r == 1 ? std::make_pair(p, k) : std::make_pair(int64_t{0}, 0);
}

// GF(p^k): elements 0..q-1 are coefficient vectors in base p (digit d = coefficient of x^d), products
// taken modulo a monic irreducible polynomial found by search.
class GaloisField {
 public:
  GaloisField(int64_t p, int k) : p_(p), k_(k), q_(1) {
    for (int i = 0; i < k; ++i) q_ *= p;
    if (k == 1) return;
    // Monic x^k + Σ c_d x^d: the first one whose quotient ring has no zero divisors is irreducible.
    for (int64_t c = 0; c < q_; ++c) {
      modulus_ = digits(c);
      if (isField()) return;
    }
    throw std::logic_error("no irreducible polynomial of degree " + std::to_string(k));
  }
  int64_t size() const { return q_; }
  int64_t sub(int64_t a, int64_t b) const {
    std::vector<int64_t> x = digits(a), y = digits(b);
    for (int d = 0; d < k_; ++d) x[static_cast<size_t>(d)] = ((x[static_cast<size_t>(d)] - y[static_cast<size_t>(d)]) % p_ + p_) % p_;
    return number(x);
  }
  int64_t mul(int64_t a, int64_t b) const {
    if (k_ == 1) return a * b % p_;
    std::vector<int64_t> x = digits(a), y = digits(b), r(static_cast<size_t>(2 * k_ - 1), 0);
    for (int i = 0; i < k_; ++i)
      for (int j = 0; j < k_; ++j) r[static_cast<size_t>(i + j)] += x[static_cast<size_t>(i)] * y[static_cast<size_t>(j)];
    // Reduce with x^k = -Σ c_d x^d, from the top degree down.
    for (int t = 2 * k_ - 2; t >= k_; --t) {
      const int64_t top = r[static_cast<size_t>(t)] % p_;
      r[static_cast<size_t>(t)] = 0;
      for (int d = 0; d < k_; ++d) r[static_cast<size_t>(t - k_ + d)] -= top * modulus_[static_cast<size_t>(d)];
    }
    r.resize(static_cast<size_t>(k_));
    for (int64_t& e : r) e = ((e % p_) + p_) % p_;
    return number(r);
  }

 private:
  std::vector<int64_t> digits(int64_t a) const {
    std::vector<int64_t> d(static_cast<size_t>(k_));
    for (int i = 0; i < k_; ++i, a /= p_) d[static_cast<size_t>(i)] = a % p_;
    return d;
  }
  int64_t number(const std::vector<int64_t>& d) const {
    int64_t a = 0;
    for (int i = k_ - 1; i >= 0; --i) a = a * p_ + d[static_cast<size_t>(i)];
    return a;
  }
  bool isField() const {
    for (int64_t a = 1; a < q_; ++a) {
      bool inverse = false;
      for (int64_t b = 1; b < q_ && !inverse; ++b) inverse = mul(a, b) == 1;
      if (!inverse) return false;
    }
    return true;
  }
  int64_t p_;
  int k_;
  int64_t q_;
  std::vector<int64_t> modulus_;
};

// The Jacobsthal matrix Q[a][b] = χ(a − b) of GF(q) (χ: quadratic character).
std::vector<int8_t> jacobsthal(const GaloisField& f) {
  const int64_t q = f.size();
  std::vector<bool> square(static_cast<size_t>(q), false);
  for (int64_t x = 1; x < q; ++x) square[static_cast<size_t>(f.mul(x, x))] = true;
  std::vector<int8_t> m(static_cast<size_t>(q * q));
  for (int64_t a = 0; a < q; ++a)
    for (int64_t b = 0; b < q; ++b) {
      const int64_t d = f.sub(a, b);
      m[static_cast<size_t>(a * q + b)] = d == 0 ? 0 : (square[static_cast<size_t>(d)] ? 1 : -1);
    }
  return m;
}

SignMatrix paleyI(const GaloisField& f) {  // q ≡ 3 (mod 4): H = I + S, S = [[0, 1ᵀ], [−1, Q]]
  const int64_t q = f.size(), n = q + 1;
  const std::vector<int8_t> jq = jacobsthal(f);
  SignMatrix h{n, std::vector<int8_t>(static_cast<size_t>(n * n))};
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c) {
      int s;
      if (r == 0) s = c == 0 ? 0 : 1;
      else if (c == 0) s = -1;
      else s = jq[static_cast<size_t>((r - 1) * q + (c - 1))];
      h.v[static_cast<size_t>(r * n + c)] = static_cast<int8_t>(s + (r == c ? 1 : 0));
    }
  return h;
}

SignMatrix paleyII(const GaloisField& f) {  // q ≡ 1 (mod 4): C = [[0, 1ᵀ], [1, Q]], entries → 2×2 blocks
  const int64_t q = f.size(), m = q + 1, n = 2 * m;
  const std::vector<int8_t> jq = jacobsthal(f);
  SignMatrix h{n, std::vector<int8_t>(static_cast<size_t>(n * n))};
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < m; ++c) {
      int e;
      if (r == 0) e = c == 0 ? 0 : 1;
      else if (c == 0) e = 1;
      else e = jq[static_cast<size_t>((r - 1) * q + (c - 1))];
      // 0 → [[1, −1], [−1, −1]];  ±1 → ±[[1, 1], [1, −1]]
      const int b[2][2] = {{e == 0 ? 1 : e, e == 0 ? -1 : e}, {e == 0 ? -1 : e, e == 0 ? -1 : -e}};
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) h.v[static_cast<size_t>((2 * r + i) * n + 2 * c + j)] = static_cast<int8_t>(b[i][j]);
    }
  return h;
}

std::vector<double> normalized(const SignMatrix& h) {
  const double s = 1.0 / std::sqrt(static_cast<double>(h.n));
  std::vector<double> f(h.v.size());
  for (size_t i = 0; i < f.size(); ++i) f[i] = h.v[i] * s;
  return f;
}

bool isPowerOfTwo(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace

SignMatrix sylvesterHadamard(int64_t n) {
  if (!isPowerOfTwo(n)) throw std::invalid_argument("sylvesterHadamard: " + std::to_string(n) + " is not a power of two");
  SignMatrix h{1, {1}};
  while (h.n < n) {
    const int64_t m = h.n, k = 2 * m;
    SignMatrix d{k, std::vector<int8_t>(static_cast<size_t>(k * k))};
    for (int64_t r = 0; r < k; ++r)
      for (int64_t c = 0; c < k; ++c) {
        const int8_t e = h.at(r % m, c % m);
        d.v[static_cast<size_t>(r * k + c)] = (r >= m && c >= m) ? static_cast<int8_t>(-e) : e;
      }
    h = std::move(d);
  }
  return h;
}

std::optional<SignMatrix> paleyHadamard(int64_t n) {
  if (n < 4 || n % 4 != 0) return std::nullopt;
  auto [p, k] = primePower(n - 1);
  if (p != 0 && (n - 1) % 4 == 3) return paleyI(GaloisField(p, k));
  if (n % 2 == 0) {
    auto [p2, k2] = primePower(n / 2 - 1);
    if (p2 != 0 && (n / 2 - 1) % 4 == 1) return paleyII(GaloisField(p2, k2));
  }
  return std::nullopt;
}

bool isHadamard(const SignMatrix& h) {
  for (int64_t r = 0; r < h.n; ++r)
    for (int64_t s = r; s < h.n; ++s) {
      int64_t dot = 0;
      for (int64_t c = 0; c < h.n; ++c) dot += h.at(r, c) * h.at(s, c);
      if (dot != (r == s ? h.n : 0)) return false;
    }
  return true;
}

std::string HadamardTransform::describe() const {
  std::string s;
  if (blocks > 1) s = "I_" + std::to_string(blocks);
  for (int64_t f : sizes) s += (s.empty() ? "" : " ⊗ ") + ("H_" + std::to_string(f));
  if (sizes.empty()) s = "I_" + std::to_string(n);
  return s;
}

void HadamardTransform::applyRows(double* x, int64_t count) const {
  std::vector<double> in, out;
  int64_t inner = blockSize();
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t f = sizes[i];
    inner /= f;  // stride of this factor's index: the product of the sizes after it
    const int64_t outer = n / (f * inner);
    const double* F = factors[i].data();
    in.resize(static_cast<size_t>(f));
    out.resize(static_cast<size_t>(f));
    for (int64_t row = 0; row < count; ++row) {
      double* xr = x + row * n;
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < inner; ++j) {
          double* base = xr + o * f * inner + j;
          for (int64_t a = 0; a < f; ++a) in[static_cast<size_t>(a)] = base[a * inner];
          for (int64_t c = 0; c < f; ++c) out[static_cast<size_t>(c)] = 0.0;
          for (int64_t a = 0; a < f; ++a) {
            const double v = in[static_cast<size_t>(a)];
            const double* Fa = F + a * f;
            for (int64_t c = 0; c < f; ++c) out[static_cast<size_t>(c)] += v * Fa[c];
          }
          for (int64_t c = 0; c < f; ++c) base[c * inner] = out[static_cast<size_t>(c)];
        }
    }
  }
}

std::vector<double> HadamardTransform::dense() const {
  std::vector<double> m(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) m[static_cast<size_t>(i * n + i)] = 1.0;
  applyRows(m.data(), n);
  return m;
}

std::optional<HadamardTransform> exactHadamard(int64_t n, int64_t max_factor) {
  if (n < 1) return std::nullopt;
  int max_bits = 1;
  while ((int64_t{2} << max_bits) <= max_factor) ++max_bits;
  int twos = 0;
  while ((n >> twos) % 2 == 0) ++twos;
  for (int m = twos; m >= 0; --m) {  // the smallest odd-ish part K first
    const int64_t k = n >> m;
    std::optional<SignMatrix> hk;
    if (k > 1) {
      if (k > max_factor) continue;
      hk = paleyHadamard(k);
      if (!hk) continue;
    }
    HadamardTransform t;
    t.n = n;
    if (hk) {
      if (!isHadamard(*hk)) throw std::logic_error("Paley construction of order " + std::to_string(k) + " is not Hadamard");
      t.sizes.push_back(k);
      t.factors.push_back(normalized(*hk));
    }
    if (m > 0) {
      const int parts = (m + max_bits - 1) / max_bits;
      for (int i = 0; i < parts; ++i) {
        const int bits = m / parts + (i < m % parts ? 1 : 0);
        t.sizes.push_back(int64_t{1} << bits);
        t.factors.push_back(normalized(sylvesterHadamard(int64_t{1} << bits)));
      }
    }
    return t;
  }
  return std::nullopt;
}

HadamardTransform hadamardTransform(int64_t n, int64_t max_factor) {
  if (std::optional<HadamardTransform> t = exactHadamard(n, max_factor)) return *t;
  for (int64_t b = n - 1; b >= 1; --b) {
    if (n % b != 0) continue;
    std::optional<HadamardTransform> t = exactHadamard(b, max_factor);
    if (!t) continue;
    t->n = n;
    t->blocks = n / b;
    return *t;
  }
  HadamardTransform t;  // unreachable: b = 1 always has a (trivial) construction
  t.n = n;
  t.blocks = n;
  return t;
}

std::vector<double> randomSigns(int64_t n, uint64_t seed) {
  std::vector<double> s(static_cast<size_t>(n));
  uint64_t state = seed;
  for (double& e : s) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    e = (z >> 63) ? -1.0 : 1.0;
  }
  return s;
}

}  // namespace ptq::quant
