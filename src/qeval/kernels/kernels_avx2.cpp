// AVX2 (+FMA, F16C) packed kernels: eight lanes. The GEMV works on four output rows at a time
// (the activation loads shared, one accumulator chain per row) and asks for the weights two row
// blocks ahead, as the AVX-512 kernels do. Weights are formed with the dequantizer's float
// operations (see packed_matrix.h); 4-bit codes are converted to float (AVX2 has no 16-entry
// float permute). With 16 vector registers and one FMA per 8 weights against several operations
// to form them, this machine kind is compute bound: the integer formats (Int8, Int4, Q8_0, Q4_0)
// multiply float(q) (Q4_0: float(q - 8)) by x and apply the group's or block's scale, and Int's
// zero-point, once per partial sum (packed_matrix.h's bound covers it). Tails shorter than a
// vector use the exact scalar weight.
#include <algorithm>
#include <cmath>

#include "qeval/kernels/isa_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "qeval/kernels/unroll_rows.h"

#define QEVAL_AVX2 __attribute__((target("avx2,fma,f16c")))
#define QEVAL_AVX2_INLINE inline __attribute__((always_inline, target("avx2,fma,f16c")))

namespace qeval::kernels::detail {
namespace {

QEVAL_AVX2_INLINE float half_scalar(const uint8_t* p) {
  uint16_t h;
  __builtin_memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

QEVAL_AVX2_INLINE __m256i bytes8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

QEVAL_AVX2_INLINE float hsum(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// 8 weights of a ggml 4-bit block from 8 code bytes: low nibbles (hi = false) or high ones.
QEVAL_AVX2_INLINE __m256 q4_weights(Format f, __m256i v, bool hi, __m256 d, __m256 mn) {
  const __m256i q = hi ? _mm256_srli_epi32(v, 4) : _mm256_and_si256(v, _mm256_set1_epi32(0x0F));
  if (f == Format::Q4_0) return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(8))), d);
  return _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(q), d), mn);
}

QEVAL_AVX2_INLINE __m256 int_weights(__m256i q, __m256 s, __m256 z) {
  return _mm256_mul_ps(s, _mm256_sub_ps(_mm256_cvtepi32_ps(q), z));
}

// float(q) of 8 signed bytes (Q8_0 codes).
QEVAL_AVX2_INLINE __m256 signed8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// Row r's exact weights into o[0, cols) (outliers not applied).
QEVAL_AVX2_INLINE void dequantize_row(const PackedMatrix& m, int64_t r, float* o) {
  const uint8_t* row = m.row(r);
  const int64_t n = m.cols;
  int64_t c = 0;  // the columns before c are written
  switch (m.format) {
    case Format::F16:
      for (; c + 8 <= n; c += 8) _mm256_storeu_ps(o + c, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c))));
      break;
    case Format::Q8_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* p = row + 34 * b;
        const __m256 d = _mm256_set1_ps(half_scalar(p));
        for (int k = 0; k < 4; ++k)
          _mm256_storeu_ps(o + 32 * b + 8 * k, _mm256_mul_ps(signed8(p + 2 + 8 * k), d));
      }
      c = n;
      break;
    case Format::Q4_0:
    case Format::Q4_1: {
      const size_t bb = m.format == Format::Q4_0 ? 18 : 20;
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* p = row + bb * static_cast<size_t>(b);
        const __m256 d = _mm256_set1_ps(half_scalar(p));
        const __m256 mn = _mm256_set1_ps(m.format == Format::Q4_1 ? half_scalar(p + 2) : 0.0f);
        for (int k = 0; k < 2; ++k) {
          const __m256i v = bytes8(p + bb - 16 + 8 * k);
          _mm256_storeu_ps(o + 32 * b + 8 * k, q4_weights(m.format, v, false, d, mn));
          _mm256_storeu_ps(o + 32 * b + 16 + 8 * k, q4_weights(m.format, v, true, d, mn));
        }
      }
      c = n;
      break;
    }
    case Format::Int8:
    case Format::Int4: {
      const int64_t ng = m.scale_row_stride ? m.scale_row_stride : 1;
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t c0 = g * m.group_size, c1 = std::min(n, c0 + m.group_size);
        const __m256 s = _mm256_set1_ps(m.scale(r, g)), z = _mm256_set1_ps(m.zero(r, g));
        c = c0;
        if (m.format == Format::Int4) {
          // 8 bytes hold elements c .. c + 15, element 2j in byte j's low nibble: the low and high
          // weights are interleaved back into column order.
          for (; c + 16 <= c1; c += 16) {
            const __m256i v = bytes8(row + c / 2);
            const __m256 lo = int_weights(_mm256_and_si256(v, _mm256_set1_epi32(0x0F)), s, z);
            const __m256 hi = int_weights(_mm256_srli_epi32(v, 4), s, z);
            const __m256 a = _mm256_unpacklo_ps(lo, hi), b = _mm256_unpackhi_ps(lo, hi);
            _mm256_storeu_ps(o + c, _mm256_permute2f128_ps(a, b, 0x20));
            _mm256_storeu_ps(o + c + 8, _mm256_permute2f128_ps(a, b, 0x31));
          }
        } else {
          for (; c + 8 <= c1; c += 8) _mm256_storeu_ps(o + c, int_weights(bytes8(row + c), s, z));
        }
        for (; c < c1; ++c) o[c] = weight_at(m, r, c);
      }
      break;
    }
  }
  for (; c < n; ++c) o[c] = weight_at(m, r, c);
}

