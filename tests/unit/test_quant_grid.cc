// Grid conventions of lib/quant/grid.h, checked on hand-computed groups. Every expected value below
// is worked out in the comment next to it; the float subtleties are spelled out where they matter.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <vector>

#include "lib/quant/grid.h"
#include "lib/quant/rtn_kernels.h"
#include "lib/util/error.h"

using namespace ptq::quant;

namespace {

QuantOptions opts(int bits, bool symmetric, bool is_signed) {
  QuantOptions o;
  o.grid = GridSpec{bits, symmetric, is_signed};
  return o;
}

// Codes of one group through the fast kernel (as a 1-row matrix), as signed/unsigned integers.
std::vector<int> codesOf(const std::vector<float>& x, const QuantOptions& o, GroupParams* p = nullptr) {
  const QuantizedRows q = quantizeRows(x.data(), 1, static_cast<int64_t>(x.size()), static_cast<int64_t>(x.size()), o);
  const QuantizedRows r = quantizeRowsRef(x.data(), 1, static_cast<int64_t>(x.size()), static_cast<int64_t>(x.size()), o);
  REQUIRE(q.codes == r.codes);
  REQUIRE(q.scales == r.scales);
  REQUIRE(q.zero_points == r.zero_points);
  if (p) *p = GroupParams{q.scales[0], fromByte(q.zero_points[0], o.grid)};
  std::vector<int> out;
  for (uint8_t b : q.codes) out.push_back(fromByte(b, o.grid));
  return out;
}

ptq::ExitCode codeOfError(const std::function<void()>& f) {
  try {
    f();
  } catch (const ptq::Error& e) {
    return e.code();
  }
  return ptq::ExitCode::kOk;
}

}  // namespace

TEST_CASE("code ranges per bit width and signedness", "[quant][grid]") {
  CHECK(codeMin(GridSpec{4, true, true}) == -8);
  CHECK(codeMax(GridSpec{4, true, true}) == 7);
  CHECK(codeMin(GridSpec{4, false, false}) == 0);
  CHECK(codeMax(GridSpec{4, false, false}) == 15);
  CHECK(codeMin(GridSpec{8, true, true}) == -128);
  CHECK(codeMax(GridSpec{8, false, true}) == 127);
  CHECK(codeMin(GridSpec{2, true, true}) == -2);
  CHECK(codeMax(GridSpec{2, true, true}) == 1);
  CHECK(codeMax(GridSpec{3, true, false}) == 7);
}

TEST_CASE("bad grid and clip options are usage errors", "[quant][grid]") {
  CHECK(codeOfError([] { validateGrid(GridSpec{1, true, true}); }) == ptq::ExitCode::kUsage);
  CHECK(codeOfError([] { validateGrid(GridSpec{9, true, true}); }) == ptq::ExitCode::kUsage);
  QuantOptions o;
  o.clip = ClipSearch::kMse;
  o.clip_min_ratio = 0.0f;
  CHECK(codeOfError([&] { validateOptions(o); }) == ptq::ExitCode::kUsage);
  o.clip_min_ratio = 0.5f;
  o.clip_steps = 0;
  CHECK(codeOfError([&] { validateOptions(o); }) == ptq::ExitCode::kUsage);
  o.clip = ClipSearch::kNone;  // clip fields are not read without a search
  CHECK(codeOfError([&] { validateOptions(o); }) == ptq::ExitCode::kOk);
}

TEST_CASE("4-bit symmetric {-1, 0, 0.5, 2}", "[quant][grid]") {
  // scale = 2/7 rounds to the float 0.285714298 (just above 2/7), so -1/scale = -3.49999976 in
  // float: NOT a tie, it rounds to -3. 0.5/scale = 1.74999988 -> 2, 2/scale = 6.99999952 -> 7.
  GroupParams p;
  CHECK(codesOf({-1.0f, 0.0f, 0.5f, 2.0f}, opts(4, true, true), &p) == std::vector<int>{-3, 0, 2, 7});
  CHECK(p.scale == 2.0f / 7.0f);
  CHECK(p.zero == 0);
  // Unsigned codes are the signed ones + 8, with zero point 8.
  CHECK(codesOf({-1.0f, 0.0f, 0.5f, 2.0f}, opts(4, true, false), &p) == std::vector<int>{5, 8, 10, 15});
  CHECK(p.zero == 8);
}

