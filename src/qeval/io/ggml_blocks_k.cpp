// ggml's K-quant super-blocks of 256 elements, decoded from the block layouts:
//   Q2_K {u8 scales[16]; u8 qs[64]; fp16 d, dmin}                       (84 bytes)
//        16 sub-blocks of 16; scales[i] = scale (low nibble) | min (high nibble);
//        2-bit quants; x = d*sc*q - dmin*m.
//   Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; fp16 d}               (110 bytes)
//        16 sub-blocks of 16 with signed 6-bit scales (stored +32); 2 low bits in qs, the
//        high bit in hmask (set = no offset, clear = subtract 4); x = d*(sc-32)*q.
//   Q4_K {fp16 d, dmin; u8 scales[12]; u8 qs[128]}                      (144 bytes)
//   Q5_K {fp16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}           (176 bytes)
//        8 sub-blocks of 32 with 6-bit scale and min packed in 12 bytes; x = d*sc*q - dmin*m.
//   Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d}                 (210 bytes)
//        16 sub-blocks of 16 with 8-bit signed scales; 6-bit quants stored +32; x = d*sc*q.
//   Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}                             (292 bytes)
// Within each 128 (Q2_K, Q3_K, Q6_K) or 64 (Q4_K, Q5_K) element group the quant bits are
// interleaved as in ggml: byte l of a 32-byte lane holds element l of successive 32-element
// runs at successive bit positions. The products are evaluated in ggml's order:
// (d * sc) first, then times q, then minus (dmin * m).
#include <cstdint>

#include "qeval/io/ggml_blocks.h"

QEVAL_NO_FP_CONTRACT

namespace qeval::ggml {
namespace {

constexpr int kQK_K = 256;

// Q4_K / Q5_K: sub-block j (0..7) scale and min, 6 bits each. Bytes 0..3 hold the scales of
// sub-blocks 0..3 (low 6 bits), bytes 4..7 their mins; bytes 8..11 hold the low 4 bits of
// scale (low nibble) and min (high nibble) of sub-blocks 4..7, whose top 2 bits are the top
// bits of bytes 0..3 (scale) and 4..7 (min).
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q3_K: the 16 6-bit scales. Low 4 bits: byte j (j < 8) low nibble, or byte j-8 high nibble;
// high 2 bits: byte 8 + j%4 at bit 2*(j/4).
inline void scales_q3k(const uint8_t* s, int8_t out[16]) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? (s[j] & 0x0F) : (s[j - 8] >> 4);
    const int hi = (s[8 + (j % 4)] >> (2 * (j / 4))) & 3;
    out[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
  }
}

}  // namespace

void dequant_q2_k(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 84) {
    const uint8_t* scales = src;
    const uint8_t* q = src + 16;
    const float d = load_fp16(src + 80);
    const float dmin = load_fp16(src + 82);
    int is = 0;
    for (int n = 0; n < kQK_K; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = scales[is++];
          const float dl = d * static_cast<float>(sc & 0x0F);
          const float ml = dmin * static_cast<float>(sc >> 4);
          const uint8_t* qq = q + 16 * half;
          for (int l = 0; l < 16; ++l) {
            const float v = dl * static_cast<float>((qq[l] >> shift) & 3);
            *dst++ = v - ml;
          }
        }
      }
    }
  }
}

void dequant_q3_k(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 110) {
    const uint8_t* hm = src;
    const uint8_t* q = src + 32;
    int8_t scales[16];
    scales_q3k(src + 96, scales);
    const float d_all = load_fp16(src + 108);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < kQK_K; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * static_cast<float>(scales[is++]);
          const int o = 16 * half;
          for (int l = 0; l < 16; ++l) {
            const int v = ((q[o + l] >> shift) & 3) - ((hm[o + l] & m) ? 0 : 4);
            *dst++ = dl * static_cast<float>(v);
          }
        }
      }
    }
  }
}

void dequant_q4_k(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 144) {
    const float d = load_fp16(src);
    const float dmin = load_fp16(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* q = src + 16;
    for (int j = 0, is = 0; j < kQK_K; j += 64, is += 2, q += 32) {
      int sc, m;
      scale_min_k4(is, scales, sc, m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = dmin * static_cast<float>(m);
      scale_min_k4(is + 1, scales, sc, m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const float v = d1 * static_cast<float>(q[l] & 0x0F);
        *dst++ = v - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const float v = d2 * static_cast<float>(q[l] >> 4);
        *dst++ = v - m2;
      }
    }
  }
}

void dequant_q5_k(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 176) {
    const float d = load_fp16(src);
    const float dmin = load_fp16(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qh = src + 16;
    const uint8_t* ql = src + 48;
    unsigned u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < kQK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      int sc, m;
      scale_min_k4(is, scales, sc, m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = dmin * static_cast<float>(m);
      scale_min_k4(is + 1, scales, sc, m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const int q = (ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0);
        const float v = d1 * static_cast<float>(q);
        *dst++ = v - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const int q = (ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0);
        const float v = d2 * static_cast<float>(q);
        *dst++ = v - m2;
      }
    }
  }
}

void dequant_q6_k(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 210) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const auto* sc = reinterpret_cast<const int8_t*>(src + 192);
    const float d = load_fp16(src + 208);
    for (int n = 0; n < kQK_K; n += 128, ql += 64, qh += 32, sc += 8, dst += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        const float s1 = d * static_cast<float>(sc[is + 0]);
        const float s2 = d * static_cast<float>(sc[is + 2]);
        const float s3 = d * static_cast<float>(sc[is + 4]);
        const float s4 = d * static_cast<float>(sc[is + 6]);
        dst[l + 0] = s1 * static_cast<float>(q1);
        dst[l + 32] = s2 * static_cast<float>(q2);
        dst[l + 64] = s3 * static_cast<float>(q3);
        dst[l + 96] = s4 * static_cast<float>(q4);
      }
    }
  }
}

void dequant_q8_k(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b, src += 292, dst += kQK_K) {
    float d;
    std::memcpy(&d, src, 4);
    const auto* qs = reinterpret_cast<const int8_t*>(src + 4);
    for (int j = 0; j < kQK_K; ++j) dst[j] = d * static_cast<float>(qs[j]);
  }
}

}  // namespace qeval::ggml
