#pragma once
// Packed low-bit weight matrices and the kernels that multiply by them without expanding them
// to a full float matrix: a GEMV over a range of output rows (decode; the caller splits rows
// between threads) and dequantization of a range of rows into a small float scratch (for
// sgemm on such tiles where packed_gemm.h's many-row product has no path). Instruction set chosen at run
// time (cpu.h): AVX-512 (F/BW/VL + F16C), AVX2 (+FMA, F16C), or portable scalar code. No
// -march flags: ISA code is compiled per function with target attributes.
//
// Memory layout (a PackedMatrix only points at it; nothing is copied):
//  F16    rows of cols IEEE half floats (a GGUF F16 tensor as mapped).
//  Q8_0   rows of cols/32 ggml blocks {F16 d; int8 q[32]} (34 bytes); w = float(q) * d.
//  Q4_0   rows of cols/32 blocks {F16 d; uint8 qs[16]} (18 bytes); element j < 16 is the low
//         nibble of qs[j], element j + 16 its high nibble; w = float(q - 8) * d.
//  Q4_1   rows of cols/32 blocks {F16 d; F16 m; uint8 qs[16]} (20 bytes), same nibble order;
//         w = float(q) * d + m.
//  Int8   QEval w8: one byte per code, rows of cols bytes; w = s * (float(q) - z) with the
//         group's s and z (per output channel: one group per row).
//  Int4   QEval w4: two codes per byte, element 2k in the low nibble of byte k (quant/pack.h's
//         little-endian stream), each row starting on a byte (row_bytes = ceil(cols / 2); a
//         stream with odd cols is re-packed row-aligned by the caller); w = s * (float(q) - z).
//  Int*:  groups of group_size columns along a row (the last one may be shorter); group g of
//         logical row r uses scales[r * scale_row_stride + g] (zeros likewise; zeros == null:
//         z = 2^(bits-1), the symmetric grid); scale_row_stride 0 = one group for the whole
//         matrix (per-tensor). Optional outliers, CSR over logical rows, replace the grid value
//         at their positions (the GEMV adds x_c * (v - w_grid) for each).
//  row_order (optional): logical row r is physical row row_order[r] (rotary layouts of GGUF
//  Q/K); scales, zeros and outliers are indexed by logical row.
//
// Exactness (what the tests check): every kernel forms each weight exactly as the
// dequantizer does (the same float operations: the ggml decoders of io/ggml_blocks_legacy.cpp,
// s * (float(q) - z) of quant/quantizer.h), through a 16-entry lookup table built with those
// operations for 4-bit codes, so dequantize_rows reproduces the dequantized matrix bit for bit
// and the GEMV differs from a dot product with the dequantized row only in the order of the
// float additions (and in FMA skipping the product's rounding). Exceptions: the AVX-512 Int8
// GEMV, and the AVX-512 Int4 GEMV with groups of 32 or 64, form float(q) - z as the dequantizer
// does but multiply by the scale once per group sum (Int4: per lane sum of 4 products) instead
// of per weight; the AVX2 GEMV does so for Q8_0 and Q4_0 (float(q) or float(q - 8), scaled by d
// per block) and for Int8 / Int4 sums x * float(q) and x per group, then scales t - z * X (fewer
// operations per weight; at most two more roundings per term, covered by the constant 64
// below). With u = 2^-24 and
// M = sum_i |x_i * w_i| (plus |x_c| * (|v| + |w_grid|) per outlier; AVX2 Int8 / Int4: plus
// 2 * sum_i |x_i * s * z| of each element's group, since |x * s * q| <= |x * w| + |x * s * z|
// and z * X adds that much again), each result lies within
//     (n / 8 + 64 + 2 * outliers_in_row) * u * M
// of the exact real sum: each term passes through at most that many roundings (8 or 16 SIMD
// lanes accumulate about n/8 or n/16 terms each, then a lane reduction, a scalar tail shorter
// than a 32-element chunk, and two additions per outlier); the standard first-order bound of
// recursive summation is (number of roundings) * u * sum of |terms|. Two paths (e.g. AVX-512 vs
// scalar) therefore differ by at most twice that. For the model-level consequence see
// tests/quant/test_export.cpp (packed vs simulated perplexity within 0.1%).
#include <cstddef>
#include <cstdint>
#include <string>

