#include "qeval/io/dequantize.h"

#include <cstring>
#include <string>

#include "qeval/util/error.h"
#include "qeval/util/half.h"

namespace qeval {

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  switch (type) {
    case DType::F32:
      std::memcpy(dst, p, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = fp16_to_f32(h);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    default:
      throw Error("dequantize: type " + std::string(dtype_name(type)) + " is not supported yet");
  }
}

bool can_quantize(DType type) { return type == DType::F32 || type == DType::F16 || type == DType::BF16; }

void quantize_row(DType type, const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  switch (type) {
    case DType::F32:
      std::memcpy(p, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_fp16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    default:
      throw Error("quantize: type " + std::string(dtype_name(type)) + " is not supported yet");
  }
}

}  // namespace qeval
