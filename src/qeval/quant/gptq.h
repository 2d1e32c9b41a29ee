#pragma once
// GPTQ (Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers"), written from the paper's definitions.
//
// For a linear layer Y = W X with W [out, in] and calibration inputs X, GPTQ quantizes W one
// input column at a time and spreads each column's rounding error over the columns not yet
// quantized, minimising ||W X - W^ X||^2 through the Hessian H = 2 X X^T:
//   H += damp * mean(diag H) * I;  U = upper Cholesky factor of H^-1 (H^-1 = U^T U)
//   for column j:  q_j = quant(w_j);  e_j = (w_j - q_j) / U_jj;  w_k -= e_j U_jk for k > j
// The updates are applied lazily in blocks of block_size columns (the "lazy batch" trick; within
// a block immediately, to the rest of the matrix once per block as one matrix product), which
// changes only floating-point rounding.
//
// Groups (per-group granularity) always follow the ORIGINAL column order, also with act-order
// ("static groups"), so the codes pack like any RTN matrix and need no g_idx. A group's scale and
// zero-point are computed from the current, error-compensated weights of all its columns at the
// moment its first column is quantized (with the block's pending updates applied first, so the
// result does not depend on block_size). Per-channel / per-tensor parameters come from the
// original weights.
//
// Act-order processes columns in order of decreasing H_ii (stable for ties). Dead columns
// (H_ii == 0: the input feature is always zero) get H_ii = 1 and weight 0, as in the paper's code.
#include <cstdint>
#include <span>
#include <vector>

#include "qeval/quant/quantizer.h"

namespace qeval::quant {

// Accumulates H = (2 / n) * sum over samples x x^T for one linear layer, in double. A sample is
// one row (token) of an input batch X [tokens, in]. (The reference implementation counts
// sequences instead of tokens; the constant factor cancels in GPTQ because dampening is relative
// to mean(diag H).)
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t in_features);

  // x: [tokens, in_features] row-major.
  void add(std::span<const float> x, int64_t tokens);
  int64_t dim() const { return n_; }
  int64_t samples() const { return samples_; }
  // The full symmetric [in, in] matrix, row-major.
  std::vector<double> hessian() const;

 private:
  int64_t n_;
  int64_t samples_ = 0;
  std::vector<double> h_;  // upper triangle valid (row-major)
};

struct GptqOptions {
  double damp = 0.01;        // added to the diagonal: damp * mean(diag H)
  int64_t block_size = 128;  // lazy-update block (columns)
  bool act_order = false;
};

struct GptqResult {
  QuantizedMatrix quantized;   // codes and stored parameters, original column order
  std::vector<float> weights;  // dequantized W^, [rows, cols]
  int64_t dead_columns = 0;
  double proxy_loss = 0.0;  // sum over columns of ||w_j - q_j||^2 / (2 U_jj^2), the paper's objective
};

// w: [rows = out, cols = in] row-major; hessian: [cols, cols] row-major (HessianAccumulator).
// Throws qeval::Error on bad shapes / config, or when H + damping is not positive definite.
GptqResult gptq_quantize(const QuantizerConfig& cfg, std::span<const float> w, int64_t rows, int64_t cols,
                         std::span<const double> hessian, const GptqOptions& opts = {});

}  // namespace qeval::quant
