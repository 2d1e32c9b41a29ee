// AVX-512 (F/BW/VL + F16C + FMA) packed kernels. See packed_matrix.h for the layouts and the
// exactness argument: every weight is formed with the dequantizer's own float operations.
// 4-bit codes index a 16-entry table of exact weights per group / block (vpermps uses the low
// 4 bits of each 32-bit index, so a zero-extended byte selects its low nibble directly and the
// byte shifted right by 4 its high nibble). Four output rows are processed together (eight
// independent accumulators) to keep the FMA pipes busy; the activation loads are shared.
#include <algorithm>
#include <cmath>

#include "qeval/kernels/isa_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "qeval/kernels/avx512_target.h"

namespace qeval::kernels::detail {
namespace {

QEVAL_AVX512_INLINE float half_scalar(const uint8_t* p) {
  uint16_t h;
  __builtin_memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

QEVAL_AVX512_INLINE __m512 iota16() {
  return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

QEVAL_AVX512_INLINE __m512i bytes16(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Weights stream from memory once per token: each row loop asks for the bytes two row blocks
// ahead (2R rows of this thread's range) into L2, so that the loads overlap the arithmetic; the
// hardware prefetcher alone falls behind. bench_kernels BM_DramGemv, 2 threads, against one block
// ahead into L1: F16 23-27 -> 35-37 GB/s; W8 21-24 -> 26-30, Q8_0 18-22 -> 25-33 (ggml blocks:
// one request per block, at its last byte, so that no line of a row is skipped).
template <int R>
QEVAL_AVX512_INLINE void prefetch_ahead(const uint8_t* p, size_t row_bytes) {
  _mm_prefetch(reinterpret_cast<const char*>(p + 2 * R * row_bytes), _MM_HINT_T1);
}

QEVAL_AVX512_INLINE __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// Exact weights of a ggml 4-bit block as a lookup table over the 16 codes.
QEVAL_AVX512_INLINE __m512 q4_lut(Format f, const uint8_t* blk) {
  const __m512 d = _mm512_set1_ps(half_scalar(blk));
  if (f == Format::Q4_0) return _mm512_mul_ps(_mm512_sub_ps(iota16(), _mm512_set1_ps(8.0f)), d);  // float(q - 8) * d
  return _mm512_add_ps(_mm512_mul_ps(iota16(), d), _mm512_set1_ps(half_scalar(blk + 2)));         // float(q) * d + m
}

QEVAL_AVX512_INLINE __m512 int_lut(const PackedMatrix& m, int64_t r, int64_t g) {
  return _mm512_mul_ps(_mm512_set1_ps(m.scale(r, g)), _mm512_sub_ps(iota16(), _mm512_set1_ps(m.zero(r, g))));
}

QEVAL_AVX512_INLINE __m512 int8_weights(const uint8_t* p, __m512 s, __m512 z) {
  return _mm512_mul_ps(s, _mm512_sub_ps(_mm512_cvtepi32_ps(bytes16(p)), z));
}
QEVAL_AVX512_INLINE __m512 int8_weights_masked(const uint8_t* p, __mmask16 k, __m512 s, __m512 z) {
  return _mm512_mul_ps(s, _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, p))), z));
}
QEVAL_AVX512_INLINE __m512 q8_weights(const uint8_t* p, __m512 d) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))), d);
}

// R output rows processed together: their row pointers and two zeroed accumulators each.
template <int R>
QEVAL_AVX512_INLINE void start_rows(const PackedMatrix& m, int64_t r0, const uint8_t** row, __m512 (*acc)[2]) {
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
    row[r] = m.row(r0 + r);
    acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  }
}
QEVAL_AVX512_INLINE float row_total(const __m512* acc) { return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1])); }

template <int R>
QEVAL_AVX512 void rows_f16(const PackedMatrix& m, int64_t r0, const float* x, float* y) {
  const int64_t n = m.cols;
  const uint8_t* row[R];
  __m512 acc[R][2];
  start_rows<R>(m, r0, row, acc);
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      prefetch_ahead<R>(row[r] + 2 * c, m.row_bytes);
      acc[r][0] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[r] + 2 * c))), x0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[r] + 2 * c + 32))), x1, acc[r][1]);
    }
  }
  for (; c < n; c += 16) {
    const __mmask16 k = tail_mask(std::min<int64_t>(16, n - c));
    const __m512 xv = _mm512_maskz_loadu_ps(k, x + c);
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r)
      acc[r][0] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, row[r] + 2 * c)), xv, acc[r][0]);
  }
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] = row_total(acc[r]);
}