// Weights stream from memory once per token: each row asks for the bytes two row blocks ahead
// (2R rows) into L2, so that the loads overlap the arithmetic.
template <int R>
QEVAL_AVX2_INLINE void prefetch_ahead(const uint8_t* p, size_t row_bytes) {
  _mm_prefetch(reinterpret_cast<const char*>(p + 2 * R * row_bytes), _MM_HINT_T1);
}

QEVAL_AVX2_INLINE __m256 load8(const float* p) { return _mm256_loadu_ps(p); }

// Shared frame of the row kernels: R row pointers, one accumulator and one scalar tail per row,
// y[r] = lane sum + tail.
template <int R>
struct Rows {
  const uint8_t* row[R];
  __m256 acc[R];
  float tail[R];
  QEVAL_AVX2_INLINE Rows(const PackedMatrix& m, int64_t r0) {
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      row[r] = m.row(r0 + r);
      acc[r] = _mm256_setzero_ps();
      tail[r] = 0.0f;
    }
  }
  // Columns [c0, c1) one by one with the exact scalar weight. An explicit FMA: whether
  // "+= x * w" is contracted may not depend on how the row loop is unrolled.
  QEVAL_AVX2_INLINE void scalar_columns(const PackedMatrix& m, int64_t r0, const float* x, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) tail[r] = std::fma(x[c], weight_at(m, r0 + r, c), tail[r]);
  }
  QEVAL_AVX2_INLINE void finish(float* y) {
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]) + tail[r];
  }
};

template <int R>
QEVAL_AVX2 void rows_f16(const PackedMatrix& m, int64_t r0, const float* x, float* y) {
  Rows<R> k(m, r0);
  const int64_t n = m.cols, n16 = n / 16 * 16;
  __m256 acc1[R];
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) acc1[r] = _mm256_setzero_ps();
  for (int64_t c = 0; c < n16; c += 16) {
    const __m256 x0 = load8(x + c), x1 = load8(x + c + 8);
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      const uint8_t* p = k.row[r] + 2 * c;
      if ((c & 31) == 0) prefetch_ahead<R>(p, m.row_bytes);  // a line holds 32 halves
      k.acc[r] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), x0, k.acc[r]);
      acc1[r] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16))), x1, acc1[r]);
    }
  }
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) k.acc[r] = _mm256_add_ps(k.acc[r], acc1[r]);
  k.scalar_columns(m, r0, x, n16, n);
  k.finish(y);
}

