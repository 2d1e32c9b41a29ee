#pragma once
// Integer-activation kernels: W8A8 / W4A8 GEMV with the activation row quantized per token.
//
// The activation row x (one token) is quantized dynamically and symmetrically with exactly the
// formula of quant/quantizer.h (per-token granularity, round to nearest even, no perturbation):
//   A = clip * max(|min(x, 0)|, max(x, 0))   (NaN ignored),   S = A / (2^(bits-1) - 1)   (1 when A = 0),
//   q = clamp(nearbyint(x / S), -(2^(bits-1) - 1), 2^(bits-1) - 1)   (NaN -> 0)
// so q + 2^(bits-1) is the code quant::ActivationQuantHooks computes and S * q its dequantized
// value, bit for bit. Quantizing an already fake-quantized row gives the same codes (its largest
// magnitude is fl(127 S), so the new scale is S or a neighbour of it, and every value is within a
// few ulps of an integer multiple of it), which is why installing the simulation hook as well is
// harmless (tests/quant/test_int8_activation.cpp checks both).
//
// The product with an Int8 / Int4 PackedMatrix (packed_matrix.h: w = s_g * (q_w - z_g)) is then
//   y_o = S * sum_g s_g * D_g,   D_g = sum_{i in g} q_x,i * q_w,i  -  z_g * sum_{i in g} q_x,i
// where D_g is an exact integer when z_g is (symmetric grids; asymmetric ones unless the
// zero-points were perturbed or fp16-adjusted): the dot products run in 32-bit integers (AVX-512
// VNNI vpdpbusd: unsigned weight codes times signed activation codes; AVX2: vpmaddubsw on 4-bit
// codes, whose pair sums of at most 2 * 15 * 127 cannot saturate int16, and vpmovzxbw +
// vpmaddwd for 8-bit codes, which cannot saturate either; scalar: plain integers), the
// activation code sums of every group are computed once per row, and |D_g| <= 255 * 127 *
// group length < 2^31 because a group longer than kMaxIntGroup is not supported. A fractional
// z_g is applied in float instead: float(dot_g) - z_g * float(sum_g q_x) (two more roundings of
// terms of size |dot_g| and |z_g sum_g q_x|). Only the final combination is float: D_g
// converted (exact below 2^24), times s_g, summed over the G groups of the row in order, times
// S. With u = 2^-24 and M = sum_i |S q_x,i * s_g(i) * (q_w,i - z_g(i))| each result lies within
// (G + 3) * u * M (+ 3 u S sum_g |s_g| (|dot_g| + |z_g sum_g q_x|) over fractional-z groups) of
// the exact product of the dequantized activation and weights; the simulated path
// (fake-quantized activation times dequantized weights in float) lies within (n / 8 + 64) * u * M
// of it (packed_matrix.h) or, through sgemm, within about n * u * M, so the two differ by at
// most the sum of their bounds. The integer paths (VNNI, AVX2, scalar) compute the same integers
// and then call one shared combination function (no FMA contraction), so their results are
// bit-identical — except the VNNI path for 4-bit rows with several groups (groups of 32, 64 or
// multiples of 128), which scales each 32-bit lane's exact 8-element sum into float lanes
// instead of forming per-group sums (no horizontal sum per group: 2-3x faster at g32/g128); its
// results lie within (n / 128 + 8) * u * M of the exact product (kernels_int_vnni.cpp), so it
// differs from the other paths by at most the sum of the two bounds.
//
// Model-level note: a different summation order than the simulated model's moves an occasional
// activation of the NEXT layer across a rounding boundary of its quantizer (one code step), so
// logits of a few tokens differ visibly while the rest agree to float precision; perplexity over
// a few thousand tokens agrees within 0.1% (tests/quant/test_int8_activation.cpp).
//
// Supported matrices: Int8 (any group size, per channel, per tensor) and Int4 (the SIMD paths
// need a group size that is a multiple of 32, or one group per row; other layouts run the
// scalar path), without outliers (CSR, LLM.int8() / SpQR: the caller falls back to the float
// kernel on the fake-quantized activation), with finite zero-points (|z| * 127 * group length
// within int32).
#include <cstddef>
#include <cstdint>

#include "qeval/kernels/packed_matrix.h"

namespace qeval::kernels {

enum class IntIsa : uint8_t { Scalar = 0, Avx2 = 1, Avx512Vnni = 2 };
const char* int_isa_name(IntIsa isa);  // "scalar", "avx2", "avx512-vnni"
bool int_isa_available(IntIsa isa);    // this CPU runs it (QEVAL_ISA caps it like best_isa())
IntIsa best_int_isa();

// Longest group whose integer dot product stays inside int32 (255 * 127 * 65536 < 2^31).
constexpr int64_t kMaxIntGroup = 65536;

// Quantizes one row of n activations as described above (bits 2..8, clip in (0, 1]): writes the
// signed codes (code - 2^(bits-1)) and returns S.
float quantize_activation_row(const float* x, int64_t n, int bits, float clip, int8_t* codes);

// Whether the integer GEMV applies to m (Int8 / Int4, no outliers, finite zero-points whose
// product with a group's code sum fits int32, groups of at most kMaxIntGroup).
bool int_gemv_supported(const PackedMatrix& m);
// The best path for m at most `limit` on this CPU (Int4 layouts without 32-aligned groups: scalar).
IntIsa usable_int_isa(const PackedMatrix& m, IntIsa limit);

// The activation codes as the chosen path reads them, plus the code sum of every weight group.
// Int8: natural order. Int4 SIMD: per 32-element chunk the 16 even-indexed codes, then the 16
// odd ones (the nibble order of 16 weight bytes). Padded with zero codes so that whole 64-byte
// loads stay inside the buffer. Sizes: int_activation_bytes(m) codes, int_group_count(m) sums.
size_t int_activation_bytes(const PackedMatrix& m);
int64_t int_group_count(const PackedMatrix& m);  // groups per row (1 for per channel / per tensor)
void prepare_int_activation(const PackedMatrix& m, IntIsa isa, const int8_t* codes, int8_t* prepared,
                            int32_t* group_sums);

// y[o - row_begin] = x_scale * sum_g s_g * D_g for output rows o in [row_begin, row_end).
void int_gemv(const PackedMatrix& m, IntIsa isa, const int8_t* prepared, const int32_t* group_sums, float x_scale,
              float* y, int64_t row_begin, int64_t row_end);

namespace detail {
// Per-path entry points (int8_activation.cpp dispatches; m is supported, prepared for that path).
void int_gemv_scalar(const PackedMatrix& m, const int8_t* xq, const int32_t* gsum, float xs, float* y, int64_t b, int64_t e);
void int_gemv_avx2(const PackedMatrix& m, const int8_t* xq, const int32_t* gsum, float xs, float* y, int64_t b, int64_t e);
void int_gemv_vnni(const PackedMatrix& m, const int8_t* xq, const int32_t* gsum, float xs, float* y, int64_t b, int64_t e);
}  // namespace detail

}  // namespace qeval::kernels