template <int R>
QEVAL_AVX512 void rows_q8_0(const PackedMatrix& m, int64_t r0, const float* x, float* y) {
  const uint8_t* row[R];
  __m512 acc[R][2];
  start_rows<R>(m, r0, row, acc);
  for (int64_t b = 0; b < m.cols / 32; ++b) {
    const __m512 x0 = _mm512_loadu_ps(x + 32 * b), x1 = _mm512_loadu_ps(x + 32 * b + 16);
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      const uint8_t* blk = row[r] + 34 * b;
      prefetch_ahead<R>(blk + 33, m.row_bytes);
      const __m512 d = _mm512_set1_ps(half_scalar(blk));
      acc[r][0] = _mm512_fmadd_ps(q8_weights(blk + 2, d), x0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(q8_weights(blk + 18, d), x1, acc[r][1]);
    }
  }
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] = row_total(acc[r]);
}

template <int R>
QEVAL_AVX512 void rows_q4(const PackedMatrix& m, int64_t r0, const float* x, float* y) {
  const size_t bb = m.format == Format::Q4_0 ? 18 : 20;
  const size_t qoff = bb - 16;
  const uint8_t* row[R];
  __m512 acc[R][2];
  start_rows<R>(m, r0, row, acc);
  for (int64_t b = 0; b < m.cols / 32; ++b) {
    const __m512 x0 = _mm512_loadu_ps(x + 32 * b), x1 = _mm512_loadu_ps(x + 32 * b + 16);
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      const uint8_t* blk = row[r] + bb * static_cast<size_t>(b);
      prefetch_ahead<R>(blk + bb - 1, m.row_bytes);
      const __m512 lut = q4_lut(m.format, blk);
      const __m512i v = bytes16(blk + qoff);
      acc[r][0] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, lut), x0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut), x1, acc[r][1]);
    }
  }
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] = row_total(acc[r]);
}

// Int8: the group's scale is applied once per group, not per weight: each group accumulates
// x * float(q - z) (the dequantizer's own first operation, so the same rounding), then the
// group sums are scaled into the row total. One multiply fewer per 16 weights than forming
// s * (q - z) first; the extra rounding per group is within the bound of packed_matrix.h.
template <int R>
QEVAL_AVX512 void rows_int8(const PackedMatrix& m, int64_t r0, const float* x, float* y) {
  const int64_t n = m.cols, gs = m.group_size;
  const int64_t ng = m.scale_row_stride ? m.scale_row_stride : 1;
  const uint8_t* row[R];
  __m512 acc[R][2];
  start_rows<R>(m, r0, row, acc);
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t c0 = g * gs, c1 = std::min(n, c0 + gs);
    __m512 z[R], gacc[R][2];
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      z[r] = _mm512_set1_ps(m.zero(r0 + r, g));
      gacc[r][0] = gacc[r][1] = _mm512_setzero_ps();
    }
    int64_t c = c0;
    for (; c + 32 <= c1; c += 32) {
      const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
      QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
        if ((c & 63) == 0) prefetch_ahead<R>(row[r] + c, m.row_bytes);
        gacc[r][0] = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(bytes16(row[r] + c)), z[r]), x0, gacc[r][0]);
        gacc[r][1] = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(bytes16(row[r] + c + 16)), z[r]), x1, gacc[r][1]);
      }
    }
    for (; c < c1; c += 16) {
      const __mmask16 k = tail_mask(std::min<int64_t>(16, c1 - c));
      const __m512 xv = _mm512_maskz_loadu_ps(k, x + c);
      QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
        const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, row[r] + c)));
        gacc[r][0] = _mm512_fmadd_ps(_mm512_maskz_sub_ps(k, q, z[r]), xv, gacc[r][0]);
      }
    }
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      const __m512 s = _mm512_set1_ps(m.scale(r0 + r, g));
      acc[r][0] = _mm512_fmadd_ps(s, gacc[r][0], acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(s, gacc[r][1], acc[r][1]);
    }
  }
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] = row_total(acc[r]);
}

