// AVX-512 VNNI integer-activation GEMV (int8_activation.h): vpdpbusd multiplies unsigned weight
// codes by signed activation codes and adds groups of four products into int32 lanes, without
// saturation (vpdpbusd, not vpdpbusds). 4-bit rows: 32 weight bytes (two 32-element chunks) are
// spread to a 64-byte vector as [low nibbles of chunk k, high nibbles of chunk k, low, high of
// chunk k+1], matching the activation's chunk order (even elements, then odd ones). Two output
// rows share each activation load.
#include <algorithm>
#include <limits>

#include "qeval/kernels/int8_activation.h"
#include "qeval/kernels/int_kernels_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "qeval/kernels/avx512_target.h"

#define QEVAL_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2")))
// The activation quantizer needs only AVX-512 F/BW (it runs wherever the float kernels' AVX-512 path does).
#define QEVAL_AVX512_QUANT __attribute__((target("avx512f,avx512bw,avx512vl,avx2")))
#define QEVAL_VNNI_INLINE inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512vnni,avx2")))

namespace qeval::kernels::detail {
namespace {

QEVAL_VNNI_INLINE int32_t hsum256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}
QEVAL_VNNI_INLINE int32_t hsum512(__m512i v) {
  return hsum256(_mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)));
}

// Masks of the first n bytes.
QEVAL_VNNI_INLINE __mmask64 bytes_mask64(int64_t n) { return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1; }
QEVAL_VNNI_INLINE __mmask16 bytes_mask16(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u); }

// Sums of q_x * q_w over columns [c0, c1) of R 8-bit rows.
template <int R>
QEVAL_VNNI_INLINE void dot_int8(const uint8_t* const* row, int64_t rb, const int8_t* xq, int64_t c0, int64_t c1, int32_t* out) {
  __m512i acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
  int64_t c = c0;
  for (; c + 64 <= c1; c += 64) {
    const __m512i x = _mm512_loadu_si512(xq + c);
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(row[r] + c + 2 * R * rb), _MM_HINT_T1);  // see wide_chunk_dots
      acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_loadu_si512(row[r] + c), x);
    }
  }
  if (c < c1) {  // weights past c1 read as 0 (the row, the group or the buffer ends there)
    const __mmask64 k = bytes_mask64(c1 - c);
    const __m512i x = _mm512_loadu_si512(xq + c);
    for (int r = 0; r < R; ++r) acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_maskz_loadu_epi8(k, row[r] + c), x);
  }
  for (int r = 0; r < R; ++r) out[r] = hsum512(acc[r]);
}

// Two whole chunks (32 bytes at p) as [lo k, hi k, lo k+1, hi k+1].
QEVAL_VNNI_INLINE __m512i nibbles_pair(const uint8_t* p) {
  const __m512i t = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i v = _mm512_shuffle_i64x2(t, t, _MM_SHUFFLE(1, 1, 0, 0));
  return _mm512_and_si512(_mm512_mask_blend_epi64(0xCC, v, _mm512_srli_epi16(v, 4)), _mm512_set1_epi8(0x0F));
}
// One chunk (up to 16 bytes at p, `avail` of them readable) as [lo, hi].
QEVAL_VNNI_INLINE __m256i nibbles_one(const uint8_t* p, int64_t avail) {
  const __m128i b = _mm_maskz_loadu_epi8(bytes_mask16(avail), p);
  const __m128i low = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), low), _mm_and_si128(b, low));
}

// Sums over 32-element chunks [k0, k1) of R 4-bit rows.
template <int R>
QEVAL_VNNI_INLINE void dot_int4(const uint8_t* const* row, int64_t row_bytes, const int8_t* xq, int64_t k0, int64_t k1,
                                int32_t* out) {
  __m512i acc[R];
  __m256i acc1[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_si512();
    acc1[r] = _mm256_setzero_si256();
  }
  int64_t k = k0;
  const bool pairs = k0 + 2 <= k1 && 16 * (k0 + 2) <= row_bytes;  // g32 groups have none
  for (; k + 2 <= k1 && 16 * (k + 2) <= row_bytes; k += 2) {
    const __m512i x = _mm512_loadu_si512(xq + 32 * k);
    for (int r = 0; r < R; ++r) acc[r] = _mm512_dpbusd_epi32(acc[r], nibbles_pair(row[r] + 16 * k), x);
  }
  for (; k < k1; ++k) {  // an odd chunk, or the row's partial last one (its missing codes are 0)
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * k));
    for (int r = 0; r < R; ++r) acc1[r] = _mm256_dpbusd_epi32(acc1[r], nibbles_one(row[r] + 16 * k, row_bytes - 16 * k), x);
  }
  for (int r = 0; r < R; ++r) out[r] = (pairs ? hsum512(acc[r]) : 0) + hsum256(acc1[r]);
}

