#pragma once
// Tensor element types. The numeric values are ggml's type ids, so GGUF files map directly.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace qeval {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  // Not a ggml type (GGUF has no unsigned 8-bit tensors): safetensors "U8" only, for packed
  // low-bit outputs. dtype_traits(ggml id) never returns it.
  U8 = 0x10000,
};

struct DTypeTraits {
  DType type;
  std::string_view name;  // ggml spelling: "F32", "Q4_K", ...
  int64_t block_elems;    // elements per block (1 for plain types)
  size_t block_bytes;     // bytes per block
};

// nullopt for ids QEval does not know (the caller reports the file and tensor).
std::optional<DTypeTraits> dtype_traits(uint32_t ggml_id);
const DTypeTraits& traits(DType t);
inline std::string_view dtype_name(DType t) { return traits(t).name; }
std::optional<DType> dtype_from_name(std::string_view name);  // case-insensitive
inline bool is_block_quantized(DType t) { return traits(t).block_elems > 1; }

// Bytes of a row of n elements; nullopt when n is not a multiple of the block size.
std::optional<size_t> row_bytes(DType t, int64_t n);

}  // namespace qeval
