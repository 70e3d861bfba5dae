// RTN kernels: matrix layout on a hand-computed case, fast == reference byte for byte over a sweep
// of shapes and grids at 1 and 2 threads and in each instruction set the CPU has, dequantization,
// and NaN/Inf reporting.
#include <catch2/catch.hpp>

#include "support/error_text.h"
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lib/quant/rtn_kernels.h"
#include "lib/util/error.h"

using namespace ptq::quant;

namespace {

// Weights-like data with the awkward cases mixed in: outliers, exact zeros, whole zero stretches,
// values on rounding ties of a power-of-two grid, and negative zeros.
std::vector<float> makeMatrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 99);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < x.size(); ++i) {
    const int k = pick(rng);
    if (k < 3) {
      x[i] = 20.0f * normal(rng);          // outlier
    } else if (k < 8) {
      x[i] = (k % 2) ? 0.0f : -0.0f;       // zeros
    } else if (k < 12) {
      x[i] = (pick(rng) - 50) * 0.125f + 0.0625f;  // on half-steps of power-of-two grids
    } else {
      x[i] = normal(rng);
    }
  }
  if (rows * cols > 40) std::fill(x.begin() + 3, x.begin() + 40, 0.0f);  // a zero stretch
  return x;
}

struct ThreadCount {  // restores the OpenMP thread count on scope exit
  int saved = omp_get_max_threads();
  explicit ThreadCount(int n) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved); }
};

bool sameBytes(const QuantizedRows& a, const QuantizedRows& b) {
  return a.codes == b.codes && a.zero_points == b.zero_points && a.scales.size() == b.scales.size() &&
         std::memcmp(a.scales.data(), b.scales.data(), a.scales.size() * sizeof(float)) == 0 &&
         a.rows == b.rows && a.cols == b.cols && a.group == b.group && a.groups_per_row == b.groups_per_row;
}

using ptq::test::errorText;

}  // namespace

TEST_CASE("quantizeRows lays out [rows, cols] codes and [rows, groups] parameters", "[quant][rtn]") {
  // 2 x 5, group 2 -> 3 groups per row, the last of one element. 4-bit symmetric signed.
  // row 0: {3.5, -1.75} scale 0.5 -> {7, -3.5 -> -4}; {7, 0.5} scale 1 -> {7, 0}; {-14} scale 2 -> {-7}
  // row 1: {0, 0} scale 1 -> {0, 0}; {1.75, 0.75} scale 0.25 -> {7, 3}; {0} scale 1 -> {0}
  const std::vector<float> x{3.5f, -1.75f, 7.0f, 0.5f, -14.0f, 0.0f, 0.0f, 1.75f, 0.75f, 0.0f};
  QuantOptions o;
  o.grid = GridSpec{4, true, true};
  for (bool fast : {true, false}) {
    const QuantizedRows q = fast ? quantizeRows(x.data(), 2, 5, 2, o) : quantizeRowsRef(x.data(), 2, 5, 2, o);
    CHECK(q.groups_per_row == 3);
    CHECK(q.scales == std::vector<float>{0.5f, 1.0f, 2.0f, 1.0f, 0.25f, 1.0f});
    CHECK(q.zero_points == std::vector<uint8_t>(6, 0));
    CHECK(q.codes == std::vector<uint8_t>{7, 0xFC, 7, 0, 0xF9, 0, 0, 7, 3, 0});
    std::vector<float> y(10);
    fast ? dequantizeRows(q, y.data()) : dequantizeRowsRef(q, y.data());
    CHECK(y == std::vector<float>{3.5f, -2.0f, 7.0f, 0.0f, -14.0f, 0.0f, 0.0f, 1.75f, 0.75f, 0.0f});
  }
}