#include "qeval/kernels/cpu.h"

namespace qeval::kernels {

enum class Format : uint8_t { F16, Q8_0, Q4_0, Q4_1, Int8, Int4 };
const char* format_name(Format f);  // "f16", "q8_0", "q4_0", "q4_1", "int8", "int4"

struct PackedMatrix {
  Format format = Format::F16;
  int64_t rows = 0, cols = 0;
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;               // bytes between consecutive physical rows
  const int32_t* row_order = nullptr; // logical -> physical row, or null
  // Int8 / Int4 only.
  int64_t group_size = 0;             // columns per group (cols: per channel / per tensor)
  int64_t scale_row_stride = 0;       // groups per row; 0: one group for the whole matrix
  const float* scales = nullptr;
  const float* zeros = nullptr;       // null: symmetric, z = 2^(bits-1)
  const int64_t* outlier_row_ptr = nullptr;  // rows + 1 or null
  const int32_t* outlier_cols = nullptr;
  const float* outlier_values = nullptr;

  // Inline: the kernels read a scale and a zero-point per group of as few as 32 weights.
  int bits() const {
    switch (format) {
      case Format::F16: return 16;
      case Format::Q8_0:
      case Format::Int8: return 8;
      default: return 4;
    }
  }
  float scale(int64_t row, int64_t group) const { return scales[row * scale_row_stride + group]; }
  float zero(int64_t row, int64_t group) const {
    return zeros ? zeros[row * scale_row_stride + group] : static_cast<float>(1 << (bits() - 1));
  }
  const uint8_t* row(int64_t logical) const {
    return data + static_cast<size_t>(row_order ? row_order[logical] : logical) * row_bytes;
  }
  // Bytes a full pass over the matrix reads (codes, scales, zeros, outliers).
  size_t storage_bytes() const;
};

// Bytes of one row in the format's layout (throws when cols does not fit the block size).
size_t format_row_bytes(Format f, int64_t cols);
// Throws qeval::Error("<what>: <problem>") for inconsistent sizes.
void validate(const PackedMatrix& m, const std::string& what);

// The best instruction set this matrix can use on this CPU, at most `limit`: the 4-bit
// QEval layout needs group sizes that are multiples of 32 for its SIMD paths.
Isa usable_isa(const PackedMatrix& m, Isa limit);

// The activation row as the chosen path reads it, in the nibble order of the codes so that
// unpacking needs no shuffles: for Int4 SIMD paths, within each group, AVX-512 takes as many
// 128-element chunks as fit (element 8j + k of a chunk moves to 16k + j: nibble k of 32-bit
// word j), then 32-element chunks (the 16 even-indexed elements, then the 16 odd ones; AVX2
// uses only these), and leaves the tail in place; with groups of 32 or 64 (and not per tensor)
// AVX-512 takes the 128-element chunks across group boundaries, from the row's start. Otherwise
// x itself. scratch: activation_scratch_floats(m) floats.
size_t activation_scratch_floats(const PackedMatrix& m);
const float* prepare_activation(const PackedMatrix& m, Isa isa, const float* x, float* scratch);

// y[o - row_begin] = sum_i x[i] * W[o][i] for o in [row_begin, row_end). `prepared` is
// prepare_activation's result for the same x and isa.
void gemv(const PackedMatrix& m, Isa isa, const float* x, const float* prepared, float* y, int64_t row_begin,
          int64_t row_end);
// out[(o - row_begin) * cols + i] = W[o][i]: exactly the dequantized values (outliers included).
void dequantize_rows(const PackedMatrix& m, Isa isa, int64_t row_begin, int64_t row_end, float* out);

}  // namespace qeval::kernels
