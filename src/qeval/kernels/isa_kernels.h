#pragma once
// Internal: the per-instruction-set entry points behind packed_matrix.h's dispatch. Each
// implements gemv / dequantize_rows for every Format (the caller has validated the matrix and
// checked usable_isa). Compiled with function target attributes, called only when
// isa_available() says the CPU has the instructions.
#include <cstdint>

#include "qeval/kernels/packed_matrix.h"

namespace qeval::kernels::detail {

// Columns [begin, end) of a row.
struct ColumnSpan {
  int64_t begin = 0, end = 0;
  int64_t width() const { return end - begin; }
};

// Exact weight of one element (the dequantizer's float operations), any format.
float weight_at(const PackedMatrix& m, int64_t row, int64_t col);
// Sum over row r's outliers of x_c * (v - w_grid) (0 without outliers).
float outlier_correction(const PackedMatrix& m, int64_t row, const float* x);
// Overwrite row r's outlier positions in a dequantized row.
void apply_outliers(const PackedMatrix& m, int64_t row, float* out);

// Int4 in groups of 32 or 64: the AVX-512 GEMV reads 128-code chunks across group boundaries
// (and prepare_activation orders the activation for it).
bool int4_small_groups(const PackedMatrix& m);

void gemv_scalar(const PackedMatrix& m, const float* x, float* y, int64_t b, int64_t e);
void dequantize_scalar(const PackedMatrix& m, int64_t b, int64_t e, float* out);
void gemv_avx2(const PackedMatrix& m, const float* x, const float* xp, float* y, int64_t b, int64_t e);
void dequantize_avx2(const PackedMatrix& m, int64_t b, int64_t e, float* out);
void gemv_avx512(const PackedMatrix& m, const float* x, const float* xp, float* y, int64_t b, int64_t e);
// Columns `span` of rows [b, e) into rows of span.width() floats `ld` apart (span.begin a multiple
// of 32, span.end a multiple of 32 or cols; outliers are not applied here: callers with a span
// other than the whole row use matrices without outliers).
void dequantize_avx512(const PackedMatrix& m, int64_t b, int64_t e, ColumnSpan span, float* out, int64_t ld);
// Many-row product (packed_gemm.h) on AVX-512.
void gemm_avx512(const PackedMatrix& m, const float* x, int64_t rows, float* y, int64_t ldy, int64_t b, int64_t e);

}  // namespace qeval::kernels::detail