TEST_CASE("fast kernels equal the reference byte for byte at 1 and 2 threads, in every instruction set the CPU has",
          "[quant][rtn][fast]") {
  // The default choice is the widest; the narrower ones run on other machines, so they are held to
  // the reference here too.
  int isas_run = 0;
  for (const char* isa : {"baseline", "avx2", "avx512"}) {
    if (!setRtnKernelIsa(isa)) {
      WARN("this CPU has no " << isa << ": its kernels are not checked here");
      continue;
    }
    ++isas_run;
    INFO("kernels " << rtnKernelIsa());
    struct Shape {
      int64_t rows, cols;
    };
    // Small shapes run serially; 40 x 1000 and 9 x 4100 cross the OpenMP threshold.
    const std::vector<Shape> shapes{{1, 1}, {3, 17}, {5, 100}, {7, 257}, {40, 1000}, {9, 4100}};
    const std::vector<int64_t> groups{16, 32, 64, 128, 256};
    int config = 0;
    for (int bits = 2; bits <= 8; ++bits) {
      for (bool symmetric : {true, false}) {
        for (bool is_signed : {true, false}) {
          for (ClipSearch clip : {ClipSearch::kNone, ClipSearch::kMse}) {
            QuantOptions o;
            o.grid = GridSpec{bits, symmetric, is_signed};
            o.clip = clip;
            o.clip_steps = clip == ClipSearch::kMse ? 10 + config % 11 : 20;
            // The default ratio, the smallest the fused (FMA) error takes, and one below it (double error).
            o.clip_min_ratio = config % 3 == 0 ? 0.5f : config % 3 == 1 ? 0x1p-16f : 0x1p-17f;
            ++config;
            for (size_t si = 0; si < shapes.size(); ++si) {
              const Shape s = shapes[si];
              // Cycle the group over configs; also per-row (group == cols) and group > cols.
              int64_t group = groups[(config + si) % groups.size()];
              if (si == 1) group = s.cols;
              if (si == 2) group = 3 * s.cols;
              const std::vector<float> x = makeMatrix(s.rows, s.cols, static_cast<uint32_t>(1000 * config + si));
              INFO("bits " << bits << " sym " << symmetric << " signed " << is_signed << " clip "
                           << (clip == ClipSearch::kMse) << " shape " << s.rows << "x" << s.cols << " group " << group);
              const QuantizedRows ref = quantizeRowsRef(x.data(), s.rows, s.cols, group, o);
              QuantizedRows fast1, fast2;
              std::vector<float> y1(x.size()), y2(x.size()), yref(x.size());
              {
                ThreadCount t(1);
                fast1 = quantizeRows(x.data(), s.rows, s.cols, group, o);
                dequantizeRows(fast1, y1.data());
              }
              {
                ThreadCount t(2);
                fast2 = quantizeRows(x.data(), s.rows, s.cols, group, o);
                dequantizeRows(fast2, y2.data());
              }
              dequantizeRowsRef(ref, yref.data());
              REQUIRE(sameBytes(ref, fast1));
              REQUIRE(sameBytes(ref, fast2));
              REQUIRE(std::memcmp(y1.data(), yref.data(), x.size() * sizeof(float)) == 0);
              REQUIRE(std::memcmp(y2.data(), yref.data(), x.size() * sizeof(float)) == 0);
              // The first group through fitGroup/fitGroupRef directly matches the matrix kernel.
              const int64_t n0 = std::min(group, s.cols);
              const GroupParams pf = fitGroup(x.data(), n0, o), pr = fitGroupRef(x.data(), n0, o);
              REQUIRE(pf.scale == ref.scales[0]);
              REQUIRE(pr.scale == ref.scales[0]);
              REQUIRE(toByte(pf.zero) == ref.zero_points[0]);
              REQUIRE(toByte(pr.zero) == ref.zero_points[0]);
            }
          }
        }
      }
    }
  }
  REQUIRE(setRtnKernelIsa(""));
  CHECK(isas_run >= 1);
}

