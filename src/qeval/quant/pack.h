#pragma once
// Dense bit packing of integer codes (2..8 bits each), the storage form of quantized weights.
//
// Bit order is little-endian throughout: the stream is a sequence of bits where stream bit k is
// bit (k % 8) of byte k / 8 (bit 0 = least significant); code i occupies stream bits
// [i*bits, (i+1)*bits), its least significant bit first. So for 4 bits, code 0 is the low nibble
// of byte 0 and code 1 the high nibble; for 3, 5, 6, 7 bits codes straddle byte boundaries.
// The packed size is ceil(n * bits / 8) bytes; unused high bits of the last byte are zero.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace qeval::quant {

size_t packed_size(size_t n_codes, int bits);
// Throws qeval::Error when bits is outside 2..8 or a code does not fit in `bits` bits.
std::vector<uint8_t> pack_codes(std::span<const uint8_t> codes, int bits);
void pack_codes(std::span<const uint8_t> codes, int bits, std::span<uint8_t> out);  // out: packed_size bytes
// Inverse of pack_codes; n_codes must be given (the packed size does not determine it).
std::vector<uint8_t> unpack_codes(std::span<const uint8_t> packed, int bits, size_t n_codes);
void unpack_codes(std::span<const uint8_t> packed, int bits, std::span<uint8_t> out);

}  // namespace qeval::quant