// Nibble K of every 32-bit word of a 128-code chunk, for R rows (immediate shift counts).
template <int R, int K>
QEVAL_AVX512_INLINE void nibble_step(const __m512i* v, const __m512* lut, const float* xc, __m512 (*acc)[2]) {
  const __m512 xk = _mm512_loadu_ps(xc + 16 * K);
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
    const __m512i idx = K == 0 ? v[r] : _mm512_srli_epi32(v[r], 4 * K);
    acc[r][K & 1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, lut[r]), xk, acc[r][K & 1]);
  }
}

// One 32-code chunk of R rows (16 bytes each; xp in the even-then-odd order), each row with its
// own table.
template <int R>
QEVAL_AVX512_INLINE void chunk32_step(const PackedMatrix& m, const uint8_t* const* row, int64_t c, const __m512* lut,
                                      const float* xp, __m512 (*acc)[2]) {
  const __m512 xe = _mm512_loadu_ps(xp + c), xo = _mm512_loadu_ps(xp + c + 16);
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
    if ((c & 127) == 0) prefetch_ahead<R>(row[r] + c / 2, m.row_bytes);  // a line holds 128 codes
    const __m512i v = bytes16(row[r] + c / 2);
    acc[r][0] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, lut[r]), xe, acc[r][0]);
    acc[r][1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut[r]), xo, acc[r][1]);
  }
}

// Columns [c0, c1) one by one. An explicit FMA: whether "+= x * w" is contracted may not depend
// on how the row loop is unrolled (a row's result must not depend on the rows computed with it).
template <int R>
QEVAL_AVX512_INLINE void int4_tail(const PackedMatrix& m, int64_t r0, const float* x, int64_t c0, int64_t c1, float* tail) {
  for (int64_t c = c0; c < c1; ++c)
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) tail[r] = std::fma(x[c], weight_at(m, r0 + r, c), tail[r]);
}

// xp: the activation in the nibble order of prepare_activation.
template <int R>
QEVAL_AVX512 void rows_int4(const PackedMatrix& m, int64_t r0, const float* x, const float* xp, float* y) {
  const int64_t n = m.cols, gs = m.group_size;
  const int64_t ng = m.scale_row_stride ? m.scale_row_stride : 1;
  const uint8_t* row[R];
  __m512 acc[R][2];
  float tail[R] = {};
  start_rows<R>(m, r0, row, acc);
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t c0 = g * gs, c1 = std::min(n, c0 + gs);
    const int64_t c128 = c0 + (c1 - c0) / 128 * 128, cf = c128 + (c1 - c128) / 32 * 32;
    __m512 lut[R];
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) lut[r] = int_lut(m, r0 + r, g);
    // 128 codes = one 64-byte load; nibble k of every 32-bit word is selected by shifting the
    // word right by 4k (vpermps reads only the low 4 bits of each index).
    for (int64_t c = c0; c < c128; c += 128) {
      __m512i v[R];
      QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
        prefetch_ahead<R>(row[r] + c / 2, m.row_bytes);
        v[r] = _mm512_loadu_si512(row[r] + c / 2);
      }
      nibble_step<R, 0>(v, lut, xp + c, acc);
      nibble_step<R, 1>(v, lut, xp + c, acc);
      nibble_step<R, 2>(v, lut, xp + c, acc);
      nibble_step<R, 3>(v, lut, xp + c, acc);
      nibble_step<R, 4>(v, lut, xp + c, acc);
      nibble_step<R, 5>(v, lut, xp + c, acc);
      nibble_step<R, 6>(v, lut, xp + c, acc);
      nibble_step<R, 7>(v, lut, xp + c, acc);
    }
    for (int64_t c = c128; c < cf; c += 32) chunk32_step<R>(m, row, c, lut, xp, acc);
    int4_tail<R>(m, r0, x, cf, c1, tail);
  }
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] = row_total(acc[r]) + tail[r];
}

// Lane j of the result = v[lane_group[j]] (the chunk's per-group values spread over their lanes).
QEVAL_AVX512_INLINE __m512 per_lane(__m512i lane_group, __mmask8 groups, const float* v) {
  return _mm512_permutexvar_ps(lane_group, _mm512_castps128_ps512(_mm_maskz_loadu_ps(groups, v)));
}

