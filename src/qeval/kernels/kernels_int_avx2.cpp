// AVX2 integer-activation GEMV (int8_activation.h). No int16 saturation anywhere:
//  Int8: weight codes widened to int16 (vpmovzxbw), activation codes likewise (vpmovsxbw), then
//        vpmaddwd (pair sums of at most 2 * 255 * 127 in int32);
//  Int4: vpmaddubsw of the 4-bit weight codes (unsigned) with the activation codes (signed):
//        pair sums of at most 2 * 15 * 127 = 3810 fit int16; then vpmaddwd with ones.
#include <algorithm>
#include <cstring>

#include "qeval/kernels/int8_activation.h"
#include "qeval/kernels/int_kernels_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define QEVAL_INT_AVX2 __attribute__((target("avx2")))
#define QEVAL_INT_AVX2_INLINE inline __attribute__((always_inline, target("avx2")))

namespace qeval::kernels::detail {
namespace {

QEVAL_INT_AVX2_INLINE int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// Sum of q_x * q_w over columns [c0, c1) of an 8-bit row.
QEVAL_INT_AVX2_INLINE int32_t dot_int8(const uint8_t* row, const int8_t* xq, int64_t c0, int64_t c1) {
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  int64_t c = c0;
  for (; c + 32 <= c1; c += 32) {
    const __m256i w0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c)));
    const __m256i w1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c + 16)));
    const __m256i x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq + c)));
    const __m256i x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq + c + 16)));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(w0, x0));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(w1, x1));
  }
  for (; c < c1; c += 16) {
    alignas(16) uint8_t tail[16] = {};  // weights past c1 read as 0 (the row or the buffer may end)
    std::memcpy(tail, row + c, static_cast<size_t>(std::min<int64_t>(16, c1 - c)));
    const __m256i w = _mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(tail)));
    const __m256i x = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq + c)));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(w, x));
  }
  return hsum_epi32(_mm256_add_epi32(acc0, acc1));
}

// Sum over 32-element chunks [k0, k1) of a 4-bit row (activation in chunk order: even, odd).
QEVAL_INT_AVX2_INLINE int32_t dot_int4(const uint8_t* row, size_t row_bytes, const int8_t* xq, int64_t k0, int64_t k1) {
  const __m128i low = _mm_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  for (int64_t k = k0; k < k1; ++k) {
    const size_t off = static_cast<size_t>(16 * k);
    __m128i b;
    if (off + 16 <= row_bytes) {
      b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + off));
    } else {  // last, partial chunk: its missing elements have zero activation codes
      alignas(16) uint8_t tail[16] = {};
      std::memcpy(tail, row + off, row_bytes - off);
      b = _mm_load_si128(reinterpret_cast<const __m128i*>(tail));
    }
    const __m128i lo = _mm_and_si128(b, low), hi = _mm_and_si128(_mm_srli_epi16(b, 4), low);
    const __m256i w = _mm256_set_m128i(hi, lo);
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * k));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones));
  }
  return hsum_epi32(acc);
}

}  // namespace

QEVAL_INT_AVX2 void int_gemv_avx2(const PackedMatrix& m, const int8_t* xq, const int32_t* gsum, float xs, float* y,
                                  int64_t b, int64_t e) {
  const int64_t n = m.cols, groups = int_group_count(m), gs = groups > 1 ? m.group_size : n;
  const size_t rb = format_row_bytes(m.format, n);
  int32_t* d = group_dots(groups);
  for (int64_t r = b; r < e; ++r) {
    const uint8_t* row = m.row(r);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c0 = g * gs, c1 = std::min(n, c0 + gs);
      const int32_t dot = m.format == Format::Int8 ? dot_int8(row, xq, c0, c1) : dot_int4(row, rb, xq, c0 / 32, (c1 + 31) / 32);
      d[g] = dot;
    }
    y[r - b] = combine_groups(m, r, d, gsum, groups, xs);
  }
}

}  // namespace qeval::kernels::detail

#else

namespace qeval::kernels::detail {
void int_gemv_avx2(const PackedMatrix& m, const int8_t* xq, const int32_t* gsum, float xs, float* y, int64_t b, int64_t e) {
  int_gemv_scalar(m, xq, gsum, xs, y, b, e);
}
}  // namespace qeval::kernels::detail

#endif
