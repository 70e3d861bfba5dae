// Tensor quantization: ONNX blocked layout for every axis of a 3-D tensor against a brute-force
// gather through fitGroupRef, a hand-computed per-channel case with its error figures, and errors.
#include <catch2/catch.hpp>

#include "support/error_text.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lib/quant/tensor_quant.h"
#include "lib/quant/rtn_kernels.h"
#include "lib/util/error.h"

using namespace ptq::quant;

namespace {

std::vector<float> randomTensor(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  x[n / 2] = 9.0f;  // an outlier in one group
  return x;
}

// Checks q against groups gathered by hand: for every scale position, the elements sharing it in
// increasing order along the axis (the order quantizeRows sees them in).
void checkAgainstGather(const float* x, const std::vector<int64_t>& shape, int64_t axis, int64_t block,
                        const QuantOptions& o, const QuantizedTensor& q) {
  const int64_t numel = shape[0] * shape[1] * shape[2];
  std::vector<int> covered(static_cast<size_t>(numel), 0);
  std::vector<float> expect_deq(static_cast<size_t>(numel));
  const std::vector<int64_t>& ss = q.scale_shape;
  const int64_t nscales = axis == kPerTensor ? 1 : ss[0] * ss[1] * ss[2];
  REQUIRE(q.scales.size() == static_cast<size_t>(nscales));
  for (int64_t f = 0; f < nscales; ++f) {
    std::vector<int64_t> pos;
    if (axis == kPerTensor) {
      for (int64_t i = 0; i < numel; ++i) pos.push_back(i);
    } else {
      const int64_t s[3] = {f / (ss[1] * ss[2]), f / ss[2] % ss[1], f % ss[2]};
      int64_t i[3] = {s[0], s[1], s[2]};
      for (int64_t k = s[axis] * block; k < std::min((s[axis] + 1) * block, shape[axis]); ++k) {
        i[axis] = k;
        pos.push_back((i[0] * shape[1] + i[1]) * shape[2] + i[2]);
      }
    }
    std::vector<float> values;
    for (int64_t p : pos) values.push_back(x[p]);
    const GroupParams p = fitGroupRef(values.data(), static_cast<int64_t>(values.size()), o);
    REQUIRE(q.scales[f] == p.scale);
    REQUIRE(q.zero_points[f] == toByte(p.zero));
    for (int64_t i : pos) {
      REQUIRE(q.codes[i] == toByte(quantizeValue(x[i], p, o.grid)));
      expect_deq[i] = dequantizeValue(quantizeValue(x[i], p, o.grid), p);
      ++covered[i];
    }
  }
  REQUIRE(std::all_of(covered.begin(), covered.end(), [](int c) { return c == 1; }));
  REQUIRE(dequantizeTensor(q) == expect_deq);
  double noise = 0;
  for (int64_t i = 0; i < numel; ++i) noise += (double(x[i]) - expect_deq[i]) * (double(x[i]) - expect_deq[i]);
  CHECK(q.error.mse == Approx(noise / double(numel)));
}

using ptq::test::errorText;

}  // namespace

TEST_CASE("3-D tensor blocked along each axis matches a brute-force gather", "[quant][tensor]") {
  const std::vector<int64_t> shape{3, 5, 7};
  const std::vector<float> x = randomTensor(3 * 5 * 7, 5);
  struct Case {
    int64_t axis, block;
    std::vector<int64_t> scale_shape;
  };
  const std::vector<Case> cases{
      {0, 2, {2, 5, 7}},  // 2 blocks, the last one short
      {0, 3, {1, 5, 7}},  // per-channel over (5, 7)
      {1, 2, {3, 3, 7}},  {1, 5, {3, 1, 7}}, {1, 64, {3, 1, 7}},  // block > dim is one block
      {2, 4, {3, 5, 2}},  {2, 7, {3, 5, 1}}, {kPerTensor, 0, {}},
  };
  for (const Case& c : cases) {
    for (bool symmetric : {true, false}) {
      for (ClipSearch clip : {ClipSearch::kNone, ClipSearch::kMse}) {
        QuantOptions o;
        o.grid = GridSpec{3, symmetric, !symmetric};
        o.clip = clip;
        INFO("axis " << c.axis << " block " << c.block << " sym " << symmetric);
        const QuantizedTensor q = quantizeTensor(x.data(), shape, c.axis, c.block, o);
        CHECK(q.shape == shape);
        CHECK(q.scale_shape == c.scale_shape);
        CHECK(q.codes.size() == x.size());
        checkAgainstGather(x.data(), shape, c.axis, c.block, o, q);
      }
    }
  }
}

