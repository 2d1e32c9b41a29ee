#pragma once
// Random QEval Int8 / Int4 weights for the kernel tests: codes, row-aligned packed bytes,
// per-group scales and (asymmetric) zero-points, drawn in one fixed order from `rng`.
#include <cstdint>
#include <random>
#include <vector>

#include "qeval/kernels/packed_matrix.h"

namespace qeval::kernels::test {

struct RandomCodes {
  std::vector<int> codes;      // rows x cols
  std::vector<uint8_t> bytes;  // rows x format_row_bytes(f, cols)
  std::vector<float> scales, zeros;
};

// group 0: per channel; group < 0: per tensor. Codes over the whole range (symmetric: from 1).
// fractional_zeros: every third zero-point gets + 0.37 (perturbed / fp16-adjusted zeros).
inline RandomCodes random_codes(Format f, int64_t rows, int64_t cols, int64_t group, bool asym, bool fractional_zeros,
                                std::mt19937& rng) {
  const int bits = f == Format::Int8 ? 8 : 4;
  const int64_t gs = group <= 0 ? cols : group;
  const int64_t ngroups = group < 0 ? 1 : rows * ((cols + gs - 1) / gs);
  RandomCodes rc;
  const size_t rb = format_row_bytes(f, cols);
  rc.bytes.assign(rb * static_cast<size_t>(rows), 0);
  rc.codes.resize(static_cast<size_t>(rows * cols));
  std::uniform_int_distribution<int> code(asym ? 0 : 1, (1 << bits) - 1);
  for (auto& c : rc.codes) c = code(rng);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int q = rc.codes[static_cast<size_t>(r * cols + c)];
      uint8_t* row = rc.bytes.data() + rb * static_cast<size_t>(r);
      if (bits == 8) row[c] = static_cast<uint8_t>(q);
      else row[c / 2] |= static_cast<uint8_t>(q << ((c & 1) * 4));
    }
  std::uniform_real_distribution<float> su(0.001f, 0.05f);
  std::uniform_int_distribution<int> zu(0, (1 << bits) - 1);
  for (int64_t g = 0; g < ngroups; ++g) {
    rc.scales.push_back(su(rng));
    if (asym) rc.zeros.push_back(static_cast<float>(zu(rng)) + (fractional_zeros && g % 3 == 0 ? 0.37f : 0.0f));
  }
  return rc;
}

// The PackedMatrix over stored codes (no outliers): group 0 per channel, group < 0 per tensor.
inline PackedMatrix int_matrix(Format f, int64_t rows, int64_t cols, int64_t group, const std::vector<uint8_t>& bytes,
                               const std::vector<float>& scales, const std::vector<float>& zeros) {
  PackedMatrix m;
  m.format = f;
  m.rows = rows;
  m.cols = cols;
  m.data = bytes.data();
  m.row_bytes = format_row_bytes(f, cols);
  m.group_size = group <= 0 ? cols : group;
  m.scale_row_stride = group < 0 ? 0 : (cols + m.group_size - 1) / m.group_size;
  m.scales = scales.data();
  m.zeros = zeros.empty() ? nullptr : zeros.data();
  return m;
}

}  // namespace qeval::kernels::test