template <int R>
QEVAL_VNNI_INLINE void rows_int(const PackedMatrix& m, int64_t r0, const int8_t* xq, const int32_t* gsum, float xs,
                                float* y, int32_t* d) {
  const int64_t n = m.cols, groups = int_group_count(m), gs = groups > 1 ? m.group_size : n;
  const auto rb = static_cast<int64_t>(format_row_bytes(m.format, n));
  const uint8_t* row[R];
  for (int r = 0; r < R; ++r) row[r] = m.row(r0 + r);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t c0 = g * gs, c1 = std::min(n, c0 + gs);
    int32_t dot[R];
    if (m.format == Format::Int8) dot_int8<R>(row, rb, xq, c0, c1, dot);
    else dot_int4<R>(row, rb, xq, c0 / 32, (c1 + 31) / 32, dot);
    for (int r = 0; r < R; ++r) d[r * groups + g] = dot[r];
  }
  for (int r = 0; r < R; ++r) y[r] = combine_groups(m, r0 + r, d + r * groups, gsum, groups, xs);
}

// 4-bit rows in the wide layout (int_kernels_internal.h): per 128-element chunk one 64-byte
// load gives 64 low and 64 high nibbles (AND, shift + AND), and two vpdpbusd leave in each
// int32 lane the exact sum over 8 elements of one group. With one group per row the lanes
// accumulate in integers over the whole row (one reduction per row). Groups of 128 * c
// accumulate their c chunks in integers, then convert once (exact: |sum| <= 8 * 127 * 15 * c <
// 2^24 up to groups of 140,000) and scale by s_g into float lanes; groups of 32 / 64 convert
// each chunk and scale each lane by its own group's s_g. So no per-group horizontal sums.
// Zero-points: symmetric grids subtract 8 * (lane code sum) in integers (exact); asymmetric ones
// subtract z_g * (lane code sum) in float. Error: one rounding per chunk and lane plus the final
// lane reduction, i.e. within (n / 128 + 8) * u * M (+ u * sum |z_g * lane sums| * s_g for
// asymmetric grids), the form of the bound in int8_activation.h.
//
// The loops are written so that GCC keeps the R accumulators in registers: the row loops are
// unrolled (QEVAL_UNROLL_ROWS), and every choice (zero-points, lanes per group, the row's partial
// last chunk) is made outside the chunk loop.

// Chunk k of R rows: the exact 8-element sums of every lane. `whole`: all 64 bytes lie in the row.
template <int R>
QEVAL_VNNI_INLINE void wide_chunk_dots(const uint8_t* const* row, int64_t rb, const int8_t* xp, int64_t k, bool whole,
                                       __m512i* t) {
  const __m512i low = _mm512_set1_epi8(0x0F);
  const __m512i xlo = _mm512_loadu_si512(xp + 128 * k), xhi = _mm512_loadu_si512(xp + 128 * k + 64);
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
    // Weights stream from memory once per token: ask for the bytes two row blocks ahead (rows of
    // this thread's range) into L2, so that the loads overlap the integer work. Measured on a
    // DRAM-resident matrix (bench_kernels BM_DramGemv): one block ahead into L1 gave 22 GB/s,
    // two blocks ahead into L2 36 GB/s.
    _mm_prefetch(reinterpret_cast<const char*>(row[r] + 64 * k + 2 * R * rb), _MM_HINT_T1);
    const __m512i v = whole ? _mm512_loadu_si512(row[r] + 64 * k) : _mm512_maskz_loadu_epi8(bytes_mask64(rb - 64 * k), row[r] + 64 * k);
    const __m512i lo = _mm512_and_si512(v, low), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
    t[r] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo), hi, xhi);
  }
}

