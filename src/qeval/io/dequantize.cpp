#include "qeval/io/dequantize.h"

#include <cstring>
#include <string>

#include "qeval/io/ggml_blocks.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"

namespace qeval {
namespace {

int64_t checked_blocks(DType type, int64_t n, const char* what) {
  const auto& tr = traits(type);
  if (n < 0 || n % tr.block_elems != 0)
    throw Error(std::string(what) + ": " + std::to_string(n) + " elements is not a multiple of the " +
                std::string(tr.name) + " block size " + std::to_string(tr.block_elems));
  return n / tr.block_elems;
}

template <typename T>
void ints_to_f32(const uint8_t* p, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, p + sizeof(T) * static_cast<size_t>(i), sizeof(T));
    dst[i] = static_cast<float>(v);
  }
}

}  // namespace

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  const int64_t nb = checked_blocks(type, n, "dequantize");
  if (n == 0) return;  // (src may then be null, which memcpy must not see)
  switch (type) {
    case DType::F32:
      std::memcpy(dst, p, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = ggml::load_fp16(p + 2 * i);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    case DType::F64: ints_to_f32<double>(p, dst, n); return;
    case DType::I8: ints_to_f32<int8_t>(p, dst, n); return;
    case DType::I16: ints_to_f32<int16_t>(p, dst, n); return;
    case DType::I32: ints_to_f32<int32_t>(p, dst, n); return;
    case DType::I64: ints_to_f32<int64_t>(p, dst, n); return;
    case DType::U8: ints_to_f32<uint8_t>(p, dst, n); return;
    case DType::Q4_0: ggml::dequant_q4_0(p, dst, nb); return;
    case DType::Q4_1: ggml::dequant_q4_1(p, dst, nb); return;
    case DType::Q5_0: ggml::dequant_q5_0(p, dst, nb); return;
    case DType::Q5_1: ggml::dequant_q5_1(p, dst, nb); return;
    case DType::Q8_0: ggml::dequant_q8_0(p, dst, nb); return;
    case DType::Q8_1: ggml::dequant_q8_1(p, dst, nb); return;
    case DType::Q2_K: ggml::dequant_q2_k(p, dst, nb); return;
    case DType::Q3_K: ggml::dequant_q3_k(p, dst, nb); return;
    case DType::Q4_K: ggml::dequant_q4_k(p, dst, nb); return;
    case DType::Q5_K: ggml::dequant_q5_k(p, dst, nb); return;
    case DType::Q6_K: ggml::dequant_q6_k(p, dst, nb); return;
    case DType::Q8_K: ggml::dequant_q8_k(p, dst, nb); return;
  }
  throw Error("dequantize: type " + std::string(dtype_name(type)) + " is not supported");
}

bool can_quantize(DType type) {
  switch (type) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0:
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1:
      return true;
    default:
      return false;
  }
}

void quantize_row(DType type, const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  if (!can_quantize(type))
    throw Error("quantize: writing type " + std::string(dtype_name(type)) + " is not supported");
  const int64_t nb = checked_blocks(type, n, "quantize");
  if (n == 0) return;
  switch (type) {
    case DType::F32:
      std::memcpy(p, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) ggml::store_fp16(p + 2 * i, src[i]);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    case DType::Q4_0: ggml::quant_q4_0(src, p, nb); return;
    case DType::Q4_1: ggml::quant_q4_1(src, p, nb); return;
    case DType::Q5_0: ggml::quant_q5_0(src, p, nb); return;
    case DType::Q5_1: ggml::quant_q5_1(src, p, nb); return;
    case DType::Q8_0: ggml::quant_q8_0(src, p, nb); return;
    default:
      break;
  }
  throw Error("quantize: writing type " + std::string(dtype_name(type)) + " is not supported");
}

}  // namespace qeval
