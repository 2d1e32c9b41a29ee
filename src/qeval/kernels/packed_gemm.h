#pragma once
// Many activation rows times a packed matrix (prefill), without a float copy of the matrix and
// without sgemm: the matrix is dequantized in panels of 32 output features x kGemmDepth inputs,
// written transposed ([input][32 features], the layout the micro-kernel reads), and multiplied
// by 8 activation rows at a time in registers (an 8 x 32 outer-product micro-kernel). Dequantize
// tile, then sgemm, cost a second, transposing copy of every tile (sgemm's own packing) and a
// copy of the whole activation per tile; here the dequantizer is the only copy.
//
// Exactness: the panels hold exactly the dequantized weights (dequantize_rows' values); each
// output is a sequential fused multiply-add chain over its inputs in ascending order, so it lies
// within (n + 1) * 2^-24 * sum_i |x_i w_i| of the exact sum (recursive summation) and does not
// depend on the thread count or on how the output range is split.
#include <cstdint>

#include "qeval/kernels/packed_matrix.h"

namespace qeval::kernels {

// Whether gemm() has a path for this matrix on `isa` (AVX-512, no outliers); otherwise the
// caller dequantizes and uses sgemm.
bool gemm_supported(const PackedMatrix& m, Isa isa);

// y[t * ldy + o] = sum_i x[t * m.cols + i] * W[o][i] for t < rows and o in [row_begin, row_end).
void gemm(const PackedMatrix& m, Isa isa, const float* x, int64_t rows, float* y, int64_t ldy, int64_t row_begin,
          int64_t row_end);

}  // namespace qeval::kernels