// acc[r] += s * (t[r] - z * ls) lane by lane; s and z are one row's lane values (z unused when
// symmetric: 8 * ls in integers).
template <bool Asym>
QEVAL_VNNI_INLINE __m512 scaled_lanes(__m512i t, __m512i ls, __m512 s, __m512 z, __m512 acc) {
  const __m512 d = Asym ? _mm512_fnmadd_ps(z, _mm512_cvtepi32_ps(ls), _mm512_cvtepi32_ps(t))
                        : _mm512_cvtepi32_ps(_mm512_sub_epi32(t, _mm512_slli_epi32(ls, 3)));
  return _mm512_fmadd_ps(d, s, acc);
}

// R rows of a grouped wide matrix: chunk counts, the rows' codes, scales and zero-points, and
// their float accumulators (zeroed).
template <int R>
struct WideRows {
  int64_t chunks = 0, rb = 0, whole = 0;  // chunks per row, bytes per row, chunks whose 64 bytes all lie in the row
  const int32_t* lane_sums = nullptr;     // the prepared activation's per-lane code sums
  const uint8_t* row[R];
  const float* sp[R];
  const float* zp[R];
  __m512 acc[R];
};
template <int R, bool Asym>
QEVAL_VNNI_INLINE void start_wide_rows(const PackedMatrix& m, int64_t r0, const int8_t* xp, WideRows<R>& w) {
  w.chunks = (m.cols + 127) / 128;
  w.rb = static_cast<int64_t>(format_row_bytes(m.format, m.cols));
  w.whole = w.rb / 64;
  w.lane_sums = reinterpret_cast<const int32_t*>(xp + 128 * w.chunks);
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
    w.row[r] = m.row(r0 + r);
    w.sp[r] = m.scales + (r0 + r) * m.scale_row_stride;
    w.zp[r] = Asym ? m.zeros + (r0 + r) * m.scale_row_stride : nullptr;
    w.acc[r] = _mm512_setzero_ps();
  }
}

// One group per row.
template <int R>
QEVAL_VNNI_INLINE void rows_int4_wide_per_row(const PackedMatrix& m, int64_t r0, const int8_t* xp, const int32_t* gsum,
                                              float xs, float* y) {
  const int64_t chunks = (m.cols + 127) / 128;
  const auto rb = static_cast<int64_t>(format_row_bytes(m.format, m.cols));
  const int64_t whole = rb / 64;
  const uint8_t* row[R];
  __m512i acc[R], t[R];
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
    row[r] = m.row(r0 + r);
    acc[r] = _mm512_setzero_si512();
  }
  for (int64_t k = 0; k < chunks; ++k) {
    wide_chunk_dots<R>(row, rb, xp, k, k < whole, t);
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) acc[r] = _mm512_add_epi32(acc[r], t[r]);
  }
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
    const int32_t dot = hsum512(acc[r]);
    y[r] = combine_groups(m, r0 + r, &dot, gsum, 1, xs);
  }
}

// Chunk k of R rows in groups of 128 (group k).
template <int R, bool Asym>
QEVAL_VNNI_INLINE void one_group_chunk(WideRows<R>& w, const int8_t* xp, int64_t k, bool whole) {
  __m512i t[R];
  wide_chunk_dots<R>(w.row, w.rb, xp, k, whole, t);
  const __m512i ls = _mm512_loadu_si512(w.lane_sums + 16 * k);
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
    const __m512 z = Asym ? _mm512_set1_ps(w.zp[r][k]) : _mm512_setzero_ps();
    w.acc[r] = scaled_lanes<Asym>(t[r], ls, _mm512_set1_ps(w.sp[r][k]), z, w.acc[r]);
  }
}

