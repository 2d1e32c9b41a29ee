#pragma once
// SpQR-style sparse-quantized representation (Dettmers et al., 2023, "SpQR: A Sparse-Quantized
// Representation for Near-Lossless LLM Weight Compression"), written from the paper's description.
//
// For a weight W [rows = out, cols = in]:
//  1. Small groups: G consecutive input columns of one row (QEval's group convention, default
//     G = 16) get an asymmetric min-max quantizer with B bits (scale s = (max - min) / (2^B - 1),
//     integer zero z = round(-min / s)), computed over the group's NON-outlier weights.
//  2. Second-level statistics: the scales (and separately the zeros) of stat_group consecutive
//     rows at the same group column are themselves quantized min-max asymmetric with stat_bits
//     (default 3) bits; their own scale/zero are stored in fp16 (and used rounded to fp16). Weights are then quantized with
//     the dequantized (s', z'): q = clamp(round(w / s' + z'), 0, 2^B - 1), w^ = s' (q - z').
//  3. Unstructured outliers are kept exactly (stored as fp16 value + column index, CSR rows).
//     Sensitivity of weight w_ij, leave-one-out over its group (what storing it exactly saves):
//        saliency_ij = E(group) - E(group without w_ij, stats refit without it)
//        E = sum_k (w_k - q(w_k))^2 / [H^-1]_kk      (OBS / GPTQ error weighting, H given)
//        E = sum_k (w_k - q(w_k))^2                  (no H)
//     Outliers: saliency > outlier_threshold * (mean per-weight E of the plain group quantizer)
//     when outlier_threshold > 0, else the top outlier_fraction of all weights.
//  H^-1 is computed with dampening damp * mean(diag H) (dead columns: H_ii = 1).
//  Not implemented (see report): GPTQ-style error propagation inside SpQR; outlier values are
//  kept in float32 (counted as 16 bits).
//
// Effective bits per weight (all counted, divided by rows * cols):
//    B * rows * cols                                 dense codes (outlier positions included)
//  + n_groups * 2 * stat_bits + n_stat_groups * 2 * (16 + 16)   quantized scales and zeros + their fp16 params
//    (or n_groups * 2 * 16 when quantize_stats is off)
//  + n_outliers * (16 + index_bits) + (n_outliers > 0 ? (rows + 1) * 32 : 0)
//    (index_bits = 16 when cols <= 65536, else 32; CSR row pointers of 32 bits)
#include <cstdint>
#include <span>
#include <vector>

#include "qeval/quant/spec.h"

namespace qeval::quant {

struct SpqrOptions {
  int bits = 3;                    // base bits, 2..8
  int64_t group_size = 16;         // G (columns)
  bool quantize_stats = true;      //
  int stat_bits = 3;               // second-level bits for scales and zeros, 2..8
  int64_t stat_group = 16;         // rows sharing one second-level scale/zero
  double outlier_threshold = 0.0;  // > 0: relative saliency threshold (see above)
  double outlier_fraction = 0.01;  // used when outlier_threshold == 0; 0 = no outliers
  double damp = 0.01;              // H^-1 dampening (fraction of mean diag H)
};

struct SpqrResult {
  std::vector<float> weights;  // dequantized [rows, cols], outliers exact
  int64_t rows = 0, cols = 0;
  int64_t outliers = 0;
  double outlier_fraction = 0.0;
  // CSR of the outliers (row_ptr rows+1, ascending columns per row, exact values).
  std::vector<int64_t> row_ptr;
  std::vector<int32_t> col_idx;
  std::vector<float> values;
  // The same as a QuantizedMatrix (B-bit asymmetric groups of G; stored scales / zeros are the
  // dequantized second-level statistics, zeros generally not integers; outliers in its CSR
  // fields): quantized.dequantize() == weights.
  QuantizedMatrix quantized;
  double effective_bits = 0.0;
  double base_bits = 0.0, stat_bits = 0.0, outlier_bits = 0.0;  // parts of effective_bits
  double weighted_error = 0.0;  // sum (w - w^)^2 / [H^-1]_jj (or plain squared error without H)
};

// w: [rows, cols] row-major; hessian: empty or [cols, cols] row-major (HessianAccumulator).
// Throws qeval::Error on bad shapes or options.
SpqrResult spqr_quantize(std::span<const float> w, int64_t rows, int64_t cols, const SpqrOptions& opts = {},
                         std::span<const double> hessian = {});

// Bits, group size and damp from a "spqr-w<B>[g<G>]" spec (throws for other families).
SpqrOptions spqr_options(const QuantSpec& spec);

// The effective-bits formula above, for given counts.
double spqr_effective_bits(const SpqrOptions& opts, int64_t rows, int64_t cols, int64_t outliers);

}  // namespace qeval::quant
