#include "qeval/io/packed_weight.h"

#include "qeval/util/error.h"

namespace qeval {

uint32_t PackedWeight::code(int64_t row, int64_t col) const {
  const uint64_t bit = static_cast<uint64_t>(row * cols + col) * static_cast<uint64_t>(bits);
  const size_t byte = static_cast<size_t>(bit / 8);
  // Up to 8 bits starting at any bit offset fit in two bytes.
  uint32_t v = codes[byte];
  if (byte + 1 < codes_bytes) v |= static_cast<uint32_t>(codes[byte + 1]) << 8;
  return (v >> (bit % 8)) & ((1u << bits) - 1u);
}

size_t PackedWeight::storage_bytes() const {
  return codes_bytes + (scales.size() + zeros.size() + outlier_values.size()) * sizeof(float) +
         outlier_row_ptr.size() * sizeof(int64_t) + outlier_cols.size() * sizeof(int32_t);
}

void PackedWeight::validate(const std::string& what) const {
  auto bad = [&](const std::string& m) { throw Error(what + ": " + m); };
  if (bits < 2 || bits > 8) bad("unsupported code width " + std::to_string(bits));
  if (rows <= 0 || cols <= 0) bad("empty packed matrix");
  if (!per_tensor && group_size <= 0) bad("group size " + std::to_string(group_size));
  const uint64_t need = (static_cast<uint64_t>(rows * cols) * static_cast<uint64_t>(bits) + 7) / 8;
  if (codes == nullptr || codes_bytes != need)
    bad(std::to_string(codes_bytes) + " bytes of codes, expected " + std::to_string(need));
  if (static_cast<int64_t>(scales.size()) != groups())
    bad(std::to_string(scales.size()) + " scales, expected " + std::to_string(groups()));
  if (!zeros.empty() && zeros.size() != scales.size())
    bad(std::to_string(zeros.size()) + " zero-points, expected " + std::to_string(scales.size()));
  if (!outlier_row_ptr.empty() || !outlier_values.empty()) {
    if (static_cast<int64_t>(outlier_row_ptr.size()) != rows + 1 || outlier_row_ptr.front() != 0 ||
        outlier_cols.size() != outlier_values.size() ||
        outlier_row_ptr.back() != static_cast<int64_t>(outlier_values.size()))
      bad("inconsistent outlier index");
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = outlier_row_ptr[static_cast<size_t>(r)], e = outlier_row_ptr[static_cast<size_t>(r) + 1];
      if (e < b) bad("outlier row pointers decrease at row " + std::to_string(r));
      for (int64_t k = b; k < e; ++k) {
        const int32_t c = outlier_cols[static_cast<size_t>(k)];
        if (c < 0 || c >= cols || (k > b && c <= outlier_cols[static_cast<size_t>(k) - 1]))
          bad("outlier column " + std::to_string(c) + " of row " + std::to_string(r) + " out of range or not ascending");
      }
    }
  }
}

void PackedWeight::row_to_f32(int64_t row, float* out) const {
  for (int64_t c = 0; c < cols; ++c) {
    const int64_t g = group_index(row, c);
    out[c] = scales[static_cast<size_t>(g)] * (static_cast<float>(code(row, c)) - zero(g));
  }
  if (!outlier_row_ptr.empty())
    for (int64_t k = outlier_row_ptr[static_cast<size_t>(row)]; k < outlier_row_ptr[static_cast<size_t>(row) + 1]; ++k)
      out[outlier_cols[static_cast<size_t>(k)]] = outlier_values[static_cast<size_t>(k)];
}

}  // namespace qeval
