#pragma once
// Internal: helpers shared by the integer-activation paths (int8_activation.h).
#include <cstdint>
#include <vector>

#include "qeval/kernels/packed_matrix.h"

namespace qeval::kernels::detail {

// y = x_scale * sum_g s_g * (dot[g] - z_g * gsum[g]) for logical row r, in one fixed order of
// float operations (compiled without FMA), shared by all paths. An integral z_g is applied in
// int32 (exact); another (perturbed or fp16-adjusted asymmetric zero-points) in float.
float combine_groups(const PackedMatrix& m, int64_t r, const int32_t* dot, const int32_t* gsum, int64_t groups,
                     float x_scale);

// The AVX-512 VNNI path's own 4-bit layout ("wide"): 128-element chunks, each stored as 64 codes
// of the even elements, 64 of the odd ones (the low and high nibbles of 64 weight bytes, which
// unpack with one AND and one shift), followed for the whole row by 16 int32 per chunk: the
// sum of the 8 activation codes each 32-bit lane of vpdpbusd covers (for zero-points). Used when
// every lane's 8 elements lie in one group: one group per row, or groups of 32, 64 or a multiple
// of 128.
bool vnni_int4_wide(const PackedMatrix& m);
size_t vnni_int4_wide_bytes(int64_t cols);
void prepare_vnni_int4_wide(int64_t cols, const int8_t* codes, int8_t* prepared);

// The AVX-512 form of quantize_activation_row (same operations lane by lane: bit-identical).
float quantize_activation_row_avx512(const float* x, int64_t n, int bits, float clip, int8_t* codes);

// A per-thread buffer of one row's group results D_g (no allocation once grown).
inline int32_t* group_dots(int64_t groups) {
  thread_local std::vector<int32_t> buf;
  if (static_cast<int64_t>(buf.size()) < groups) buf.resize(static_cast<size_t>(groups));
  return buf.data();
}

}  // namespace qeval::kernels::detail