// ggml blocks of 32: the block's products with float(q) (Q8_0) or float(q - 8) (Q4_0) are summed,
// then scaled by d. Q4_1 (w = float(q) * d + m, an affine weight) forms every weight.
template <int R>
QEVAL_AVX2 void rows_q8_0(const PackedMatrix& m, int64_t r0, const float* x, float* y) {
  Rows<R> k(m, r0);
  for (int64_t b = 0; b < m.cols / 32; ++b) {
    const float* xb = x + 32 * b;
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      const uint8_t* blk = k.row[r] + 34 * b;
      prefetch_ahead<R>(blk + 33, m.row_bytes);
      __m256 t = _mm256_mul_ps(signed8(blk + 2), load8(xb));
      t = _mm256_fmadd_ps(signed8(blk + 10), load8(xb + 8), t);
      t = _mm256_fmadd_ps(signed8(blk + 18), load8(xb + 16), t);
      t = _mm256_fmadd_ps(signed8(blk + 26), load8(xb + 24), t);
      k.acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(half_scalar(blk)), t, k.acc[r]);
    }
  }
  k.finish(y);
}

template <int R>
QEVAL_AVX2 void rows_q4(const PackedMatrix& m, int64_t r0, const float* x, float* y) {
  const bool q4_1 = m.format == Format::Q4_1;
  const size_t bb = q4_1 ? 20 : 18;
  const __m256i low = _mm256_set1_epi32(0x0F), eight = _mm256_set1_epi32(8);
  Rows<R> k(m, r0);
  for (int64_t b = 0; b < m.cols / 32; ++b) {
    const float* xb = x + 32 * b;
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      const uint8_t* blk = k.row[r] + bb * static_cast<size_t>(b);
      prefetch_ahead<R>(blk + bb - 1, m.row_bytes);
      const __m256i v0 = bytes8(blk + bb - 16), v1 = bytes8(blk + bb - 8);
      // Elements 0-7 and 8-15 are the low nibbles of bytes 0-7 and 8-15, 16-31 the high ones.
      const __m256i q[4] = {_mm256_and_si256(v0, low), _mm256_and_si256(v1, low), _mm256_srli_epi32(v0, 4),
                            _mm256_srli_epi32(v1, 4)};
      const __m256 d = _mm256_set1_ps(half_scalar(blk));
      if (q4_1) {
        const __m256 mn = _mm256_set1_ps(half_scalar(blk + 2));
        for (int j = 0; j < 4; ++j)
          k.acc[r] = _mm256_fmadd_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(q[j]), d), mn), load8(xb + 8 * j), k.acc[r]);
      } else {
        __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q[0], eight)), load8(xb));
        for (int j = 1; j < 4; ++j)
          t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q[j], eight)), load8(xb + 8 * j), t);
        k.acc[r] = _mm256_fmadd_ps(d, t, k.acc[r]);
      }
    }
  }
  k.finish(y);
}