TEST_CASE("wide tensors blocked along a middle axis match a brute-force gather", "[quant][tensor]") {
  // inner >= 64: full 64-column tiles (written back 16 rows at a time by the byte transpose) plus a
  // narrow last tile; rows not a multiple of 16 leave a tail. [1, 40, 1100] blocked by 16 is tiled a
  // block of rows at a time (rows a page apart), the last block 8 rows.
  struct Case {
    std::vector<int64_t> shape;
    int64_t block;
  };
  for (const Case& c : std::vector<Case>{{{2, 37, 130}, 37}, {{2, 37, 130}, 16}, {{1, 40, 1100}, 16}}) {
    const int64_t n = c.shape[0] * c.shape[1] * c.shape[2];
    const std::vector<float> x = randomTensor(static_cast<size_t>(n), 11);
    for (ClipSearch clip : {ClipSearch::kNone, ClipSearch::kMse}) {
      QuantOptions o;
      o.grid = GridSpec{4, false, true};
      o.clip = clip;
      INFO("shape [" << c.shape[0] << ", " << c.shape[1] << ", " << c.shape[2] << "] block " << c.block);
      const QuantizedTensor q = quantizeTensor(x.data(), c.shape, 1, c.block, o);
      REQUIRE(q.codes.size() == x.size());
      checkAgainstGather(x.data(), c.shape, 1, c.block, o, q);
    }
  }
}

TEST_CASE("per-channel 4-bit on a 2x3 matrix, by hand", "[quant][tensor]") {
  // Axis 0 in one block: one scale per column. col0 amax 7 -> s 1: {7, -3.5 -> -4};
  // col1 amax 14 -> s 2: {-1.75 -> -2, 7}; col2 all zero -> s 1: {0, 0}.
  const std::vector<float> x{7.0f, -3.5f, 0.0f, -3.5f, 14.0f, 0.0f};
  QuantOptions o;
  o.grid = GridSpec{4, true, true};
  const QuantizedTensor q = quantizeTensor(x.data(), {2, 3}, 0, 2, o);
  CHECK(q.scale_shape == std::vector<int64_t>{1, 3});
  CHECK(q.scales == std::vector<float>{1.0f, 2.0f, 1.0f});
  CHECK(q.zero_points == std::vector<uint8_t>{0, 0, 0});
  CHECK(q.codes == std::vector<uint8_t>{7, 0xFE, 0, 0xFC, 7, 0});
  CHECK(dequantizeTensor(q) == std::vector<float>{7.0f, -4.0f, 0.0f, -4.0f, 14.0f, 0.0f});
  // Two errors of 0.5: sum 0.5, mse 0.5/6; signal 49 + 12.25 + 12.25 + 196 = 269.5;
  // SQNR = 10 log10(269.5 / 0.5) = 10 log10(539) = 27.3159 dB.
  CHECK(q.error.mse == Approx(0.5 / 6));
  CHECK(q.error.max_abs == 0.5);
  CHECK(q.error.sqnr_db == Approx(27.3159).epsilon(1e-5));
  int64_t onnx_axis = -7;
  CHECK(perAxisForm(q, &onnx_axis));
  CHECK(onnx_axis == 1);
  // Along axis 1 in one block: one scale per row, per-axis form on axis 0.
  const QuantizedTensor r = quantizeTensor(x.data(), {2, 3}, 1, 3, o);
  CHECK(r.scale_shape == std::vector<int64_t>{2, 1});
  CHECK(r.scales == std::vector<float>{1.0f, 2.0f});
  CHECK(perAxisForm(r, &onnx_axis));
  CHECK(onnx_axis == 0);
  // Real blocks, or two varying axes, have no per-axis form.
  CHECK_FALSE(perAxisForm(quantizeTensor(x.data(), {2, 3}, 1, 2, o), &onnx_axis));
  CHECK_FALSE(perAxisForm(quantizeTensor(x.data(), {1, 2, 3}, 0, 1, o), &onnx_axis));
  CHECK(perAxisForm(quantizeTensor(x.data(), {2, 3, 1}, 1, 3, o), &onnx_axis));
  CHECK(onnx_axis == 0);
  CHECK_FALSE(perAxisForm(quantizeTensor(x.data(), {2, 3}, kPerTensor, 0, o), &onnx_axis));
}

