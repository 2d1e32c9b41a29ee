#pragma once
// LLM.int8() (Dettmers et al., 2022, "LLM.int8(): 8-bit Matrix Multiplication for Transformers at
// Scale"), simulated in float: the mixed-precision decomposition X W^T = X_o W_o^T + X_r W_r^T
// where O, the outlier input features, are those whose calibration magnitude (max |x| over all
// calibration tokens) is >= threshold (default 6.0). O stays in full precision in both factors;
// the rest is int8 absmax (vector-wise): W_r per output row, X_r per token, each with a scale
// absmax / 127 computed over the non-outlier features only.
//
// Simulation: llmint8_quantize returns W with its non-outlier columns quantized-dequantized (the
// outlier columns unchanged); LlmInt8Hooks does the same to each token's non-outlier activation
// features at run time. The product of the two equals the int8 x int8 -> int32 product rescaled,
// plus the full-precision outlier product.
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "qeval/engine/hooks.h"
#include "qeval/quant/act_quant.h"

namespace qeval::quant {

struct LlmInt8Result {
  std::vector<float> weights;            // dequantized [out, in]; outlier columns exact
  std::vector<int64_t> outlier_columns;  // ascending input-feature indices kept in full precision
  // The same weights as codes (8-bit symmetric, one scale per row over the regular columns) plus
  // the outlier columns' exact values in the CSR outlier fields: quantized.dequantize() == weights.
  QuantizedMatrix quantized;
  // Storage per weight: int8 codes of the non-outlier columns + one fp16 scale per row + fp16
  // outlier columns + a 32-bit index per outlier column, divided by out * in.
  double effective_bits = 8.0;
};

// Input features whose absmax is >= threshold (threshold = +inf: none).
std::vector<int64_t> llmint8_outlier_columns(std::span<const float> input_absmax, float threshold);

// w: [out, in] row-major; input_absmax: in values (ActivationRangeObserver::feature_absmax).
// Throws qeval::Error on size mismatch. bits: 8 in the paper; 2..8 accepted for studies.
LlmInt8Result llmint8_quantize(const float* w, int64_t out, int64_t in, std::span<const float> input_absmax,
                               float threshold = 6.0f, int bits = 8);

// Outlier columns of every observed linear layer.
std::map<LinearId, std::vector<int64_t>> llmint8_outliers(const std::map<LinearId, InputRange>& ranges,
                                                          float threshold = 6.0f);

// Per-token absmax quantization of the non-outlier input features of the listed layers; layers
// absent from the map are left untouched (so the caller decides which layers are LLM.int8()).
class LlmInt8Hooks final : public ForwardHooks {
 public:
  explicit LlmInt8Hooks(std::map<LinearId, std::vector<int64_t>> outliers, int bits = 8);
  void linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) override;
  const std::map<LinearId, std::vector<int64_t>>& outliers() const { return outliers_; }

 private:
  std::map<LinearId, std::vector<int64_t>> outliers_;
  std::map<LinearId, std::vector<uint8_t>> masks_;  // 1 = outlier feature
  int bits_;
  std::vector<float> scratch_;
};

}  // namespace qeval::quant