// Groups of 128 * c elements: c chunks per group.
template <int R, bool Asym>
QEVAL_VNNI_INLINE void rows_int4_wide_long_groups(const PackedMatrix& m, int64_t r0, const int8_t* xp, float xs, float* y) {
  const int64_t per_group = m.group_size / 128, groups = int_group_count(m);
  WideRows<R> w;
  start_wide_rows<R, Asym>(m, r0, xp, w);
  int64_t k = 0;
  if (per_group == 1) {  // groups of 128: chunk k is group k
    for (; k < w.whole; ++k) one_group_chunk<R, Asym>(w, xp, k, true);
    for (; k < w.chunks; ++k) one_group_chunk<R, Asym>(w, xp, k, false);
  }
  for (int64_t g = 0; per_group > 1 && g < groups; ++g) {
    const int64_t end = std::min(w.chunks, k + per_group);
    __m512i sum[R], t[R], ls = _mm512_setzero_si512();
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) sum[r] = _mm512_setzero_si512();
    for (; k < end; ++k) {
      wide_chunk_dots<R>(w.row, w.rb, xp, k, k < w.whole, t);
      ls = _mm512_add_epi32(ls, _mm512_loadu_si512(w.lane_sums + 16 * k));
      QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) sum[r] = _mm512_add_epi32(sum[r], t[r]);
    }
    QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
      const __m512 z = Asym ? _mm512_set1_ps(w.zp[r][g]) : _mm512_setzero_ps();
      w.acc[r] = scaled_lanes<Asym>(sum[r], ls, _mm512_set1_ps(w.sp[r][g]), z, w.acc[r]);
    }
  }
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] = xs * _mm512_reduce_add_ps(w.acc[r]);
}

// Chunk k of R rows with groups of 128 / PerChunk: lane_group maps a lane to its group within
// the chunk; `have` masks the groups that exist.
template <int R, int PerChunk, bool Asym>
QEVAL_VNNI_INLINE void short_groups_chunk(WideRows<R>& w, const int8_t* xp, __m512i lane_group, int64_t k, bool whole,
                                          __mmask16 have) {
  __m512i t[R];
  wide_chunk_dots<R>(w.row, w.rb, xp, k, whole, t);
  const __m512i ls = _mm512_loadu_si512(w.lane_sums + 16 * k);
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) {
    const __m512 s = _mm512_permutexvar_ps(lane_group, _mm512_maskz_loadu_ps(have, w.sp[r] + PerChunk * k));
    const __m512 z = Asym ? _mm512_permutexvar_ps(lane_group, _mm512_maskz_loadu_ps(have, w.zp[r] + PerChunk * k)) : _mm512_setzero_ps();
    w.acc[r] = scaled_lanes<Asym>(t[r], ls, s, z, w.acc[r]);
  }
}

// Groups of 32 (PerChunk 4) or 64 (PerChunk 2) elements: each lane's 8 elements lie in group
// (chunk's first group + lane / (16 / PerChunk)).
template <int R, int PerChunk, bool Asym>
QEVAL_VNNI_INLINE void rows_int4_wide_short_groups(const PackedMatrix& m, int64_t r0, const int8_t* xp, float xs, float* y) {
  const int64_t groups = int_group_count(m);
  const __m512i lane_group = PerChunk == 4 ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)
                                           : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  WideRows<R> w;
  start_wide_rows<R, Asym>(m, r0, xp, w);
  constexpr auto all = static_cast<__mmask16>((1u << PerChunk) - 1u);
  int64_t k = 0;
  for (; k < w.whole; ++k)  // a whole chunk's groups all exist
    short_groups_chunk<R, PerChunk, Asym>(w, xp, lane_group, k, true, all);
  for (; k < w.chunks; ++k) {
    const auto have = static_cast<__mmask16>((1u << std::min<int64_t>(PerChunk, groups - PerChunk * k)) - 1u);
    short_groups_chunk<R, PerChunk, Asym>(w, xp, lane_group, k, false, have);
  }
  QEVAL_UNROLL_ROWS for (int r = 0; r < R; ++r) y[r] = xs * _mm512_reduce_add_ps(w.acc[r]);
}

template <int R, bool Asym>
QEVAL_VNNI_INLINE void rows_int4_wide_grouped(const PackedMatrix& m, int64_t r0, const int8_t* xp, float xs, float* y) {
  if (m.group_size == 32) rows_int4_wide_short_groups<R, 4, Asym>(m, r0, xp, xs, y);
  else if (m.group_size == 64) rows_int4_wide_short_groups<R, 2, Asym>(m, r0, xp, xs, y);
  else rows_int4_wide_long_groups<R, Asym>(m, r0, xp, xs, y);
}

