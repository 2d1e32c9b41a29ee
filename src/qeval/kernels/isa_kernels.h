#pragma once
// Internal: the per-instruction-set entry points behind packed_matrix.h's dispatch. Each
// implements gemv / dequantize_rows for every Format (the caller has validated the matrix and
// checked usable_isa). Compiled with function target attributes, called only when
// isa_available() says the CPU has the instructions.
#include <cstdint>

#include "qeval/kernels/packed_matrix.h"

namespace qeval::kernels::detail {

// Exact weight of one element (the dequantizer's float operations), any format.
float weight_at(const PackedMatrix& m, int64_t row, int64_t col);
// Sum over row r's outliers of x_c * (v - w_grid) (0 without outliers).
float outlier_correction(const PackedMatrix& m, int64_t row, const float* x);
// Overwrite row r's outlier positions in a dequantized row.
void apply_outliers(const PackedMatrix& m, int64_t row, float* out);

void gemv_scalar(const PackedMatrix& m, const float* x, float* y, int64_t b, int64_t e);
void dequantize_scalar(const PackedMatrix& m, int64_t b, int64_t e, float* out);
void gemv_avx2(const PackedMatrix& m, const float* x, const float* xp, float* y, int64_t b, int64_t e);
void dequantize_avx2(const PackedMatrix& m, int64_t b, int64_t e, float* out);
void gemv_avx512(const PackedMatrix& m, const float* x, const float* xp, float* y, int64_t b, int64_t e);
void dequantize_avx512(const PackedMatrix& m, int64_t b, int64_t e, float* out);

}  // namespace qeval::kernels::detail
