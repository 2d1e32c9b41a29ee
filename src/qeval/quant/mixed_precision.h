#pragma once
// Mixed-precision bit allocation under a bits-per-weight budget.
//
// Error model: quantizing layer l with b bits adds output error  E_l(b) = sensitivity_l * 4^-b
// (rounding noise power scales with step^2 and the step halves per extra bit). Every layer
// starts at the smallest candidate; a greedy knapsack then repeatedly applies the upgrade (one
// layer to its next candidate bit-width) with the largest error reduction per extra storage bit,
//   (E_l(b) - E_l(b')) / (params_l * (bpw_l(b') - bpw_l(b))),
// among upgrades that keep the total within budget and keep the order: a layer may be raised to
// b' only when every strictly more sensitive layer already has >= b' bits. So more sensitive
// layers always end with >= the bits of less sensitive ones, and achieved bpw <= budget.
// Storage per layer is effective_bits(base config at b bits) (codes + scales/zeros), averaged
// over all parameters. Sensitivities can be sensitivity_score() (layer_stats.h) or anything the
// caller measures (e.g. output error of the layer at the lowest candidate).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qeval/quant/quantizer.h"

namespace qeval::quant {

struct LayerCost {
  std::string name;  // e.g. LinearId::name()
  int64_t rows = 0, cols = 0;
  double sensitivity = 0;  // >= 0
};

struct MixedPrecisionOptions {
  std::vector<int> candidates = {2, 3, 4, 8};  // bit-widths, 2..8
  double budget_bpw = 4.0;                     // average effective bits per weight
  QuantizerConfig base;                        // granularity / group / symmetry; bits replaced
  int scale_bits = 16;                         // for effective_bits
};

struct LayerAssignment {
  std::string name;
  int bits = 0;
  QuantizerConfig config;  // base with these bits
  double bpw = 0;          // effective bits of this layer
};

struct MixedPrecisionPlan {
  std::vector<LayerAssignment> layers;  // input order
  double achieved_bpw = 0;
  double predicted_error = 0;  // sum of E_l(b_l)
  nlohmann::json to_json() const;
};

// Throws qeval::Error when even the smallest candidate everywhere exceeds the budget, or on bad
// input (no candidates, bits out of range, negative sensitivity, empty layer).
MixedPrecisionPlan assign_mixed_precision(std::span<const LayerCost> layers, const MixedPrecisionOptions& opts);

}  // namespace qeval::quant
