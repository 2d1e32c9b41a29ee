#pragma once
// Block decoders for every ggml tensor type QEval reads, written from the format definitions
// and bit-exact with ggml's reference dequantizers; plus the reference quantizers of the
// types QEval writes (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1), bit-exact with
// ggml's quantize_row_*_ref.
#include <cstdint>

#include "qeval/io/dtype.h"

namespace qeval {

// Decode n elements (a multiple of the block size) starting at a block boundary.
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

// True when quantize_row() can produce this type.
bool can_quantize(DType type);
// Encode n floats (a multiple of the block size) into dst (row_bytes(type, n) bytes).
void quantize_row(DType type, const float* src, void* dst, int64_t n);

}  // namespace qeval
