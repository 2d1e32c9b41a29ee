// AVX-512 many-row product over packed matrices (packed_gemm.h): per task, panels of 32 output
// features x kDepth inputs are dequantized (dequantize_avx512 on a column span), transposed to
// [input][32 features] through a small row-major block, and multiplied by 8 activation rows at a
// time: 16 accumulators (8 rows x 2 vectors), two panel loads and eight broadcasts per input.
// A stand-alone measurement on this machine's Zen 4 (128 rows x 256 features x 2048 inputs, one
// thread, int8 weights): 86-89 GFLOP/s including dequantization, OpenBLAS sgemm 75-76 GFLOP/s on
// the already dequantized matrix.
#include <algorithm>
#include <vector>

#include "qeval/kernels/isa_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "qeval/kernels/avx512_target.h"

namespace qeval::kernels::detail {
namespace {

constexpr int64_t kDepth = 128;     // inputs per panel (a multiple of 32: spans start on blocks)
constexpr int64_t kFeatures = 32;   // output features per panel: two vectors
constexpr int64_t kTokens = 8;      // activation rows per micro-kernel call
// Row stride of the dequantized block, padded by a cache line: at a power-of-two stride the 16
// loads of one transposition step would fall into one L1 set.
constexpr int64_t kBlockLd = kDepth + 16;

QEVAL_AVX512_INLINE __mmask16 lanes(int64_t n) {
  return n <= 0 ? 0 : n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// out[c * out_ld + r] = in[r * in_ld + c] for r, c < 16: row pairs interleaved, then 64-bit
// pairs, then 128-bit lanes twice.
QEVAL_AVX512_INLINE void transpose16(const float* in, int64_t in_ld, float* out, int64_t out_ld) {
  __m512 t[16], u[16];
  _Pragma("GCC unroll 8") for (int i = 0; i < 8; ++i) {
    const __m512 a = _mm512_loadu_ps(in + (2 * i) * in_ld), b = _mm512_loadu_ps(in + (2 * i + 1) * in_ld);
    t[2 * i] = _mm512_unpacklo_ps(a, b);
    t[2 * i + 1] = _mm512_unpackhi_ps(a, b);
  }
  // u[4q + j], 128-bit lane l: column 4l + j of rows 4q .. 4q + 3.
  _Pragma("GCC unroll 4") for (int q = 0; q < 4; ++q) {
    u[4 * q + 0] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
    u[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0xEE);
    u[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
    u[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xEE);
  }
  _Pragma("GCC unroll 4") for (int j = 0; j < 4; ++j) {
    const __m512 v = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), w = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), w2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    _mm512_storeu_ps(out + j * out_ld, _mm512_shuffle_f32x4(v, v2, 0x88));
    _mm512_storeu_ps(out + (4 + j) * out_ld, _mm512_shuffle_f32x4(w, w2, 0x88));
    _mm512_storeu_ps(out + (8 + j) * out_ld, _mm512_shuffle_f32x4(v, v2, 0xDD));
    _mm512_storeu_ps(out + (12 + j) * out_ld, _mm512_shuffle_f32x4(w, w2, 0xDD));
  }
}

// panel[k * 32 + f] = W[f0 + f][span.begin + k] for f < nf, 0 for nf <= f < 32.
QEVAL_AVX512 void pack_panel(const PackedMatrix& m, int64_t f0, int64_t nf, ColumnSpan span, float* block,
                             float* panel) {
  const int64_t depth = span.width();
  dequantize_avx512(m, f0, f0 + nf, span, block, kBlockLd);
  for (int64_t f = nf; f < kFeatures; ++f) std::fill(block + f * kBlockLd, block + f * kBlockLd + depth, 0.0f);
  for (int64_t h = 0; h < 2; ++h) {
    const float* in = block + 16 * h * kBlockLd;
    int64_t k = 0;
    for (; k + 16 <= depth; k += 16) transpose16(in + k, kBlockLd, panel + k * kFeatures + 16 * h, kFeatures);
    for (; k < depth; ++k)
      for (int64_t f = 0; f < 16; ++f) panel[k * kFeatures + 16 * h + f] = in[f * kBlockLd + k];
  }
}

// y[t][0..32) (masked by m0 / m1) = (first ? 0 : y[t][..]) + sum_k x[t][k] * panel[k][..], t < T:
// one fused multiply-add chain per output, in input order.
template <int T>
QEVAL_AVX512 void micro_kernel(const float* x, int64_t ldx, const float* panel, int64_t depth, float* y, int64_t ldy,
                               __mmask16 m0, __mmask16 m1, bool first) {
  __m512 acc[T][2];
  _Pragma("GCC unroll 8") for (int t = 0; t < T; ++t) {
    acc[t][0] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, y + t * ldy);
    acc[t][1] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, y + t * ldy + 16);
  }
  for (int64_t k = 0; k < depth; ++k) {
    const __m512 w0 = _mm512_loadu_ps(panel + k * kFeatures), w1 = _mm512_loadu_ps(panel + k * kFeatures + 16);
    _Pragma("GCC unroll 8") for (int t = 0; t < T; ++t) {
      const __m512 xb = _mm512_set1_ps(x[t * ldx + k]);
      acc[t][0] = _mm512_fmadd_ps(xb, w0, acc[t][0]);
      acc[t][1] = _mm512_fmadd_ps(xb, w1, acc[t][1]);
    }
  }
  _Pragma("GCC unroll 8") for (int t = 0; t < T; ++t) {
    _mm512_mask_storeu_ps(y + t * ldy, m0, acc[t][0]);
    _mm512_mask_storeu_ps(y + t * ldy + 16, m1, acc[t][1]);
  }
}

