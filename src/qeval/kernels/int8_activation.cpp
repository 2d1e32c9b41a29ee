// Integer-activation kernels: the activation quantizer, dispatch, layout preparation and the
// portable path (see int8_activation.h for the arithmetic and its exactness).
#include "qeval/kernels/int8_activation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "qeval/kernels/int_kernels_internal.h"

namespace qeval::kernels {

const char* int_isa_name(IntIsa isa) {
  switch (isa) {
    case IntIsa::Scalar: return "scalar";
    case IntIsa::Avx2: return "avx2";
    case IntIsa::Avx512Vnni: return "avx512-vnni";
  }
  return "?";
}

bool int_isa_available(IntIsa isa) {
  switch (isa) {
    case IntIsa::Scalar: return true;
    case IntIsa::Avx2: return best_isa() >= Isa::Avx2;
    case IntIsa::Avx512Vnni: return has_avx512_vnni();
  }
  return false;
}

IntIsa best_int_isa() {
  if (int_isa_available(IntIsa::Avx512Vnni)) return IntIsa::Avx512Vnni;
  if (int_isa_available(IntIsa::Avx2)) return IntIsa::Avx2;
  return IntIsa::Scalar;
}

float quantize_activation_row(const float* x, int64_t n, int bits, float clip, int8_t* codes) {
  if (best_isa() == Isa::Avx512) return detail::quantize_activation_row_avx512(x, n, bits, clip, codes);
  // quant/quantizer.h's params_from_range (symmetric) and quantize_code (nearest), operation by
  // operation, so that the codes and S are the ones ActivationQuantHooks uses.
  float lo = std::numeric_limits<float>::infinity(), hi = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {  // NaN-ignoring range
    const float v = x[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  lo = lo < 0.0f ? lo : 0.0f;
  hi = hi > 0.0f ? hi : 0.0f;
  const int half = 1 << (bits - 1);
  const float amax = clip * std::max(-lo, hi);
  const float s = amax > 0.0f ? amax / static_cast<float>(half - 1) : 1.0f;
  const auto z = static_cast<float>(half);
  const auto top = static_cast<float>((1 << bits) - 1);
  for (int64_t i = 0; i < n; ++i) {
    const float t = std::nearbyint(x[i] / s) + z;
    int code;
    if (t >= top) code = (1 << bits) - 1;
    else if (t >= 1.0f) code = static_cast<int>(t);
    else if (t < 1.0f) code = 1;
    else code = half;  // NaN: the code of 0
    codes[i] = static_cast<int8_t>(code - half);
  }
  return s;
}

int64_t int_group_count(const PackedMatrix& m) { return m.scale_row_stride ? m.scale_row_stride : 1; }

bool int_gemv_supported(const PackedMatrix& m) {
  if (m.format != Format::Int8 && m.format != Format::Int4) return false;
  if (m.outlier_row_ptr || m.group_size <= 0 || std::min(m.group_size, m.cols) > kMaxIntGroup) return false;
  if (m.zeros) {  // finite zero-points small enough for z * sum(q_x) to fit int32 when integral
    const int64_t n = m.scale_row_stride ? m.rows * m.scale_row_stride : 1;
    const double limit = 2147483647.0 / (127.0 * static_cast<double>(std::min(m.group_size, m.cols)));
    for (int64_t i = 0; i < n; ++i)
      if (!(std::fabs(static_cast<double>(m.zeros[i])) <= limit)) return false;
  }
  return true;
}

IntIsa usable_int_isa(const PackedMatrix& m, IntIsa limit) {
  IntIsa isa = std::min(limit, best_int_isa());
  while (isa != IntIsa::Scalar && !int_isa_available(isa)) isa = static_cast<IntIsa>(static_cast<int>(isa) - 1);
  // 4-bit SIMD paths walk 32-element chunks: every group must start on one.
  if (m.format == Format::Int4 && m.group_size % 32 != 0 && int_group_count(m) > 1) return IntIsa::Scalar;
  return isa;
}

size_t int_activation_bytes(const PackedMatrix& m) {
  const int64_t n = m.format == Format::Int4 ? (m.cols + 31) / 32 * 32 : m.cols;
  const size_t bytes = static_cast<size_t>(n) + 64;
  return m.format == Format::Int4 ? std::max(bytes, detail::vnni_int4_wide_bytes(m.cols)) : bytes;
}

void prepare_int_activation(const PackedMatrix& m, IntIsa isa, const int8_t* codes, int8_t* prepared,
                            int32_t* group_sums) {
  const int64_t n = m.cols, groups = int_group_count(m), gs = groups > 1 ? m.group_size : n;
  for (int64_t g = 0; g < groups; ++g) {
    int32_t s = 0;
    for (int64_t c = g * gs; c < std::min(n, (g + 1) * gs); ++c) s += codes[c];
    group_sums[g] = s;
  }
  if (isa == IntIsa::Avx512Vnni && detail::vnni_int4_wide(m)) {
    detail::prepare_vnni_int4_wide(n, codes, prepared);
    return;
  }
  std::memset(prepared, 0, int_activation_bytes(m));
  if (m.format != Format::Int4 || isa == IntIsa::Scalar) {
    std::memcpy(prepared, codes, static_cast<size_t>(n));
    return;
  }
  for (int64_t c = 0; c < n; ++c) {  // chunk of 32: even elements, then odd ones
    const int64_t k = c / 32, j = c % 32;
    prepared[32 * k + (j & 1) * 16 + j / 2] = codes[c];
  }
}

void int_gemv(const PackedMatrix& m, IntIsa isa, const int8_t* prepared, const int32_t* group_sums, float x_scale,
              float* y, int64_t b, int64_t e) {
  switch (isa) {
    case IntIsa::Avx512Vnni: return detail::int_gemv_vnni(m, prepared, group_sums, x_scale, y, b, e);
    case IntIsa::Avx2: return detail::int_gemv_avx2(m, prepared, group_sums, x_scale, y, b, e);
    case IntIsa::Scalar: return detail::int_gemv_scalar(m, prepared, group_sums, x_scale, y, b, e);
  }
}

namespace detail {

bool vnni_int4_wide(const PackedMatrix& m) {
  if (m.format != Format::Int4) return false;
  const int64_t gs = m.group_size;
  return int_group_count(m) == 1 || gs == 32 || gs == 64 || gs % 128 == 0;
}

size_t vnni_int4_wide_bytes(int64_t cols) {
  const int64_t chunks = (cols + 127) / 128;
  return static_cast<size_t>(chunks * (128 + 16 * 4)) + 64;
}

void prepare_vnni_int4_wide(int64_t cols, const int8_t* codes, int8_t* prepared) {
  const int64_t chunks = (cols + 127) / 128;
  std::memset(prepared, 0, vnni_int4_wide_bytes(cols));
  int32_t lane_sums[16];
  for (int64_t k = 0; k < chunks; ++k) {
    std::fill(lane_sums, lane_sums + 16, 0);
    int8_t* chunk = prepared + 128 * k;
    for (int64_t j = 0; j < 128 && 128 * k + j < cols; ++j) {
      const int8_t q = codes[128 * k + j];
      chunk[(j & 1) * 64 + j / 2] = q;
      lane_sums[j / 8] += q;
    }
    std::memcpy(prepared + 128 * chunks + 64 * k, lane_sums, sizeof lane_sums);
  }
}

float combine_groups(const PackedMatrix& m, int64_t r, const int32_t* dot, const int32_t* gsum, int64_t groups,
                     float x_scale) {
  float acc = 0.0f;
  for (int64_t g = 0; g < groups; ++g) {
    const float z = m.zero(r, g);
    const auto zi = static_cast<int32_t>(z);  // |z| < 2^31 (int_gemv_supported)
    float d;
    if (static_cast<float>(zi) == z) d = static_cast<float>(dot[g] - zi * gsum[g]);
    else d = static_cast<float>(dot[g]) - z * static_cast<float>(gsum[g]);
    const float t = m.scale(r, g) * d;
    acc += t;
  }
  return x_scale * acc;
}

void int_gemv_scalar(const PackedMatrix& m, const int8_t* xq, const int32_t* gsum, float xs, float* y, int64_t b,
                     int64_t e) {
  const int64_t n = m.cols, groups = int_group_count(m), gs = groups > 1 ? m.group_size : n;
  const bool four = m.format == Format::Int4;
  int32_t* d = detail::group_dots(groups);
  for (int64_t r = b; r < e; ++r) {
    const uint8_t* row = m.row(r);
    for (int64_t g = 0; g < groups; ++g) {
      int32_t dot = 0;
      for (int64_t c = g * gs; c < std::min(n, (g + 1) * gs); ++c) {
        const int q = four ? ((c & 1) ? row[c / 2] >> 4 : row[c / 2] & 0x0F) : row[c];
        dot += static_cast<int32_t>(xq[c]) * q;
      }
      d[g] = dot;
    }
    y[r - b] = combine_groups(m, r, d, gsum, groups, xs);
  }
}

}  // namespace detail
}  // namespace qeval::kernels