TEST_CASE("error figures: exact reconstruction is capped at 200 dB", "[quant][tensor]") {
  const std::vector<float> a{3.0f, 4.0f}, same{3.0f, 4.0f}, off{3.0f, 3.0f};
  ErrorStats s = measureError(a.data(), same.data(), 2);
  CHECK(s.mse == 0.0);
  CHECK(s.sqnr_db == kMaxSqnrDb);
  s = measureError(a.data(), off.data(), 2);
  CHECK(s.mse == 0.5);
  CHECK(s.max_abs == 1.0);
  CHECK(s.sqnr_db == Approx(10 * std::log10(25.0)));
  // A tensor on the grid (scale 1) quantizes exactly.
  QuantOptions o;
  o.grid = GridSpec{4, true, true};
  const std::vector<float> x{7.0f, -3.0f, 0.0f, 1.0f};
  CHECK(quantizeTensor(x.data(), {4}, kPerTensor, 0, o).error.sqnr_db == kMaxSqnrDb);
}

TEST_CASE("per-tensor of an empty tensor still has one scalar scale", "[quant][tensor]") {
  QuantOptions o;
  o.grid = GridSpec{4, false, false};
  const QuantizedTensor q = quantizeTensor(nullptr, {0, 5}, kPerTensor, 0, o);
  CHECK(q.scale_shape.empty());
  CHECK(q.scales == std::vector<float>{1.0f});
  CHECK(q.zero_points == std::vector<uint8_t>{0});
  CHECK(dequantizeTensor(q).empty());
  const QuantizedTensor b = quantizeTensor(nullptr, {0, 5}, 1, 2, o);
  CHECK(b.scale_shape == std::vector<int64_t>{0, 3});
  CHECK(b.scales.empty());
}

TEST_CASE("tensor errors name the axis, block size or the NaN's index", "[quant][tensor][error]") {
  std::vector<float> x(3 * 5 * 7, 1.0f);
  const std::vector<int64_t> shape{3, 5, 7};
  QuantOptions o;
  ptq::ExitCode code = ptq::ExitCode::kOk;
  CHECK(errorText([&] { quantizeTensor(x.data(), shape, 3, 2, o); }, &code) ==
        "quantizeTensor: axis 3 out of range for shape [3, 5, 7] (use kPerTensor = -1 for one group)");
  CHECK(code == ptq::ExitCode::kUsage);
  code = ptq::ExitCode::kOk;
  errorText([&] { quantizeTensor(x.data(), shape, -2, 2, o); }, &code);
  CHECK(code == ptq::ExitCode::kUsage);
  CHECK(errorText([&] { quantizeTensor(x.data(), shape, 1, 0, o); }) ==
        "quantizeTensor: block_size must be >= 1, got 0");
  x[(1 * 5 + 2) * 7 + 3] = std::nanf("");
  for (int64_t axis : {int64_t{0}, int64_t{1}, int64_t{2}, kPerTensor}) {
    code = ptq::ExitCode::kOk;
    CHECK(errorText([&] { quantizeTensor(x.data(), shape, axis, 2, o); }, &code) ==
          "quantizeTensor: non-finite value NaN at index [1, 2, 3] of tensor [3, 5, 7]");
    CHECK(code == ptq::ExitCode::kInput);
  }
}

