#pragma once
// AWQ (Lin et al., 2023, "AWQ: Activation-aware Weight Quantization for LLM Compression and
// Acceleration"), written from the paper.
//
// Scale search: for the linears that read one input X (q/k/v, gate/up, o alone, down alone),
// candidate per-input-channel scales s = mean|X|^alpha (alpha on a grid of `grid` points
// k/grid, k = 0..grid-1, i.e. [0, 1)), normalised to geometric mean 1. The loss of a candidate is
// the output error of those linears on the calibration inputs,
//   sum_k || X W_k^T - (X / s) Q(W_k diag(s))^T ||^2 = sum_k sum_rows d^T G d,
//   d = row of W_k - Q(W_k diag(s)) diag(s)^-1,  G = X^T X (the calibration Gram matrix; the
//   Hessian accumulator's 2/n X^T X, a constant factor away),
// and the best alpha wins (alpha = 0 is plain RTN, so the chosen scales never do worse on the
// calibration data). DEVIATION from the paper: the loss is measured at the linears' outputs,
// not after the whole attention / MLP block (which would need the block re-run per candidate).
//
// Clipping search: for each row and quantization group, the range is shrunk to ratio c (max |w|
// for symmetric, min and max for asymmetric) for c on `grid` points from 1 down to min_ratio;
// the c with the least output error d_g^T G_gg d_g (G_gg: the group's block of G) wins and the
// weights are clamped to it in place (so RTN or GPTQ afterwards see the clipped range).
#include <cstdint>
#include <span>
#include <vector>

#include "qeval/quant/quantizer.h"

namespace qeval::quant {

// Output error of replacing w by wq: sum over rows of d^T G d (d = w - wq), G [in, in].
double output_error(std::span<const float> w, std::span<const float> wq, int64_t rows, int64_t in,
                    std::span<const double> gram);

struct AwqScaleResult {
  std::vector<float> scales;  // in; all 1 when alpha = 0 wins
  double alpha = 0.0;
  double loss = 0.0;          // at the chosen alpha
  double loss_rtn = 0.0;      // alpha = 0
};
// weights: the linears sharing the input, each [rows_k, in]. power_of_two: every candidate's
// scales are rounded to powers of two (smoothquant.h round_to_power_of_two) before its loss is
// measured, so the loss is that of the scales actually folded.
AwqScaleResult awq_search_scales(const QuantizerConfig& cfg, const std::vector<std::span<const float>>& weights, int64_t in,
                                 std::span<const float> x_mean_abs, std::span<const double> gram, int grid = 20,
                                 bool power_of_two = false);

struct AwqClipResult {
  double loss_before = 0.0;  // RTN output error without clipping
  double loss_after = 0.0;   // with the chosen ratios
};
// Clamps w [rows, cols] in place. Per-tensor configurations are left alone.
AwqClipResult awq_clip_search(const QuantizerConfig& cfg, std::span<float> w, int64_t rows, int64_t cols,
                              std::span<const double> gram, int grid = 20, double min_ratio = 0.5);

}  // namespace qeval::quant