TEST_CASE("group squared error: fast sum equals the reference bit for bit", "[quant][rtn][fast]") {
  // 2-bit symmetric, scale 1: 1.0 is exact, each 0.4 rounds to 0: 3 * 0.4^2 = 0.48.
  const std::vector<float> g{1.0f, 0.4f, 0.4f, 0.4f};
  const GridSpec grid{2, true, true};
  CHECK(groupSquaredError(g.data(), 4, GroupParams{1.0f, 0}, grid) == Approx(0.48));
  // Sums of many terms with tails of every length: any change of summation order shows up in
  // the last bits, which is what would let the fast clip search pick another ratio.
  const std::vector<float> x = makeMatrix(1, 600, 21);
  int differ_from_serial = 0;
  for (int64_t n = 1; n <= 600; n += (n < 40 ? 1 : 37)) {
    for (const GridSpec& gs : {GridSpec{3, true, true}, GridSpec{4, false, false}, GridSpec{8, false, true}}) {
      QuantOptions o;
      o.grid = gs;
      GroupParams p = fitGroupRef(x.data(), n, o);
      p.scale *= 0.7f;  // clipped parameters, so that saturation errors enter the sum too
      const double fast = groupSquaredError(x.data(), n, p, gs), ref = groupSquaredErrorRef(x.data(), n, p, gs);
      INFO("n " << n << " bits " << gs.bits);
      REQUIRE(std::memcmp(&fast, &ref, sizeof fast) == 0);
      double serial = 0.0;  // a plain running sum: the lanes are not this, and the check must see it
      for (int64_t i = 0; i < n; ++i) {
        const int32_t code = quantizeValue(x[i], p, gs);
        const float e = static_cast<float>(double(x[i]) - double(code - p.zero) * double(p.scale));
        serial += double(e) * double(e);
      }
      if (serial != ref) ++differ_from_serial;
    }
  }
  CHECK(differ_from_serial > 0);
}

TEST_CASE("plain RTN error is at most half a step inside the range", "[quant][rtn]") {
  const std::vector<float> x = makeMatrix(16, 300, 7);
  QuantOptions o;
  o.grid = GridSpec{4, true, true};
  const QuantizedRows q = quantizeRows(x.data(), 16, 300, 64, o);
  std::vector<float> y(x.size());
  dequantizeRows(q, y.data());
  for (int64_t r = 0; r < 16; ++r) {
    for (int64_t c = 0; c < 300; ++c) {
      const float s = q.scales[static_cast<size_t>(r * q.groups_per_row + c / 64)];
      const size_t i = static_cast<size_t>(r * 300 + c);
      REQUIRE(std::fabs(x[i] - y[i]) <= 0.5f * s * (1.0f + 1e-6f));
    }
  }
}

TEST_CASE("MSE clip search never increases a group's error", "[quant][rtn][clip]") {
  const std::vector<float> x = makeMatrix(32, 256, 11);
  for (bool symmetric : {true, false}) {
    QuantOptions plain;
    plain.grid = GridSpec{3, symmetric, false};
    QuantOptions clipped = plain;
    clipped.clip = ClipSearch::kMse;
    const QuantizedRows a = quantizeRows(x.data(), 32, 256, 32, plain);
    const QuantizedRows b = quantizeRows(x.data(), 32, 256, 32, clipped);
    std::vector<float> ya(x.size()), yb(x.size());
    dequantizeRows(a, ya.data());
    dequantizeRows(b, yb.data());
    int shrunk = 0;
    for (size_t g = 0; g < a.scales.size(); ++g) {
      double ea = 0, eb = 0;
      for (size_t i = g * 32; i < g * 32 + 32; ++i) {
        ea += double(x[i] - ya[i]) * double(x[i] - ya[i]);
        eb += double(x[i] - yb[i]) * double(x[i] - yb[i]);
      }
      REQUIRE(eb <= ea * (1 + 1e-5));
      if (b.scales[g] < a.scales[g]) ++shrunk;
    }
    CHECK(shrunk > 0);  // the outliers in the data make clipping pay off somewhere
  }
}