// Int4 in groups of 32 or 64 (int4_small_groups): a 128-code chunk spans 4 or 2 groups, and
// 32-bit word j of it (codes 8j .. 8j + 7) lies in group (c + 8j) / group_size, so lane j's
// products belong to one group. The chunk is multiplied with one table of float(q) - z for all
// lanes (z the constant 8 when symmetric, subtracted per lane otherwise), and each lane's sum
// of 4 products is scaled by its group's scale: no table per group of 32, the scale applied
// once per 4 products, as the Int8 kernel applies it once per group (packed_matrix.h's bound
// covers the extra rounding). The columns after the last whole chunk take the per-group path.
template <int R, bool Asym>
QEVAL_AVX512 void rows_int4_small_groups(const PackedMatrix& m, int64_t r0, const float* x, const float* xp, float* y) {
  const int64_t n = m.cols, gs = m.group_size, c128 = n / 128 * 128, cf = n / 32 * 32;
  // Lane j -> the chunk's group of word j; the first 128 / gs entries of scales / zeros are read.
  const __m512i lane_group = gs == 32 ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)
                                      : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __mmask8 groups = gs == 32 ? 0x0F : 0x03;
  const __m512 table = Asym ? iota16() : _mm512_sub_ps(iota16(), _mm512_set1_ps(m.zero(r0, 0)));
  const uint8_t* row[R];
  __m512 acc[R][2];
  float tail[R] = {};
  start_rows<R>(m, r0, row, acc);
  for (int64_t c = 0; c < c128; c += 128) {
    __m512i v[R];
    __m512 s[R], z[R], t[R][2];
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      prefetch_ahead<R>(row[r] + c / 2, m.row_bytes);
      v[r] = _mm512_loadu_si512(row[r] + c / 2);
      const int64_t g = (r0 + r) * m.scale_row_stride + c / gs;
      s[r] = per_lane(lane_group, groups, m.scales + g);
      z[r] = Asym ? per_lane(lane_group, groups, m.zeros + g) : _mm512_setzero_ps();
    }
    _Pragma("GCC unroll 8") for (int k = 0; k < 8; ++k) {
      const __m512 xk = _mm512_loadu_ps(xp + c + 16 * k);
      QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
        __m512 w = _mm512_permutexvar_ps(k == 0 ? v[r] : _mm512_srli_epi32(v[r], 4 * k), table);
        if (Asym) w = _mm512_sub_ps(w, z[r]);
        t[r][k & 1] = k < 2 ? _mm512_mul_ps(w, xk) : _mm512_fmadd_ps(w, xk, t[r][k & 1]);
      }
    }
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm512_fmadd_ps(s[r], t[r][0], acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(s[r], t[r][1], acc[r][1]);
    }
  }
  // No 32-chunk straddles two groups (groups are multiples of 32, usable_isa).
  for (int64_t c = c128; c < cf; c += 32) {
    __m512 lut[R];
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) lut[r] = int_lut(m, r0 + r, c / gs);
    chunk32_step<R>(m, row, c, lut, xp, acc);
  }
  int4_tail<R>(m, r0, x, cf, n, tail);
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] = row_total(acc[r]) + tail[r];
}

template <int R>
QEVAL_AVX512 void rows_any(const PackedMatrix& m, int64_t r0, const float* x, const float* xp, float* y) {
  switch (m.format) {
    case Format::F16: rows_f16<R>(m, r0, x, y); break;
    case Format::Q8_0: rows_q8_0<R>(m, r0, x, y); break;
    case Format::Q4_0:
    case Format::Q4_1: rows_q4<R>(m, r0, x, y); break;
    case Format::Int8: rows_int8<R>(m, r0, x, y); break;
    case Format::Int4:
      if (!int4_small_groups(m)) rows_int4<R>(m, r0, x, xp, y);
      else if (m.zeros) rows_int4_small_groups<R, true>(m, r0, x, xp, y);
      else rows_int4_small_groups<R, false>(m, r0, x, xp, y);
      break;
  }
  if (m.outlier_row_ptr)
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] += outlier_correction(m, r0 + r, x);
}

}  // namespace

QEVAL_AVX512 void gemv_avx512(const PackedMatrix& m, const float* x, const float* xp, float* y, int64_t b, int64_t e) {
  int64_t r = b;
  for (; r + 4 <= e; r += 4) rows_any<4>(m, r, x, xp, y + (r - b));
  for (; r + 2 <= e; r += 2) rows_any<2>(m, r, x, xp, y + (r - b));
  if (r < e) rows_any<1>(m, r, x, xp, y + (r - b));
}

