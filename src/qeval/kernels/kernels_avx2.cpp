// AVX2 (+FMA, F16C) packed kernels: eight lanes, one output row at a time with two
// accumulators. Weights are formed with the dequantizer's float operations (see
// packed_matrix.h); 4-bit codes are converted to float and scaled (AVX2 has no 16-entry float
// permute). Tails shorter than a vector use the exact scalar weight.
#include <algorithm>

#include "qeval/kernels/isa_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define QEVAL_AVX2 __attribute__((target("avx2,fma,f16c")))
#define QEVAL_AVX2_INLINE inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define QEVAL_AVX2_LAMBDA __attribute__((always_inline, target("avx2,fma,f16c")))

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

// Calls emit(col, weights8) for every full 8-column chunk of logical row r (Int4: `col` is the
// index into the prepared activation, whose chunks hold even then odd elements) and returns
// the first column not covered per group via emit_tail(col) for the rest.
template <typename Emit, typename Tail>
QEVAL_AVX2_INLINE void walk_row(const PackedMatrix& m, int64_t r, Emit&& emit, Tail&& tail) {
  const uint8_t* row = m.row(r);
  const int64_t n = m.cols;
  switch (m.format) {
    case Format::F16: {
      int64_t c = 0;
      for (; c + 8 <= n; c += 8) emit(c, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c))));
      for (; c < n; ++c) tail(c);
      break;
    }
    case Format::Q8_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* p = row + 34 * b;
        const __m256 d = _mm256_set1_ps(half_scalar(p));
        for (int k = 0; k < 4; ++k)
          emit(32 * b + 8 * k,
               _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 2 + 8 * k)))), d));
      }
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
          emit(32 * b + 8 * k, q4_weights(m.format, v, false, d, mn));
          emit(32 * b + 16 + 8 * k, q4_weights(m.format, v, true, d, mn));
        }
      }
      break;
    }
    case Format::Int8:
    case Format::Int4: {
      const int64_t ng = m.scale_row_stride ? m.scale_row_stride : 1;
      const bool four = m.format == Format::Int4;
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t c0 = g * m.group_size, c1 = std::min(n, c0 + m.group_size);
        const __m256 s = _mm256_set1_ps(m.scale(r, g)), z = _mm256_set1_ps(m.zero(r, g));
        int64_t c = c0;
        if (four) {
          for (; c + 32 <= c1; c += 32)
            for (int k = 0; k < 2; ++k) {
              const __m256i v = bytes8(row + c / 2 + 8 * k);
              emit(c + 8 * k, int_weights(_mm256_and_si256(v, _mm256_set1_epi32(0x0F)), s, z));
              emit(c + 16 + 8 * k, int_weights(_mm256_srli_epi32(v, 4), s, z));
            }
        } else {
          for (; c + 8 <= c1; c += 8) emit(c, int_weights(bytes8(row + c), s, z));
        }
        for (; c < c1; ++c) tail(c);
      }
      break;
    }
  }
}

}  // namespace

QEVAL_AVX2 void gemv_avx2(const PackedMatrix& m, const float* x, const float* xp, float* y, int64_t b, int64_t e) {
  const float* xv = m.format == Format::Int4 ? xp : x;
  for (int64_t r = b; r < e; ++r) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    bool odd = false;
    float t = 0.0f;
    walk_row(
        m, r,
        [&](int64_t c, __m256 w) QEVAL_AVX2_LAMBDA {
          if (odd) acc1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(xv + c), acc1);
          else acc0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(xv + c), acc0);
          odd = !odd;
        },
        [&](int64_t c) { t += x[c] * weight_at(m, r, c); });
    y[r - b] = hsum(_mm256_add_ps(acc0, acc1)) + t + outlier_correction(m, r, x);
  }
}

QEVAL_AVX2 void dequantize_avx2(const PackedMatrix& m, int64_t b, int64_t e, float* out) {
  for (int64_t r = b; r < e; ++r) {
    float* o = out + (r - b) * m.cols;
    if (m.format == Format::Int4) {
      // Weights arrive as even / odd halves of 32-chunks; put them back in column order.
      walk_row(
          m, r,
          [&](int64_t c, __m256 w) QEVAL_AVX2_LAMBDA {
            alignas(32) float tmp[8];
            _mm256_store_ps(tmp, w);
            const int64_t base = c / 32 * 32, k = c % 32;
            const int64_t first = k < 16 ? base + 2 * k : base + 2 * (k - 16) + 1;
            for (int j = 0; j < 8; ++j) o[first + 2 * j] = tmp[j];
          },
          [&](int64_t c) { o[c] = weight_at(m, r, c); });
    } else {
      walk_row(
          m, r, [&](int64_t c, __m256 w) QEVAL_AVX2_LAMBDA { _mm256_storeu_ps(o + c, w); },
          [&](int64_t c) { o[c] = weight_at(m, r, c); });
    }
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
