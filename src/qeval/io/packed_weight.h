#pragma once
// A low-bit weight matrix as QEval's packed directory stores it (quant/export.h), described
// without any dependency on the quantizer: integer codes, one scale and zero-point per group,
// and optional full-precision outliers. A Tensor carrying one (Tensor::packed) is executed by
// the engine's packed kernels; Tensor::to_f32 / row_to_f32 dequantize it for code that needs
// floats.
//
// Layout (the writer's, quant/pack.h): the codes of the whole [rows, cols] matrix, row-major,
// as one little-endian bit stream of `bits` bits per code (code i occupies stream bits
// [i*bits, (i+1)*bits); for 4 bits element 2k is the low nibble of byte k). Groups run along a
// row: group g of row r covers columns [g*group_size, min(cols, (g+1)*group_size)) and its
// parameters are scales[r * groups_per_row + g] (a per-tensor quantizer has one group).
// Dequantized value: scale * (code - zero), computed in float exactly that way (the quantizer's
// dequantize_code), where zero is zeros[...] or, when zeros is empty (symmetric, unperturbed),
// 2^(bits-1). Outliers (CSR over rows) replace the grid value at their positions.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace qeval {

struct PackedWeight {
  int bits = 4;  // 2..8
  int64_t rows = 0, cols = 0;
  int64_t group_size = 0;   // columns per group; cols for per-channel
  bool per_tensor = false;  // one group for the whole matrix
  // Views into a mapping or buffers kept alive by `owner` (nothing is copied at load, so the
  // resident memory is the stored bytes).
  const uint8_t* codes = nullptr;  // packed stream, ceil(rows*cols*bits/8) bytes
  size_t codes_bytes = 0;
  std::span<const float> scales;          // groups()
  std::span<const float> zeros;           // groups(), or empty: implicit 2^(bits-1)
  std::span<const int64_t> outlier_row_ptr;  // rows + 1, or empty
  std::span<const int32_t> outlier_cols;
  std::span<const float> outlier_values;
  std::shared_ptr<const void> owner;
  std::string scheme;  // the spec it came from ("w4g128"), for messages

  int64_t groups_per_row() const { return per_tensor ? 1 : (cols + group_size - 1) / group_size; }
  int64_t groups() const { return per_tensor ? 1 : rows * groups_per_row(); }
  int64_t group_index(int64_t row, int64_t col) const { return per_tensor ? 0 : row * groups_per_row() + col / group_size; }
  float zero(int64_t group) const {
    return zeros.empty() ? static_cast<float>(1 << (bits - 1)) : zeros[static_cast<size_t>(group)];
  }
  uint32_t code(int64_t row, int64_t col) const;  // one code, any bit width
  bool has_outliers() const { return !outlier_values.empty(); }
  // Memory it occupies (codes + parameters + outliers), for reports.
  size_t storage_bytes() const;

  // Throws qeval::Error("<what>: <problem>") when sizes are inconsistent.
  void validate(const std::string& what) const;
  void row_to_f32(int64_t row, float* out) const;  // cols floats
};

}  // namespace qeval
