#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "qeval/quant/pack.h"
#include "qeval/quant/quantizer.h"
#include "qeval/util/error.h"

namespace qeval::quant {
namespace {

TEST(Pack, RoundTripAllWidthsAndOddLengths) {
  std::mt19937 rng(42);
  for (int bits = 2; bits <= 8; ++bits)
    for (size_t n : {0u, 1u, 2u, 3u, 5u, 7u, 8u, 9u, 13u, 31u, 100u, 1001u}) {
      SCOPED_TRACE(std::to_string(bits) + " bits, n " + std::to_string(n));
      std::uniform_int_distribution<int> d(0, (1 << bits) - 1);
      std::vector<uint8_t> codes(n);
      for (auto& c : codes) c = static_cast<uint8_t>(d(rng));
      if (n > 0) codes[n - 1] = static_cast<uint8_t>((1 << bits) - 1);  // top code survives at the end
      const auto packed = pack_codes(codes, bits);
      EXPECT_EQ(packed.size(), (n * bits + 7) / 8);
      EXPECT_EQ(packed.size(), packed_size(n, bits));
      EXPECT_EQ(unpack_codes(packed, bits, n), codes);
      // Unused high bits of the last byte are zero.
      const size_t used = n * static_cast<size_t>(bits) % 8;
      if (used != 0) {
        EXPECT_EQ(packed.back() >> used, 0);
      }
    }
}

TEST(Pack, LittleEndianBitOrder) {
  // 4 bits: low nibble first.
  EXPECT_EQ(pack_codes(std::vector<uint8_t>{0x1, 0x2, 0xf}, 4), (std::vector<uint8_t>{0x21, 0x0f}));
  // 2 bits: code i at bits 2i..2i+1.
  EXPECT_EQ(pack_codes(std::vector<uint8_t>{1, 2, 3, 0, 3}, 2), (std::vector<uint8_t>{0b00111001, 0b11}));
  // 3 bits: codes straddle bytes. 1 | 2<<3 | 3<<6 = 0xd1, then bit 2 of code 2 (0) and code 3 (7) at bits 1..3.
  EXPECT_EQ(pack_codes(std::vector<uint8_t>{1, 2, 3, 7}, 3), (std::vector<uint8_t>{0xd1, 0x0e}));
  // 8 bits: identity.
  EXPECT_EQ(pack_codes(std::vector<uint8_t>{0, 255, 17}, 8), (std::vector<uint8_t>{0, 255, 17}));
  // 5 bits: 31 | 1<<5 -> 0x3f, 0x00.
  EXPECT_EQ(pack_codes(std::vector<uint8_t>{31, 1}, 5), (std::vector<uint8_t>{0x3f, 0x00}));
}

TEST(Pack, RejectsBadInput) {
  EXPECT_THROW(pack_codes(std::vector<uint8_t>{4}, 2), Error);
  EXPECT_THROW(pack_codes(std::vector<uint8_t>{1}, 1), Error);
  EXPECT_THROW(pack_codes(std::vector<uint8_t>{1}, 9), Error);
  EXPECT_THROW(unpack_codes(std::vector<uint8_t>{1, 2}, 4, 5), Error);  // 5 codes of 4 bits need 3 bytes
  std::vector<uint8_t> out(3);
  EXPECT_THROW(pack_codes(std::vector<uint8_t>{1, 2}, 4, out), Error);
}

TEST(Pack, QuantizedMatrixCodesPackAndRestore) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  const int64_t rows = 7, cols = 45;
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = nd(rng);
  for (int bits = 2; bits <= 8; ++bits) {
    QuantizerConfig c;
    c.bits = bits;
    c.granularity = Granularity::PerGroup;
    c.group_size = 16;
    c.symmetric = false;
    auto q = quantize(c, x, rows, cols);
    const auto before = q.dequantize();
    const auto packed = pack_codes(q.codes, bits);
    q.codes = unpack_codes(packed, bits, q.codes.size());
    EXPECT_EQ(q.dequantize(), before);
  }
}

}  // namespace
}  // namespace qeval::quant