template <int R>
QEVAL_VNNI_INLINE void rows_int4_wide(const PackedMatrix& m, int64_t r0, const int8_t* xp, const int32_t* gsum,
                                      float xs, float* y) {
  if (int_group_count(m) == 1) rows_int4_wide_per_row<R>(m, r0, xp, gsum, xs, y);
  else if (m.zeros != nullptr) rows_int4_wide_grouped<R, true>(m, r0, xp, xs, y);
  else rows_int4_wide_grouped<R, false>(m, r0, xp, xs, y);
}

}  // namespace

QEVAL_AVX512_QUANT float quantize_activation_row_avx512(const float* x, int64_t n, int bits, float clip, int8_t* codes) {
  // quantize_activation_row's operations lane by lane. min/max: MINPS returns its second
  // operand when the first is NaN, which is the scalar loop's "if (v < lo) lo = v".
  __m512 lo = _mm512_set1_ps(std::numeric_limits<float>::infinity()), hi = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    lo = _mm512_mask_min_ps(lo, k, v, lo);
    hi = _mm512_mask_max_ps(hi, k, v, hi);
  }
  float l = _mm512_reduce_min_ps(lo), h = _mm512_reduce_max_ps(hi);
  l = l < 0.0f ? l : 0.0f;
  h = h > 0.0f ? h : 0.0f;
  const int half = 1 << (bits - 1);
  const float amax = clip * std::max(-l, h);
  const float s = amax > 0.0f ? amax / static_cast<float>(half - 1) : 1.0f;
  const __m512 sv = _mm512_set1_ps(s), zv = _mm512_set1_ps(static_cast<float>(half));
  const __m512 top = _mm512_set1_ps(static_cast<float>((1 << bits) - 1)), one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    const __m512 t = _mm512_add_ps(_mm512_roundscale_ps(_mm512_div_ps(v, sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zv);
    __m512 c = zv;                                                       // NaN: the code of 0
    c = _mm512_mask_mov_ps(c, _mm512_cmp_ps_mask(t, one, _CMP_LT_OQ), one);
    c = _mm512_mask_mov_ps(c, _mm512_cmp_ps_mask(t, one, _CMP_GE_OQ), t);
    c = _mm512_mask_mov_ps(c, _mm512_cmp_ps_mask(t, top, _CMP_GE_OQ), top);
    const __m512i q = _mm512_sub_epi32(_mm512_cvttps_epi32(c), _mm512_set1_epi32(half));
    _mm_mask_storeu_epi8(codes + i, k, _mm512_cvtepi32_epi8(q));
  }
  return s;
}

QEVAL_VNNI void int_gemv_vnni(const PackedMatrix& m, const int8_t* xq, const int32_t* gsum, float xs, float* y,
                              int64_t b, int64_t e) {
  int64_t r = b;
  if (vnni_int4_wide(m)) {
    for (; r + 4 <= e; r += 4) rows_int4_wide<4>(m, r, xq, gsum, xs, y + (r - b));
    for (; r + 2 <= e; r += 2) rows_int4_wide<2>(m, r, xq, gsum, xs, y + (r - b));
    for (; r < e; ++r) rows_int4_wide<1>(m, r, xq, gsum, xs, y + (r - b));
    return;
  }
  int32_t* d = group_dots(2 * int_group_count(m));
  for (; r + 2 <= e; r += 2) rows_int<2>(m, r, xq, gsum, xs, y + (r - b), d);
  for (; r < e; ++r) rows_int<1>(m, r, xq, gsum, xs, y + (r - b), d);
}

}  // namespace qeval::kernels::detail

#else

namespace qeval::kernels::detail {
void int_gemv_vnni(const PackedMatrix& m, const int8_t* xq, const int32_t* gsum, float xs, float* y, int64_t b, int64_t e) {
  int_gemv_scalar(m, xq, gsum, xs, y, b, e);
}
float quantize_activation_row_avx512(const float*, int64_t, int, float, int8_t*) { return 0.0f; }  // never dispatched
}  // namespace qeval::kernels::detail

#endif
