#pragma once
// Internal: per-block codecs of the ggml tensor types, used by dequantize.cpp.
// Each function handles `nblocks` consecutive blocks; the caller has checked sizes.
// The float operations follow ggml's reference C order one operation at a time (no fused
// multiply-add), which is what makes the results bit-exact.
#include <cstdint>
#include <cstring>

#include "qeval/util/half.h"

// A fused multiply-add would round once where ggml rounds twice. GCC in ISO mode already
// keeps them apart (-ffp-contract=off); clang contracts within an expression unless told.
#if defined(__clang__)
#define QEVAL_NO_FP_CONTRACT _Pragma("STDC FP_CONTRACT OFF")
#else
#define QEVAL_NO_FP_CONTRACT
#endif

namespace qeval::ggml {

inline float load_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}
inline void store_fp16(uint8_t* p, float f) {
  const uint16_t h = f32_to_fp16(f);
  std::memcpy(p, &h, 2);
}

// Legacy 32-element blocks.
void dequant_q4_0(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_q4_1(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_q5_0(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_q5_1(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_q8_0(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_q8_1(const uint8_t* src, float* dst, int64_t nblocks);

void quant_q4_0(const float* src, uint8_t* dst, int64_t nblocks);
void quant_q4_1(const float* src, uint8_t* dst, int64_t nblocks);
void quant_q5_0(const float* src, uint8_t* dst, int64_t nblocks);
void quant_q5_1(const float* src, uint8_t* dst, int64_t nblocks);
void quant_q8_0(const float* src, uint8_t* dst, int64_t nblocks);

// K-quant 256-element super-blocks.
void dequant_q2_k(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_q3_k(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_q4_k(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_q5_k(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_q6_k(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_q8_k(const uint8_t* src, float* dst, int64_t nblocks);

}  // namespace qeval::ggml