QEVAL_AVX512 void dequantize_avx512(const PackedMatrix& m, int64_t b, int64_t e, ColumnSpan span, float* out, int64_t ld) {
  const int64_t cb = span.begin, ce = span.end;
  // Interleave even (lo) and odd (hi) elements of an Int4 32-chunk back into column order.
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t r = b; r < e; ++r) {
    const uint8_t* row = m.row(r);
    float* o = out + (r - b) * ld;  // column c at o[c - cb]
    switch (m.format) {
      case Format::F16: {
        int64_t c = cb;
        for (; c + 16 <= ce; c += 16)
          _mm512_storeu_ps(o + (c - cb), _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * c))));
        if (c < ce) {
          const __mmask16 k = tail_mask(ce - c);
          _mm512_mask_storeu_ps(o + (c - cb), k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, row + 2 * c)));
        }
        break;
      }
      case Format::Q8_0:
        for (int64_t blk = cb / 32; blk < ce / 32; ++blk) {
          const uint8_t* p = row + 34 * blk;
          const __m512 d = _mm512_set1_ps(half_scalar(p));
          _mm512_storeu_ps(o + (32 * blk - cb), q8_weights(p + 2, d));
          _mm512_storeu_ps(o + (32 * blk - cb) + 16, q8_weights(p + 18, d));
        }
        break;
      case Format::Q4_0:
      case Format::Q4_1: {
        const size_t bb = m.format == Format::Q4_0 ? 18 : 20;
        for (int64_t blk = cb / 32; blk < ce / 32; ++blk) {
          const uint8_t* p = row + bb * static_cast<size_t>(blk);
          const __m512 lut = q4_lut(m.format, p);
          const __m512i v = bytes16(p + bb - 16);
          _mm512_storeu_ps(o + (32 * blk - cb), _mm512_permutexvar_ps(v, lut));
          _mm512_storeu_ps(o + (32 * blk - cb) + 16, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut));
        }
        break;
      }
      case Format::Int8:
        for (int64_t g = cb / m.group_size; g * m.group_size < ce; ++g) {
          const int64_t c0 = std::max(cb, g * m.group_size), c1 = std::min(ce, (g + 1) * m.group_size);
          const __m512 s = _mm512_set1_ps(m.scale(r, g)), z = _mm512_set1_ps(m.zero(r, g));
          int64_t c = c0;
          for (; c + 16 <= c1; c += 16) _mm512_storeu_ps(o + (c - cb), int8_weights(row + c, s, z));
          if (c < c1) {
            const __mmask16 k = tail_mask(c1 - c);
            _mm512_mask_storeu_ps(o + (c - cb), k, int8_weights_masked(row + c, k, s, z));
          }
        }
        break;
      case Format::Int4: {
        // 32-element chunks from cb, a multiple of 32; groups are multiples of 32 (usable_isa), so
        // no chunk straddles two groups and only a short last group leaves a scalar tail. The
        // table is rebuilt where a group starts (per chunk for groups of 32: no inner loop).
        int64_t c = cb, g = cb / m.group_size, group_end = (g + 1) * m.group_size;
        __m512 lut = int_lut(m, r, g);
        for (; c + 32 <= ce; c += 32) {
          if (c >= group_end) {
            g = c / m.group_size;
            group_end = (g + 1) * m.group_size;
            lut = int_lut(m, r, g);
          }
          const __m512i v = bytes16(row + c / 2);
          const __m512 ev = _mm512_permutexvar_ps(v, lut), od = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut);
          _mm512_storeu_ps(o + (c - cb), _mm512_permutex2var_ps(ev, lo_idx, od));
          _mm512_storeu_ps(o + (c - cb) + 16, _mm512_permutex2var_ps(ev, hi_idx, od));
        }
        for (; c < ce; ++c) o[c - cb] = weight_at(m, r, c);
        break;
      }
    }
    if (cb == 0 && ce == m.cols) apply_outliers(m, r, o);
  }
}

}  // namespace qeval::kernels::detail

#else  // not x86-64: never dispatched (isa_available is false)

namespace qeval::kernels::detail {
void gemv_avx512(const PackedMatrix& m, const float* x, const float*, float* y, int64_t b, int64_t e) {
  gemv_scalar(m, x, y, b, e);
}
void dequantize_avx512(const PackedMatrix& m, int64_t b, int64_t e, ColumnSpan, float* out, int64_t) {
  dequantize_scalar(m, b, e, out);
}
}  // namespace qeval::kernels::detail

#endif
