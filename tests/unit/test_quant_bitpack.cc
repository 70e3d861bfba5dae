// Bit packing: known byte patterns for 4, 3 and 2 bits, fast paths == the bit-by-bit reference for
// every width, round trips, no write past the packed size, and sign extension.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "lib/quant/bitpack.h"
#include "lib/quant/rtn_kernels.h"
#include "lib/util/error.h"

using namespace ptq::quant;

namespace {

std::vector<uint8_t> pack(const std::vector<uint8_t>& codes, int bits, bool fast = true) {
  std::vector<uint8_t> out(static_cast<size_t>(packedBytes(static_cast<int64_t>(codes.size()), bits)), 0xAA);
  (fast ? packBits : packBitsRef)(codes.data(), static_cast<int64_t>(codes.size()), bits, out.data());
  return out;
}

std::vector<uint8_t> unpack(const std::vector<uint8_t>& packed, int64_t n, int bits, bool fast = true) {
  std::vector<uint8_t> out(static_cast<size_t>(n), 0xAA);
  (fast ? unpackBits : unpackBitsRef)(packed.data(), n, bits, out.data());
  return out;
}

}  // namespace

TEST_CASE("packed sizes round up to whole bytes", "[quant][bitpack]") {
  CHECK(packedBytes(5, 4) == 3);
  CHECK(packedBytes(8, 3) == 3);
  CHECK(packedBytes(3, 3) == 2);
  CHECK(packedBytes(0, 4) == 0);
  CHECK(packedBytes(1, 1) == 1);
  CHECK(packedBytes(9, 1) == 2);
  CHECK(packedBytes(7, 8) == 7);
}

TEST_CASE("4-bit: first code in the low nibble, odd count zero-padded", "[quant][bitpack]") {
  for (bool fast : {true, false}) {
    CHECK(pack({1, 2, 3, 4, 5}, 4, fast) == std::vector<uint8_t>{0x21, 0x43, 0x05});
    // Signed bytes pack by their low bits: -1 -> 0xF, 7 -> 0x7, -8 -> 0x8.
    CHECK(pack({0xFF, 0x07, 0xF8}, 4, fast) == std::vector<uint8_t>{0x7F, 0x08});
    CHECK(unpack({0x21, 0x43, 0x05}, 5, 4, fast) == std::vector<uint8_t>{1, 2, 3, 4, 5});
  }
}

TEST_CASE("3-bit codes straddle bytes, low bits first", "[quant][bitpack]") {
  // Stream value = sum c_i << 3i for {1..7, 0} = 0x1F58D1:
  // byte0 = c2[1:0] c1 c0 = 11 010 001 = 0xD1; byte1 = c5[0] c4 c3 c2[2] = 0 101 100 0 = 0x58;
  // byte2 = c7 c6 c5[2:1] = 000 111 11 = 0x1F.
  const std::vector<uint8_t> codes{1, 2, 3, 4, 5, 6, 7, 0};
  for (bool fast : {true, false}) {
    CHECK(pack(codes, 3, fast) == std::vector<uint8_t>{0xD1, 0x58, 0x1F});
    CHECK(unpack({0xD1, 0x58, 0x1F}, 8, 3, fast) == codes);
  }
}

TEST_CASE("2-bit: four codes per byte", "[quant][bitpack]") {
  // 1 | 2<<2 | 3<<4 | 0<<6 = 0x39; the fifth code alone in byte 1.
  for (bool fast : {true, false}) {
    CHECK(pack({1, 2, 3, 0, 3}, 2, fast) == std::vector<uint8_t>{0x39, 0x03});
    CHECK(unpack({0x39, 0x03}, 5, 2, fast) == std::vector<uint8_t>{1, 2, 3, 0, 3});
  }
}

TEST_CASE("fast paths equal the bit-by-bit reference and round-trip at every width", "[quant][bitpack]") {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : {0, 1, 2, 3, 5, 7, 8, 9, 31, 64, 1001}) {
      INFO("bits " << bits << " n " << n);
      std::vector<uint8_t> codes(static_cast<size_t>(n));
      for (uint8_t& c : codes) c = static_cast<uint8_t>(byte(rng));  // high bits set too: must be masked
      const std::vector<uint8_t> fast = pack(codes, bits, true), ref = pack(codes, bits, false);
      REQUIRE(fast == ref);
      std::vector<uint8_t> low(codes);
      for (uint8_t& c : low) c = static_cast<uint8_t>(c & ((1 << bits) - 1));
      REQUIRE(unpack(fast, n, bits, true) == low);
      REQUIRE(unpack(fast, n, bits, false) == low);
      // Nothing is written past packedBytes.
      std::vector<uint8_t> guarded(fast.size() + 4, 0xAA);
      packBits(codes.data(), n, bits, guarded.data());
      REQUIRE(std::vector<uint8_t>(guarded.end() - 4, guarded.end()) == std::vector<uint8_t>(4, 0xAA));
    }
  }
}

TEST_CASE("signExtend reads the low bits as two's complement", "[quant][bitpack]") {
  CHECK(signExtend(0xF, 4) == -1);
  CHECK(signExtend(0x8, 4) == -8);
  CHECK(signExtend(0x7, 4) == 7);
  CHECK(signExtend(0xF7, 4) == 7);  // high bits ignored
  CHECK(signExtend(0x3, 2) == -1);
  CHECK(signExtend(0x2, 2) == -2);
  CHECK(signExtend(0x4, 3) == -4);
  CHECK(signExtend(0x80, 8) == -128);
  CHECK(signExtend(0x7F, 8) == 127);
  CHECK(signExtend(0x1, 1) == -1);
}

TEST_CASE("signed 4-bit codes survive pack, unpack and sign extension", "[quant][bitpack]") {
  const std::vector<float> x{3.5f, -1.75f, 7.0f, 0.5f, -14.0f, 0.0f, 1.75f};
  QuantOptions o;
  o.grid = GridSpec{4, true, true};
  const QuantizedRows q = quantizeRows(x.data(), 1, 7, 7, o);
  const std::vector<uint8_t> back = unpack(pack(q.codes, 4), 7, 4);
  for (size_t i = 0; i < x.size(); ++i) CHECK(signExtend(back[i], 4) == fromByte(q.codes[i], o.grid));
}

TEST_CASE("bit widths outside 1..8 are usage errors", "[quant][bitpack][error]") {
  uint8_t buf[4] = {};
  CHECK_THROWS_AS(packBits(buf, 1, 0, buf), ptq::Error);
  CHECK_THROWS_AS(unpackBits(buf, 1, 9, buf), ptq::Error);
  CHECK_THROWS_AS(packedBytes(-1, 4), ptq::Error);
}
