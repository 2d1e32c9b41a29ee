#include "qeval/quant/pack.h"

#include <string>

#include "qeval/util/error.h"

namespace qeval::quant {

namespace {
void check_bits(int bits) {
  if (bits < 2 || bits > 8) throw Error("pack: bits " + std::to_string(bits) + " out of range 2-8");
}
}  // namespace

size_t packed_size(size_t n_codes, int bits) {
  check_bits(bits);
  return (n_codes * static_cast<size_t>(bits) + 7) / 8;
}

void pack_codes(std::span<const uint8_t> codes, int bits, std::span<uint8_t> out) {
  const size_t need = packed_size(codes.size(), bits);
  if (out.size() != need)
    throw Error("pack: output has " + std::to_string(out.size()) + " bytes, need " + std::to_string(need));
  const unsigned limit = 1u << bits;
  uint32_t acc = 0;  // pending bits, least significant first
  int nacc = 0;
  size_t o = 0;
  for (size_t i = 0; i < codes.size(); ++i) {
    if (codes[i] >= limit)
      throw Error("pack: code " + std::to_string(codes[i]) + " at index " + std::to_string(i) + " does not fit in " +
                  std::to_string(bits) + " bits");
    acc |= static_cast<uint32_t>(codes[i]) << nacc;
    nacc += bits;
    while (nacc >= 8) {
      out[o++] = static_cast<uint8_t>(acc & 0xffu);
      acc >>= 8;
      nacc -= 8;
    }
  }
  if (nacc > 0) out[o++] = static_cast<uint8_t>(acc & 0xffu);
}

std::vector<uint8_t> pack_codes(std::span<const uint8_t> codes, int bits) {
  std::vector<uint8_t> out(packed_size(codes.size(), bits));
  pack_codes(codes, bits, out);
  return out;
}

void unpack_codes(std::span<const uint8_t> packed, int bits, std::span<uint8_t> out) {
  const size_t need = packed_size(out.size(), bits);
  if (packed.size() != need)
    throw Error("unpack: " + std::to_string(packed.size()) + " bytes given, " + std::to_string(out.size()) + " codes of " +
                std::to_string(bits) + " bits need " + std::to_string(need));
  const uint32_t mask = (1u << bits) - 1u;
  uint32_t acc = 0;
  int nacc = 0;
  size_t p = 0;
  for (auto& code : out) {
    if (nacc < bits) {
      acc |= static_cast<uint32_t>(packed[p++]) << nacc;
      nacc += 8;
    }
    code = static_cast<uint8_t>(acc & mask);
    acc >>= bits;
    nacc -= bits;
  }
}

std::vector<uint8_t> unpack_codes(std::span<const uint8_t> packed, int bits, size_t n_codes) {
  std::vector<uint8_t> out(n_codes);
  unpack_codes(packed, bits, out);
  return out;
}

}  // namespace qeval::quant
