#pragma once
// SmoothQuant (Xiao et al., 2022, "SmoothQuant: Accurate and Efficient Post-Training
// Quantization for Large Language Models"), written from the paper.
//
// Activation outliers are migrated into the weights with a per-input-channel factor
//   s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)
// (max|W_j| over every linear that reads the same input), and X' = X / s, W' = W diag(s), so
// X' W'^T = X W^T exactly. X / s is folded into the preceding normalization's weight (and bias):
// attn_norm for q/k/v, ffn_norm for gate/up. Channels where either maximum is 0 keep s = 1.
//
// Scale folding helpers shared with AWQ live here too (fold_into_norm / fold_into_linear).
#include <cstdint>
#include <span>
#include <vector>

#include "qeval/engine/engine.h"

namespace qeval::quant {

// weights: the matrices sharing the input, each [rows_k, in] row-major.
std::vector<float> smoothquant_scales(std::span<const float> act_absmax, const std::vector<std::span<const float>>& weights,
                                      int64_t in, double alpha);

// Multiplies column j of w ([rows, in]) by s_j.
void scale_columns(std::span<float> w, int64_t rows, int64_t in, std::span<const float> s);
// Divides row j of w ([rows, cols]) by s_j (rows == s.size()).
void unscale_rows(std::span<float> w, int64_t rows, int64_t cols, std::span<const float> s);
// Rounds every scale to the nearest power of two (in log2). Folding such a scale is exact in
// float (W * s and g / s only change exponents), so the transformed float model computes
// bit-for-bit the same function; without it each fold leaves float32 rounding (~1e-7 relative
// per weight, ~2e-5 on the shared models' logits).
void round_to_power_of_two(std::span<float> s);
// X' = X / s through the norm in front of `site` of `layer`: weight (and bias) divided by s.
void fold_into_norm(Engine& engine, int layer, NormSite site, std::span<const float> s);

}  // namespace qeval::quant
