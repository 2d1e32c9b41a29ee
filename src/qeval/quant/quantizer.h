#pragma once
// One uniform integer quantizer for weights, activations and the KV cache.
//
// A matrix is row-major [rows, cols]: a weight is [out_features, in_features], activations and
// K/V are [tokens, features]. Each element belongs to exactly one parameter group, which owns
// one scale S and one zero-point Z:
//   PerTensor   one group for the whole matrix
//   PerChannel  one group per row (per output channel of a weight)
//   PerToken    one group per row (per token of an activation / K / V matrix); same math
//   PerGroup    runs of group_size consecutive elements along a row (the input dimension);
//               a row whose length is not a multiple of group_size keeps a shorter last group
//               (cols 172, g 64 -> groups of 64, 64, 44)
//
// Parameters of a group with minimum m and maximum M (N = bits, c = clip_ratio):
//   the range always includes 0 (m <- min(m, 0), M <- max(M, 0)) so 0 is exact and Z fits in N bits;
//   asymmetric: m_c = c*m, M_c = c*M, S = (M_c - m_c) / (2^N - 1), Z = round(-m_c / S),
//               codes q = clamp(round(x / S) + Z, 0, 2^N - 1)
//   symmetric:  A = c*max|x|, S = A / (2^(N-1) - 1), Z = 2^(N-1),
//               codes q = Z + clamp(round(x / S), -(2^(N-1) - 1), 2^(N-1) - 1)  (in [1, 2^N - 1];
//               the grid is symmetric around 0, code 0 is unused)
//   dequantized x^ = S * (q - Z). A group whose range is all zero gets S = 1.
// Inside the clipping range every element is within S/2 of its dequantized value.
//
// round() is the configured Rounding: Nearest (ties to even, as torch.round), Floor, Ceil, or
// Stochastic (floor(v + u), u uniform in [0,1) from a hash of (seed, element index): unbiased and
// reproducible).
//
// Perturbation (sensitivity studies): codes are always computed with the exact S and Z; the
// stored / dequantizing parameters are S' = S * scale_factor and Z' = Z * zero_factor (so +1% is a
// factor 1.01; Z' is then generally not an integer). This models scales and zero-points that are
// stored or transmitted inexactly, without changing which code each element gets.
#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qeval::quant {

enum class Granularity : uint8_t { PerTensor, PerChannel, PerToken, PerGroup };
enum class Rounding : uint8_t { Nearest, Floor, Ceil, Stochastic };

std::string_view granularity_name(Granularity g);  // "per-tensor", "per-channel", ...
std::string_view rounding_name(Rounding r);        // "nearest", "floor", "ceil", "stochastic"

struct QuantizerConfig {
  int bits = 8;                                       // 2..8
  Granularity granularity = Granularity::PerChannel;  //
  int64_t group_size = 0;                             // > 0 exactly when granularity == PerGroup
  bool symmetric = true;                              //
  double clip_ratio = 1.0;                            // (0, 1]; scales the range before S, Z
  Rounding rounding = Rounding::Nearest;              //
  uint64_t seed = 0;                                  // Stochastic rounding only
  double scale_factor = 1.0;                          // S' = S * f, f in (0, 2)
  double zero_factor = 1.0;                           // Z' = Z * f, f in [0, 2]

  int qmax() const { return (1 << bits) - 1; }  // largest code
  // Throws qeval::Error naming the bad field.
  void validate() const;
  friend bool operator==(const QuantizerConfig&, const QuantizerConfig&) = default;
};

// Scale and zero-point of one group.
struct ScaleZero {
  float scale = 1.0f;
  float zero = 0.0f;
};

// Which group each element of a [rows, cols] matrix belongs to.
struct GroupLayout {
  int64_t rows = 0;
  int64_t cols = 0;
  bool per_tensor = false;
  int64_t group_cols = 0;      // elements of a row per group (cols for per-row granularities)
  int64_t groups_per_row = 0;  // ceil(cols / group_cols)

  int64_t count() const { return per_tensor ? 1 : rows * groups_per_row; }
  int64_t index(int64_t row, int64_t col) const {
    return per_tensor ? 0 : row * groups_per_row + col / group_cols;
  }
  // Columns [begin, end) of group number g (within a row).
  int64_t group_begin(int64_t g) const { return g * group_cols; }
  int64_t group_end(int64_t g) const { return std::min(cols, (g + 1) * group_cols); }
};
GroupLayout group_layout(const QuantizerConfig& cfg, int64_t rows, int64_t cols);

// Exact (unperturbed) parameters for a group whose values span [min, max].
ScaleZero params_from_range(const QuantizerConfig& cfg, float min, float max);
// The stored parameters: perturbation applied.
ScaleZero perturbed(const QuantizerConfig& cfg, ScaleZero p);
// Code of x with exact parameters p; element_index feeds stochastic rounding.
uint8_t quantize_code(const QuantizerConfig& cfg, float x, ScaleZero p, uint64_t element_index);
inline float dequantize_code(int code, ScaleZero p) { return p.scale * (static_cast<float>(code) - p.zero); }

// Integer codes and stored parameters of a quantized matrix (ready for pack.h).
struct QuantizedMatrix {
  QuantizerConfig config;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> codes;  // rows*cols, row-major, each in [0, 2^bits - 1]
  std::vector<float> scales;   // one per group, GroupLayout::index order; perturbation applied
  std::vector<float> zeros;    // same; integers unless zero_perturb_pct != 0
  // Unstructured full-precision outliers (LLM.int8()'s outlier columns, SpQR's outliers) as CSR
  // over rows: row r's outliers are entries [outlier_row_ptr[r], outlier_row_ptr[r+1]) of
  // outlier_cols (ascending) / outlier_values. Empty vectors: no outliers. dequantize() returns
  // the outlier value in place of the grid value at those positions.
  std::vector<int64_t> outlier_row_ptr;  // rows + 1, or empty
  std::vector<int32_t> outlier_cols;
  std::vector<float> outlier_values;

  bool has_outliers() const { return !outlier_values.empty(); }

  GroupLayout layout() const { return group_layout(config, rows, cols); }
  std::vector<float> dequantize() const;
  void dequantize(std::span<float> out) const;  // rows*cols floats
};

// Round-to-nearest (or the configured rounding) of a whole matrix.
QuantizedMatrix quantize(const QuantizerConfig& cfg, std::span<const float> x, int64_t rows, int64_t cols);
// Quantize-dequantize without keeping codes (activations, K/V, quick weight studies).
std::vector<float> fake_quantize(const QuantizerConfig& cfg, std::span<const float> x, int64_t rows, int64_t cols);
void fake_quantize_inplace(const QuantizerConfig& cfg, std::span<float> x, int64_t rows, int64_t cols);

// Storage cost in bits per element, counting one scale of scale_bits per group and, for an
// asymmetric quantizer, one zero-point of `bits` bits per group (a symmetric zero is implicit).
double effective_bits(const QuantizerConfig& cfg, int64_t rows, int64_t cols, int scale_bits = 16);

}  // namespace qeval::quant