TEST_CASE("NaN or Inf input names the first bad row and column", "[quant][rtn][error]") {
  std::vector<float> x(4 * 10, 0.5f);
  x[3 * 10 + 1] = std::numeric_limits<float>::infinity();
  x[2 * 10 + 5] = std::nanf("");
  QuantOptions o;
  o.grid = GridSpec{4, true, true};
  ptq::ExitCode code = ptq::ExitCode::kOk;
  const std::string ref = errorText([&] { quantizeRowsRef(x.data(), 4, 10, 4, o); }, &code);
  CHECK(code == ptq::ExitCode::kInput);
  CHECK(ref == "quantizeRowsRef: non-finite value NaN at row 2, column 5");
  for (int threads : {1, 2}) {
    ThreadCount t(threads);
    code = ptq::ExitCode::kOk;
    CHECK(errorText([&] { quantizeRows(x.data(), 4, 10, 4, o); }, &code) ==
          "quantizeRows: non-finite value NaN at row 2, column 5");
    CHECK(code == ptq::ExitCode::kInput);
  }
  x[2 * 10 + 5] = 0.0f;
  x[1 * 10 + 7] = -std::numeric_limits<float>::infinity();
  CHECK(errorText([&] { quantizeRows(x.data(), 4, 10, 4, o); }) ==
        "quantizeRows: non-finite value -Inf at row 1, column 7");
  CHECK(errorText([&] { fitGroup(x.data() + 10, 10, o); }) == "fitGroup: non-finite value -Inf at index 7");
  CHECK(errorText([&] { fitGroupRef(x.data() + 10, 10, o); }) == "fitGroupRef: non-finite value -Inf at index 7");
  // A NaN in a large matrix, found inside the parallel region.
  std::vector<float> big(64 * 1024, 1.0f);
  big[37 * 1024 + 1000] = std::nanf("");
  big[50 * 1024 + 3] = std::nanf("");
  ThreadCount t(2);
  CHECK(errorText([&] { quantizeRows(big.data(), 64, 1024, 128, o); }) ==
        "quantizeRows: non-finite value NaN at row 37, column 1000");
}

TEST_CASE("bad sizes are usage errors", "[quant][rtn][error]") {
  const std::vector<float> x(8, 1.0f);
  QuantOptions o;
  ptq::ExitCode code = ptq::ExitCode::kOk;
  CHECK(errorText([&] { quantizeRows(x.data(), 2, 4, 0, o); }, &code) == "quantizeRows: group must be >= 1, got 0");
  CHECK(code == ptq::ExitCode::kUsage);
  code = ptq::ExitCode::kOk;
  errorText([&] { quantizeRowsRef(x.data(), -1, 4, 4, o); }, &code);
  CHECK(code == ptq::ExitCode::kUsage);
  o.grid.bits = 9;
  code = ptq::ExitCode::kOk;
  CHECK(errorText([&] { quantizeRows(x.data(), 2, 4, 4, o); }, &code) == "quant: bits must be in 2..8, got 9");
  CHECK(code == ptq::ExitCode::kUsage);
}

TEST_CASE("empty matrices quantize to empty buffers", "[quant][rtn]") {
  QuantOptions o;
  const QuantizedRows a = quantizeRows(nullptr, 0, 16, 8, o);
  CHECK((a.codes.empty() && a.scales.empty() && a.groups_per_row == 2));
  const QuantizedRows b = quantizeRows(nullptr, 3, 0, 8, o);
  CHECK((b.codes.empty() && b.scales.empty() && b.groups_per_row == 0));
  dequantizeRows(b, nullptr);
}

TEST_CASE("dequantizeRows rejects inconsistent buffers", "[quant][rtn][error]") {
  const std::vector<float> x(8, 1.0f);
  QuantizedRows q = quantizeRows(x.data(), 2, 4, 4, QuantOptions{});
  q.scales.pop_back();
  std::vector<float> y(8);
  ptq::ExitCode code = ptq::ExitCode::kOk;
  errorText([&] { dequantizeRows(q, y.data()); }, &code);
  CHECK(code == ptq::ExitCode::kInternal);
}

