// ggml's 32-element block types, written from the block layouts:
//   Q4_0 {fp16 d; u8 qs[16]}            x = (q - 8) * d        q = nibble, low nibbles hold 0..15
//   Q4_1 {fp16 d, m; u8 qs[16]}          x = q * d + m                      high nibbles 16..31
//   Q5_0 {fp16 d; u8 qh[4]; u8 qs[16]}   x = (q - 16) * d       q = nibble | bit j of qh << 4
//   Q5_1 {fp16 d, m; u8 qh[4]; u8 qs[16]} x = q * d + m
//   Q8_0 {fp16 d; i8 qs[32]}             x = q * d
//   Q8_1 {fp16 d, s; i8 qs[32]}          x = q * d   (s = d * sum(q), only used by dot products)
// The quantizers are the deterministic reference algorithms llama-quantize uses without an
// importance matrix: one scale per block from the block's extreme value(s), then rounding by
// "add a half and truncate" (Q8_0: roundf). Integer conversions are done the way an x86-64
// C compiler does them (truncating cvttss2si to 32 bits, then narrowing), so that even
// non-finite input produces the same bytes and never undefined behaviour.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "qeval/io/ggml_blocks.h"

QEVAL_NO_FP_CONTRACT

namespace qeval::ggml {
namespace {

constexpr int kQK = 32;

// float -> int32 by truncation; NaN and out-of-range give INT32_MIN like cvttss2si.
inline int32_t trunc_i32(float v) {
  if (!(v > -2147483904.0f && v < 2147483648.0f)) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(v);
}
// C's (int8_t)(float) / (uint8_t)(float) as compiled for x86-64.
inline int8_t to_i8(float v) { return static_cast<int8_t>(trunc_i32(v)); }
inline uint8_t to_u8(float v) { return static_cast<uint8_t>(trunc_i32(v)); }

// Value of largest magnitude (the first one on ties) and its magnitude.
inline void abs_max(const float* x, float& amax, float& max) {
  amax = 0.0f;
  max = 0.0f;
  for (int j = 0; j < kQK; ++j) {
    const float a = std::fabs(x[j]);
    if (amax < a) {
      amax = a;
      max = x[j];
    }
  }
}

inline void min_max(const float* x, float& mn, float& mx) {
  mn = std::numeric_limits<float>::max();
  mx = -std::numeric_limits<float>::max();
  for (int j = 0; j < kQK; ++j) {
    if (x[j] < mn) mn = x[j];
    if (x[j] > mx) mx = x[j];
  }
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

// ---- decoders ----

void dequant_q4_0(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 18, dst += kQK) {
    const float d = load_fp16(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      const int lo = (qs[j] & 0x0F) - 8;
      const int hi = (qs[j] >> 4) - 8;
      dst[j] = static_cast<float>(lo) * d;
      dst[j + 16] = static_cast<float>(hi) * d;
    }
  }
}

void dequant_q4_1(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 20, dst += kQK) {
    const float d = load_fp16(src);
    const float m = load_fp16(src + 2);
    const uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      const float lo = static_cast<float>(qs[j] & 0x0F) * d;
      const float hi = static_cast<float>(qs[j] >> 4) * d;
      dst[j] = lo + m;
      dst[j + 16] = hi + m;
    }
  }
}

void dequant_q5_0(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 22, dst += kQK) {
    const float d = load_fp16(src);
    const uint32_t qh = load_u32(src + 2);
    const uint8_t* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int lo = static_cast<int>((qs[j] & 0x0Fu) | (((qh >> j) & 1u) << 4)) - 16;
      const int hi = static_cast<int>((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - 16;
      dst[j] = static_cast<float>(lo) * d;
      dst[j + 16] = static_cast<float>(hi) * d;
    }
  }
}

void dequant_q5_1(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 24, dst += kQK) {
    const float d = load_fp16(src);
    const float m = load_fp16(src + 2);
    const uint32_t qh = load_u32(src + 4);
    const uint8_t* qs = src + 8;
    for (int j = 0; j < 16; ++j) {
      const uint32_t lo = (qs[j] & 0x0Fu) | (((qh >> j) & 1u) << 4);
      const uint32_t hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4);
      const float flo = static_cast<float>(lo) * d;
      const float fhi = static_cast<float>(hi) * d;
      dst[j] = flo + m;
      dst[j + 16] = fhi + m;
    }
  }
}

void dequant_q8_0(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 34, dst += kQK) {
    const float d = load_fp16(src);
    const auto* qs = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(qs[j]) * d;
  }
}

void dequant_q8_1(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 36, dst += kQK) {
    const float d = load_fp16(src);
    const auto* qs = reinterpret_cast<const int8_t*>(src + 4);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(qs[j]) * d;
  }
}

// ---- reference quantizers ----

void quant_q4_0(const float* x, uint8_t* y, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, x += kQK, y += 18) {
    float amax, max;
    abs_max(x, amax, max);
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_fp16(y, d);
    for (int j = 0; j < 16; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[j + 16] * id;
      const auto q0 = static_cast<uint8_t>(std::min<int>(15, to_i8(x0 + 8.5f)));
      const auto q1 = static_cast<uint8_t>(std::min<int>(15, to_i8(x1 + 8.5f)));
      y[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quant_q4_1(const float* x, uint8_t* y, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, x += kQK, y += 20) {
    float mn, mx;
    min_max(x, mn, mx);
    const float d = (mx - mn) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_fp16(y, d);
    store_fp16(y + 2, mn);
    for (int j = 0; j < 16; ++j) {
      const float x0 = (x[j] - mn) * id;
      const float x1 = (x[j + 16] - mn) * id;
      const auto q0 = static_cast<uint8_t>(std::min<int>(15, to_i8(x0 + 0.5f)));
      const auto q1 = static_cast<uint8_t>(std::min<int>(15, to_i8(x1 + 0.5f)));
      y[4 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quant_q5_0(const float* x, uint8_t* y, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, x += kQK, y += 22) {
    float amax, max;
    abs_max(x, amax, max);
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_fp16(y, d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[j + 16] * id;
      const auto q0 = static_cast<uint8_t>(std::min<int>(31, to_i8(x0 + 16.5f)));
      const auto q1 = static_cast<uint8_t>(std::min<int>(31, to_i8(x1 + 16.5f)));
      y[6 + j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + 16);
    }
    std::memcpy(y + 2, &qh, 4);
  }
}

void quant_q5_1(const float* x, uint8_t* y, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, x += kQK, y += 24) {
    float mn, mx;
    min_max(x, mn, mx);
    const float d = (mx - mn) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_fp16(y, d);
    store_fp16(y + 2, mn);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const float x0 = (x[j] - mn) * id;
      const float x1 = (x[j + 16] - mn) * id;
      const uint8_t q0 = to_u8(x0 + 0.5f);
      const uint8_t q1 = to_u8(x1 + 0.5f);
      y[8 + j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + 16);
    }
    std::memcpy(y + 4, &qh, 4);
  }
}

void quant_q8_0(const float* x, uint8_t* y, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, x += kQK, y += 34) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      const float a = std::fabs(x[j]);
      amax = amax > a ? amax : a;  // a NaN propagates, as in ggml's MAX()
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_fp16(y, d);
    for (int j = 0; j < kQK; ++j) y[2 + j] = static_cast<uint8_t>(to_i8(std::round(x[j] * id)));
  }
}

}  // namespace qeval::ggml