// Int8 / Int4: per group, t = sum x * float(q) over the group's whole 8- (Int8) or 32-code
// (Int4) chunks and X = sum x lane by lane over the same elements (shared by the R rows), then
// acc += s * (t - z * X): float(q) - z is not formed per weight (bench_kernels BM_Gemv one
// thread, against subtracting z per weight: w4g128 958 -> 806 us, w8 755 -> 634). The
// error bound then grows by the zero-point's share (packed_matrix.h). The group's remaining
// columns take the scalar path. Int4 reads xp, the activation with every 32-chunk in
// even-then-odd order (prepare_activation): byte j of a chunk holds elements 2j (low nibble)
// and 2j + 1.
template <int R, bool Four>
QEVAL_AVX2 void rows_int(const PackedMatrix& m, int64_t r0, const float* x, const float* xp, float* y) {
  const int64_t n = m.cols, gs = m.group_size, ng = m.scale_row_stride ? m.scale_row_stride : 1;
  const int64_t step = Four ? 32 : 8;
  const __m256i low = _mm256_set1_epi32(0x0F);
  Rows<R> k(m, r0);
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t c0 = g * gs, c1 = std::min(n, c0 + gs), cf = c0 + (c1 - c0) / step * step;
    __m256 t[R], xsum = _mm256_setzero_ps();
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) t[r] = _mm256_setzero_ps();
    for (int64_t c = c0; c < cf; c += step) {
      if constexpr (Four) {
        const __m256 x0 = load8(xp + c), x1 = load8(xp + c + 8), x2 = load8(xp + c + 16), x3 = load8(xp + c + 24);
        xsum = _mm256_add_ps(xsum, _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)));
        QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
          const uint8_t* p = k.row[r] + c / 2;
          if ((c & 127) == 0) prefetch_ahead<R>(p, m.row_bytes);  // a line holds 128 codes
          const __m256i v0 = bytes8(p), v1 = bytes8(p + 8);
          t[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, low)), x0, t[r]);
          t[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, low)), x1, t[r]);
          t[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), x2, t[r]);
          t[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), x3, t[r]);
        }
      } else {
        const __m256 x0 = load8(x + c);
        xsum = _mm256_add_ps(xsum, x0);
        QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
          const uint8_t* p = k.row[r] + c;
          if ((c & 63) == 0) prefetch_ahead<R>(p, m.row_bytes);
          t[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(bytes8(p)), x0, t[r]);
        }
      }
    }
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      const __m256 tz = _mm256_fnmadd_ps(_mm256_set1_ps(m.zero(r0 + r, g)), xsum, t[r]);
      k.acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(m.scale(r0 + r, g)), tz, k.acc[r]);
    }
    k.scalar_columns(m, r0, x, cf, c1);
  }
  k.finish(y);
}

template <int R>
QEVAL_AVX2 void rows_any(const PackedMatrix& m, int64_t r0, const float* x, const float* xp, float* y) {
  switch (m.format) {
    case Format::F16: rows_f16<R>(m, r0, x, y); break;
    case Format::Q8_0: rows_q8_0<R>(m, r0, x, y); break;
    case Format::Q4_0:
    case Format::Q4_1: rows_q4<R>(m, r0, x, y); break;
    case Format::Int8: rows_int<R, false>(m, r0, x, xp, y); break;
    case Format::Int4: rows_int<R, true>(m, r0, x, xp, y); break;
  }
  if (m.outlier_row_ptr)
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] += outlier_correction(m, r0 + r, x);
}

}  // namespace

QEVAL_AVX2 void gemv_avx2(const PackedMatrix& m, const float* x, const float* xp, float* y, int64_t b, int64_t e) {
  int64_t r = b;
  for (; r + 4 <= e; r += 4) rows_any<4>(m, r, x, xp, y + (r - b));
  for (; r + 2 <= e; r += 2) rows_any<2>(m, r, x, xp, y + (r - b));
  if (r < e) rows_any<1>(m, r, x, xp, y + (r - b));
}

QEVAL_AVX2 void dequantize_avx2(const PackedMatrix& m, int64_t b, int64_t e, float* out) {
  for (int64_t r = b; r < e; ++r) {
    float* o = out + (r - b) * m.cols;
    dequantize_row(m, r, o);
    apply_outliers(m, r, o);
  }
}

}  // namespace qeval::kernels::detail

#else  // not x86-64: never dispatched (isa_available is false)

namespace qeval::kernels::detail {
void gemv_avx2(const PackedMatrix& m, const float* x, const float*, float* y, int64_t b, int64_t e) {
  gemv_scalar(m, x, y, b, e);
}
void dequantize_avx2(const PackedMatrix& m, int64_t b, int64_t e, float* out) { dequantize_scalar(m, b, e, out); }
}  // namespace qeval::kernels::detail

#endif