TEST_CASE("round half to even on exact ties", "[quant][grid]") {
  // amax 7 at 4 bits: scale = 7/7 = 1 exactly, so x/scale = x.
  CHECK(codesOf({7.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.5f}, opts(4, true, true)) ==
        std::vector<int>{7, 0, 2, 2, 0, -2, -2, 4});
  // amax 3.5: scale 0.5 exactly; 0.25 -> 0.5 -> 0, 0.75 -> 1.5 -> 2, 1.25 -> 2.5 -> 2, -1.75 -> -3.5 -> -4.
  CHECK(codesOf({3.5f, 0.25f, 0.75f, 1.25f, -0.25f, -1.75f}, opts(4, true, true)) ==
        std::vector<int>{7, 0, 2, 2, 0, -4});
}

TEST_CASE("4-bit asymmetric with an integer zero point", "[quant][grid]") {
  // lo = -1, hi = 2.75: scale = 3.75/15 = 0.25, zero = nearbyint(1/0.25) = 4.
  // codes: -4+4 = 0; 0+4 = 4; 0.6/0.25 = 2.4 -> 2, +4 = 6; 11+4 = 15.
  GroupParams p;
  CHECK(codesOf({-1.0f, 0.0f, 0.6f, 2.75f}, opts(4, false, false), &p) == std::vector<int>{0, 4, 6, 15});
  CHECK(p.scale == 0.25f);
  CHECK(p.zero == 4);
  // Signed: zero and codes shifted down by 8.
  CHECK(codesOf({-1.0f, 0.0f, 0.6f, 2.75f}, opts(4, false, true), &p) == std::vector<int>{-8, -4, -2, 7});
  CHECK(p.zero == -4);
}

TEST_CASE("asymmetric zero point ties round to even, codes saturate", "[quant][grid]") {
  GroupParams p;
  // lo = -0.625, hi = 3.125: scale 3.75/15 = 0.25, -lo/scale = 2.5 -> zero 2 (even).
  // -0.625 -> -2.5 -> -2, +2 = 0; 3.125 -> 12.5 -> 12, +2 = 14 (the top of the range lands on 14).
  CHECK(codesOf({-0.625f, 3.125f}, opts(4, false, false), &p) == std::vector<int>{0, 14});
  CHECK(p.zero == 2);
  // lo = -0.875, hi = 2.875: -lo/scale = 3.5 -> zero 4. -0.875 -> -3.5 -> -4, +4 = 0;
  // 2.875 -> 11.5 -> 12, +4 = 16 -> saturates at 15.
  CHECK(codesOf({-0.875f, 2.875f}, opts(4, false, false), &p) == std::vector<int>{0, 15});
  CHECK(p.zero == 4);
}

TEST_CASE("8-bit asymmetric with a computed zero point", "[quant][grid]") {
  // lo = -3, hi = 12.9375: scale = 15.9375/255 = 0.0625 exactly; zero = 3/0.0625 = 48.
  // -3 -> -48+48 = 0; 0 -> 48; 1.03/0.0625 = 16.48 -> 16, +48 = 64; 12.9375 -> 207+48 = 255;
  // 0.03125 -> 0.5 -> 0 (even) -> 48; 0.09375 -> 1.5 -> 2 -> 50; -0.03125 -> -0.5 -> -0 -> 48.
  const std::vector<float> x{-3.0f, 0.0f, 1.03f, 12.9375f, 0.03125f, 0.09375f, -0.03125f};
  GroupParams p;
  CHECK(codesOf(x, opts(8, false, false), &p) == std::vector<int>{0, 48, 64, 255, 48, 50, 48});
  CHECK(p.scale == 0.0625f);
  CHECK(p.zero == 48);
  CHECK(codesOf(x, opts(8, false, true), &p) == std::vector<int>{-128, -80, -64, 127, -80, -78, -80});
  CHECK(p.zero == -80);
  // Stored bytes of the signed zero point and of code -128: two's complement.
  CHECK(toByte(-80) == 0xB0);
  CHECK(toByte(-128) == 0x80);
}