TEST_CASE("floats at an unaligned address quantize as the aligned ones, in every layout", "[quant][tensor]") {
  // quantizeTensorBytes reads a weight viewed in place inside a model file, where raw data is mostly
  // not 4-byte aligned: blocked along the last axis (rows), along a middle or first axis (tiles),
  // per tensor; 1 and 2 threads share the code, so one run is enough.
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  const std::vector<int64_t> shape{6, 40, 300};
  std::vector<float> x(6 * 40 * 300);
  for (float& v : x) v = nd(rng);
  std::vector<unsigned char> buf(x.size() * 4 + 8);
  for (size_t shift = 1; shift < 4; ++shift) {
    unsigned char* p = buf.data() + shift + (4 - reinterpret_cast<uintptr_t>(buf.data()) % 4) % 4;
    REQUIRE(reinterpret_cast<uintptr_t>(p) % 4 == shift);
    std::memcpy(p, x.data(), x.size() * 4);
    for (int64_t axis : {int64_t{2}, int64_t{1}, int64_t{0}, kPerTensor}) {
      for (int bits : {4, 8}) {
        INFO("shift " << shift << " axis " << axis << " bits " << bits);
        QuantOptions o;
        o.grid = GridSpec{bits, bits == 8, bits == 8};
        o.clip = bits == 4 ? ClipSearch::kMse : ClipSearch::kNone;
        const int64_t block = axis == kPerTensor ? 0 : (axis == 2 ? 128 : shape[static_cast<size_t>(axis)]);
        const QuantizedTensor a = quantizeTensor(x.data(), shape, axis, block, o);
        const QuantizedTensor b = quantizeTensorBytes(p, shape, axis, block, o);
        CHECK(a.codes == b.codes);
        CHECK(a.scales == b.scales);
        CHECK(a.zero_points == b.zero_points);
        CHECK(a.error.mse == b.error.mse);
      }
    }
    // A NaN is found at the same index.
    float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(p + 4 * (2 * 40 * 300 + 7 * 300 + 5), &nan, 4);
    QuantOptions o;
    CHECK_THROWS_WITH(quantizeTensorBytes(p, shape, 1, 40, o), Catch::Contains("NaN at index [2, 7, 5]"));
  }
}

namespace {

// Expected error figures of q: each scale position's group through quantizeRowWithError (the kernels'
// own lane order), summed over positions in order, as quantizeTensor promises bit for bit. For
// matrices [1, d, n] blocked along axis 1.
void checkSumsAgainstRows(const float* x, int64_t d, int64_t n, int64_t block, const QuantOptions& o,
                          const QuantizedTensor& q) {
  double signal = 0.0, noise = 0.0, max_abs = 0.0;
  std::vector<float> col(static_cast<size_t>(d)), scales(static_cast<size_t>((d + block - 1) / block));
  std::vector<uint8_t> codes(static_cast<size_t>(d)), zps(scales.size());
  for (int64_t c = 0; c < n; ++c) {
    for (int64_t j = 0; j < d; ++j) col[static_cast<size_t>(j)] = x[j * n + c];
    ErrorSums sums;
    REQUIRE(quantizeRowWithError(col.data(), d, block, o, codes.data(), scales.data(), zps.data(), &sums));
    signal += sums.signal;
    noise += sums.noise;
    max_abs = std::max(max_abs, sums.max_abs);
  }
  CHECK(q.error.mse == noise / static_cast<double>(d * n));
  CHECK(q.error.max_abs == max_abs);
  CHECK(q.error.sqnr_db == std::clamp(10.0 * std::log10(signal / noise), -kMaxSqnrDb, kMaxSqnrDb));
}

}  // namespace