// Asks for the bytes of rows [b, e) within `span` (into L2): the next panel's weights arrive while
// the micro-kernel works on this one. Short strided row pieces are not followed by the hardware
// prefetcher. The caller spreads a panel's requests over its micro-kernel calls: all 32 rows at
// once left the dequantizer waiting on its loads (bench_kernels BM_Gemm 2048 x 2048, one thread:
// its share of the samples 11-13 % -> 9-12 %, W8 80-88 -> 86-90 GFLOP/s, W4g32 77-83 -> 81-90).
QEVAL_AVX512_INLINE void prefetch_panel(const PackedMatrix& m, int64_t b, int64_t e, ColumnSpan span) {
  const size_t first = static_cast<size_t>(span.begin) * m.row_bytes / static_cast<size_t>(m.cols);
  const size_t last = static_cast<size_t>(span.end) * m.row_bytes / static_cast<size_t>(m.cols);
  for (int64_t r = b; r < e; ++r)
    for (size_t off = first; off < last; off += 64) _mm_prefetch(reinterpret_cast<const char*>(m.row(r) + off), _MM_HINT_T0);
}

using MicroKernel = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, __mmask16, __mmask16, bool);
constexpr MicroKernel kMicroKernels[kTokens + 1] = {nullptr,           micro_kernel<1>, micro_kernel<2>,
                                                    micro_kernel<3>,   micro_kernel<4>, micro_kernel<5>,
                                                    micro_kernel<6>,   micro_kernel<7>, micro_kernel<8>};

}  // namespace

QEVAL_AVX512 void gemm_avx512(const PackedMatrix& m, const float* x, int64_t rows, float* y, int64_t ldy, int64_t b,
                              int64_t e) {
  const int64_t n = m.cols;
  // Per thread, reused across calls: one panel (16 KiB) and its row-major source block.
  thread_local std::vector<float> panel, block;
  panel.resize(static_cast<size_t>(kDepth * kFeatures));
  block.resize(static_cast<size_t>(kFeatures * kBlockLd));
  for (int64_t k0 = 0; k0 < n; k0 += kDepth) {
    const ColumnSpan span{k0, std::min(n, k0 + kDepth)};
    for (int64_t f0 = b; f0 < e; f0 += kFeatures) {
      const int64_t nf = std::min(kFeatures, e - f0);
      pack_panel(m, f0, nf, span, block.data(), panel.data());
      // The next panel: the following features of this span, or the first ones of the next span.
      int64_t pb = f0 + kFeatures, pe = std::min(e, f0 + 2 * kFeatures);
      ColumnSpan pspan = span;
      if (pb >= e) {
        pb = b;
        pe = span.end < n ? std::min(e, b + kFeatures) : b;
        pspan = ColumnSpan{span.end, std::min(n, span.end + kDepth)};
      }
      const int64_t blocks = (rows + kTokens - 1) / kTokens, per_block = (pe - pb + blocks - 1) / blocks;
      const __mmask16 m0 = lanes(nf), m1 = lanes(nf - 16);
      for (int64_t t0 = 0; t0 < rows; t0 += kTokens) {
        const int64_t nt = std::min(kTokens, rows - t0);
        const int64_t r0 = std::min(pe, pb + t0 / kTokens * per_block);
        prefetch_panel(m, r0, std::min(pe, r0 + per_block), pspan);
        kMicroKernels[nt](x + t0 * n + k0, n, panel.data(), span.width(), y + t0 * ldy + f0, ldy, m0, m1, k0 == 0);
      }
    }
  }
}

}  // namespace qeval::kernels::detail

#else  // not x86-64: never dispatched (gemm_supported is false)

namespace qeval::kernels::detail {
void gemm_avx512(const PackedMatrix&, const float*, int64_t, float*, int64_t, int64_t, int64_t) {}
}  // namespace qeval::kernels::detail

#endif