TEST_CASE("all-zero group gets scale 1 and reconstructs exactly", "[quant][grid]") {
  const std::vector<float> zeros{0.0f, -0.0f, 0.0f};
  GroupParams p;
  CHECK(codesOf(zeros, opts(4, true, true), &p) == std::vector<int>{0, 0, 0});
  CHECK((p.scale == 1.0f && p.zero == 0));
  CHECK(codesOf(zeros, opts(4, true, false), &p) == std::vector<int>{8, 8, 8});
  CHECK((p.scale == 1.0f && p.zero == 8));
  CHECK(codesOf(zeros, opts(4, false, false), &p) == std::vector<int>{0, 0, 0});
  CHECK((p.scale == 1.0f && p.zero == 0));
  CHECK(codesOf(zeros, opts(4, false, true), &p) == std::vector<int>{-8, -8, -8});
  CHECK((p.scale == 1.0f && p.zero == -8));
  CHECK(dequantizeValue(-8, p) == 0.0f);
}

TEST_CASE("a range that underflows the scale gets the smallest normal scale", "[quant][grid]") {
  // The smallest subnormal / 7 rounds to 0; a scale of 0 (or a denormal one) is clamped to 2^-126
  // (issue 13: denormal scales are flushed to 0 by FTZ/DAZ kernels). An all-zero range keeps 1.
  const float tiny = std::nextafter(0.0f, 1.0f);
  CHECK(paramsForRange(0.0f, tiny, GridSpec{4, true, true}).scale == kMinScale);
  CHECK(paramsForRange(-tiny, 0.0f, GridSpec{4, false, false}).scale == kMinScale);
  CHECK(paramsForRange(0.0f, 0.0f, GridSpec{4, true, true}).scale == 1.0f);
  CHECK(quantizeValue(tiny, paramsForRange(0.0f, tiny, GridSpec{4, true, true}), GridSpec{4, true, true}) == 0);
}

TEST_CASE("a range near FLT_MAX keeps a finite scale", "[quant][grid]") {
  const GroupParams p = paramsForRange(-3e38f, 3e38f, GridSpec{4, false, false});
  CHECK(std::isfinite(p.scale));
  CHECK(p.scale == Approx(6e38 / 15).epsilon(1e-6));
  CHECK((p.zero == 7 || p.zero == 8));  // -lo/scale is 7.5 up to rounding
  CHECK(quantizeValue(3e38f, p, GridSpec{4, false, false}) == 15);
  CHECK(quantizeValue(-3e38f, p, GridSpec{4, false, false}) == 0);
}

TEST_CASE("MSE clip search shrinks the range when an outlier costs more than it saves", "[quant][grid][clip]") {
  // 2-bit symmetric signed: codes -2..1, scale = amax * r. For r < 0.8 the three 0.4s round to
  // code 1 and 1.0 saturates at code 1: error(r) = (1 - r)^2 + 3 (0.4 - r)^2, least at r = 0.55
  // (0.27; r = 0.525 and 0.575 give 0.2725, r = 1 gives 3 * 0.16 = 0.48). With 20 steps down to
  // 0.5, 0.55 is step 18.
  QuantOptions o = opts(2, true, true);
  const std::vector<float> x{1.0f, 0.4f, 0.4f, 0.4f};
  GroupParams p;
  CHECK(codesOf(x, o, &p) == std::vector<int>{1, 0, 0, 0});
  CHECK(p.scale == 1.0f);
  o.clip = ClipSearch::kMse;
  CHECK(codesOf(x, o, &p) == std::vector<int>{1, 1, 1, 1});
  CHECK(p.scale == clipRatio(o, 18));
  CHECK(p.scale == Approx(0.55f));
  CHECK(fitGroup(x.data(), 4, o).scale == p.scale);
  CHECK(fitGroupRef(x.data(), 4, o).scale == p.scale);
}

TEST_CASE("clip search keeps the full range when clipping does not help", "[quant][grid][clip]") {
  // 7 and 3.5 sit on the 4-bit grid of scale 1 exactly (error 0); every smaller ratio has error > 0.
  QuantOptions o = opts(4, true, true);
  o.clip = ClipSearch::kMse;
  GroupParams p;
  CHECK(codesOf({7.0f, -7.0f, 3.0f, 1.0f}, o, &p) == std::vector<int>{7, -7, 3, 1});
  CHECK(p.scale == 1.0f);
  CHECK(clipRatio(o, 0) == 1.0f);
  CHECK(clipRatio(o, o.clip_steps) == 0.5f);
}