TEST_CASE("codes of values at and next to rounding ties are the division's in every instruction set",
          "[quant][rtn][fast]") {
  // The written codes are nearbyint(x / s), the quotient QuantizeLinear takes, in every kernel (the
  // row kernels and the column-streamed one), never x * (1/s). These values sit on ties and one or
  // two ulps either side, where the product and the division round differently, with groups of
  // exactly representable and of awkward scales.
  std::vector<float> x;
  std::mt19937 rng(7);
  for (const float absmax : {127.0f, 1.0f, 0.0371f, 3.3e-5f, 1.7e4f}) {
    const float s = absmax / 127.0f;  // the int8 symmetric scale of a group whose |max| is absmax
    std::vector<float> g{absmax, -absmax};
    while (g.size() < 256) {
      const int k = static_cast<int>(rng() % 250) - 125;
      float v = (static_cast<float>(k) + 0.5f) * s;
      const int ulps = static_cast<int>(rng() % 5) - 2;
      for (int u = 0; u < std::abs(ulps); ++u) v = std::nextafter(v, ulps > 0 ? 1e30f : -1e30f);
      if (std::fabs(v) < absmax) g.push_back(v);
    }
    x.insert(x.end(), g.begin(), g.end());
  }
  const int64_t rows = 5, cols = 256;
  int isas_run = 0, differing = 0;
  for (const char* isa : {"baseline", "avx2", "avx512"}) {
    if (!setRtnKernelIsa(isa)) continue;
    ++isas_run;
    INFO("kernels " << rtnKernelIsa());
    for (int bits : {8, 4}) {
      QuantOptions o;
      o.grid = GridSpec{bits, true, true};
      const QuantizedRows ref = quantizeRowsRef(x.data(), rows, cols, cols, o);
      REQUIRE(sameBytes(ref, quantizeRows(x.data(), rows, cols, cols, o)));
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<uint8_t> codes(cols), zp(1);
        std::vector<float> scale(1);
        ErrorSums sums;
        REQUIRE(quantizeRowWithError(x.data() + r * cols, cols, cols, o, codes.data(), scale.data(), zp.data(), &sums));
        CHECK(std::equal(codes.begin(), codes.end(), ref.codes.begin() + r * cols));
      }
      // The same groups as the columns of a [cols, rows] matrix, streamed a row at a time.
      std::vector<float> s(ref.scales.begin(), ref.scales.end()), z(rows, 0.0f), max_abs(rows, 0.0f);
      std::vector<double> signal(rows, 0.0), noise(rows, 0.0);
      for (int64_t j = 0; j < cols; ++j) {
        std::vector<float> row(rows);
        std::vector<uint8_t> codes(rows);
        for (int64_t r = 0; r < rows; ++r) row[r] = x[static_cast<size_t>(r * cols + j)];
        quantizeColumnsRow(row.data(), rows, s.data(), z.data(), o.grid, codes.data(), signal.data(),
                           noise.data(), max_abs.data());
        for (int64_t r = 0; r < rows; ++r) CHECK(codes[r] == ref.codes[static_cast<size_t>(r * cols + j)]);
      }
      for (int64_t r = 0; r < rows; ++r) {
        // The product alone would have got some of these wrong: the test looks where it must.
        const float s = ref.scales[static_cast<size_t>(r)], inv = 1.0f / s;
        for (int64_t c = 0; c < cols; ++c) {
          const float v = x[static_cast<size_t>(r * cols + c)];
          differing += std::nearbyint(v * inv) != std::nearbyint(v / s);
        }
      }
    }
  }
  setRtnKernelIsa("");
  CHECK(isas_run >= 1);
  CHECK(differing > 0);
}

TEST_CASE("quantizeRowsInto reuses buffers and writes what quantizeRows returns", "[quant][rtn]") {
  // Two different matrices through one set of buffers: the second call must overwrite every byte of
  // the first (no stale codes or parameters), and each must equal a fresh quantizeRows.
  QuantOptions o;
  o.grid = GridSpec{8, true, true};
  const int64_t rows = 9, cols = 300;
  for (int64_t group : {cols, int64_t{32}}) {
    QuantizedRows reused = quantizeRows(makeMatrix(rows, cols, 21).data(), rows, cols, group, o);
    const std::vector<float> x = makeMatrix(rows, cols, 22);
    quantizeRowsInto(x.data(), o, &reused);
    CHECK(sameBytes(reused, quantizeRows(x.data(), rows, cols, group, o)));
    CHECK(!sameBytes(reused, quantizeRows(makeMatrix(rows, cols, 21).data(), rows, cols, group, o)));
  }
  QuantizedRows q = quantizeRows(makeMatrix(rows, cols, 23).data(), rows, cols, cols, o);
  const std::vector<float> x = makeMatrix(rows, cols, 24);
  QuantOptions other = o;
  other.grid = GridSpec{4, true, true};
  ptq::ExitCode code = ptq::ExitCode::kOk;
  CHECK(errorText([&] { quantizeRowsInto(x.data(), other, &q); }, &code).find("opts.grid differs") != std::string::npos);
  CHECK(code == ptq::ExitCode::kInternal);
  q.codes.pop_back();
  CHECK(errorText([&] { quantizeRowsInto(x.data(), o, &q); }, &code).find("do not match its sizes") != std::string::npos);
  CHECK(code == ptq::ExitCode::kInternal);
}