TEST_CASE("weights read in chunks of rows match a brute-force gather and the per-group sums", "[quant][tensor]") {
  // A per-channel MatMul weight [K, N] (one block along K, no clip search) is streamed a chunk of
  // rows at a time across columns; a blocked one is tiled a chunk of whole blocks at a time; small
  // slabs are taken several per chunk. Chunks are 16 MB: 2100 x 2100 floats are two of them.
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t d = 2100, n = 2100;
  std::vector<float> x(static_cast<size_t>(d * n));
  for (float& v : x) v = nd(rng);
  x[static_cast<size_t>(2000 * n + 17)] = 40.0f;  // an outlier in the second chunk
  for (int64_t j = 0; j < d; ++j) x[static_cast<size_t>(j * n + 5)] = 0.0f;  // an all-zero column
  struct Case {
    int64_t block;
    int bits;
    bool symmetric;
    ClipSearch clip;
  };
  for (const Case& c : {Case{d, 8, true, ClipSearch::kNone}, Case{d, 4, false, ClipSearch::kNone},
                        Case{128, 4, false, ClipSearch::kNone}, Case{128, 4, true, ClipSearch::kMse}}) {
    INFO("block " << c.block << " bits " << c.bits << " symmetric " << c.symmetric);
    QuantOptions o;
    o.grid = GridSpec{c.bits, c.symmetric, c.symmetric};
    o.clip = c.clip;
    const std::vector<int64_t> shape{1, d, n};
    const QuantizedTensor q = quantizeTensor(x.data(), shape, 1, c.block, o);
    checkAgainstGather(x.data(), shape, 1, c.block, o, q);
    checkSumsAgainstRows(x.data(), d, n, c.block, o, q);
  }
  // Three slabs of 5.8 MB: two to a chunk, then one.
  const std::vector<int64_t> slabs{3, 700, 690};
  for (int64_t block : {int64_t{700}, int64_t{100}}) {
    QuantOptions o;
    o.grid = GridSpec{8, false, false};
    const QuantizedTensor q = quantizeTensor(x.data(), slabs, 1, block, o);
    checkAgainstGather(x.data(), slabs, 1, block, o, q);
  }
}

TEST_CASE("per-channel columns near rounding ties give the division's codes in every instruction set",
          "[quant][tensor]") {
  // Columns of values within two ulps of code + 1/2 (the product x * (1/s) rounds some of them the
  // other way), laid out as a weight [256, 80] quantized per column: the streamed path's tie test.
  std::mt19937 rng(7);
  const int64_t d = 256, n = 80;
  std::vector<float> x(static_cast<size_t>(d * n));
  for (int64_t c = 0; c < n; ++c) {
    const float absmax = std::ldexp(1.3f, static_cast<int>(c % 20) - 10);
    const float s = absmax / 127.0f;
    x[static_cast<size_t>(c)] = absmax;
    x[static_cast<size_t>(n + c)] = -absmax;
    for (int64_t j = 2; j < d; ++j) {
      const int k = static_cast<int>(rng() % 250) - 125;
      float v = (static_cast<float>(k) + 0.5f) * s;
      const int ulps = static_cast<int>(rng() % 5) - 2;
      for (int u = 0; u < std::abs(ulps); ++u) v = std::nextafter(v, ulps > 0 ? 1e30f : -1e30f);
      x[static_cast<size_t>(j * n + c)] = std::fabs(v) < absmax ? v : 0.0f;
    }
  }
  int isas_run = 0;
  for (const char* isa : {"baseline", "avx2", "avx512"}) {
    if (!setRtnKernelIsa(isa)) continue;
    ++isas_run;
    INFO("kernels " << rtnKernelIsa());
    QuantOptions o;
    o.grid = GridSpec{8, true, true};
    const std::vector<int64_t> shape{1, d, n};
    const QuantizedTensor q = quantizeTensor(x.data(), shape, 1, d, o);
    checkAgainstGather(x.data(), shape, 1, d, o, q);
    checkSumsAgainstRows(x.data(), d, n, d, o, q);
  }
  setRtnKernelIsa("");
  CHECK(isas_run >= 1);
}
