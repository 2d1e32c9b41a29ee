#include "qeval/io/dtype.h"

#include <array>
#include <cctype>

#include "qeval/util/error.h"

namespace qeval {
namespace {

constexpr std::array<DTypeTraits, 21> kTraits{{
    {DType::F32, "F32", 1, 4},       {DType::F16, "F16", 1, 2},       {DType::Q4_0, "Q4_0", 32, 18},
    {DType::Q4_1, "Q4_1", 32, 20},   {DType::Q5_0, "Q5_0", 32, 22},   {DType::Q5_1, "Q5_1", 32, 24},
    {DType::Q8_0, "Q8_0", 32, 34},   {DType::Q8_1, "Q8_1", 32, 36},   {DType::Q2_K, "Q2_K", 256, 84},
    {DType::Q3_K, "Q3_K", 256, 110}, {DType::Q4_K, "Q4_K", 256, 144}, {DType::Q5_K, "Q5_K", 256, 176},
    {DType::Q6_K, "Q6_K", 256, 210}, {DType::Q8_K, "Q8_K", 256, 292}, {DType::I8, "I8", 1, 1},
    {DType::I16, "I16", 1, 2},       {DType::I32, "I32", 1, 4},       {DType::I64, "I64", 1, 8},
    {DType::F64, "F64", 1, 8},       {DType::BF16, "BF16", 1, 2},
    {DType::U8, "U8", 1, 1},
}};

}  // namespace

std::optional<DTypeTraits> dtype_traits(uint32_t ggml_id) {
  if (ggml_id == static_cast<uint32_t>(DType::U8)) return std::nullopt;  // not a ggml type
  for (const auto& t : kTraits)
    if (static_cast<uint32_t>(t.type) == ggml_id) return t;
  return std::nullopt;
}

const DTypeTraits& traits(DType t) {
  for (const auto& tr : kTraits)
    if (tr.type == t) return tr;
  throw Error("internal error: unknown DType");
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& t : kTraits) {
    if (t.name.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < name.size() && eq; ++i)
      eq = std::toupper(static_cast<unsigned char>(name[i])) == t.name[i];
    if (eq) return t.type;
  }
  return std::nullopt;
}

std::optional<size_t> row_bytes(DType t, int64_t n) {
  const auto& tr = traits(t);
  if (n < 0 || n % tr.block_elems != 0) return std::nullopt;
  return static_cast<size_t>(n / tr.block_elems) * tr.block_bytes;
}

}  // namespace qeval
