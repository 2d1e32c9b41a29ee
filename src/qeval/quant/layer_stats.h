#pragma once
// Per-linear-layer statistics of weights and of the layer's input activations (from a
// calibration hook), for outlier studies and the mixed-precision policy.
//
//   std               population standard deviation
//   excess_kurtosis   E[(x - mean)^4] / var^2 - 3  (0 for a Gaussian, 3 for Laplace, large for
//                     heavy tails / outlier features)
//   max_median_ratio  max |x| / median |x|  (Gaussian: about 4-6 for 10^4..10^6 samples)
// Activation moments are exact (double sums over every observed value); the median of |x| comes
// from a deterministic sample of at most 65536 values per layer (every k-th value, k doubling as
// the sample fills).
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qeval/engine/engine.h"
#include "qeval/engine/hooks.h"

namespace qeval::quant {

struct TensorStats {
  int64_t count = 0;
  double mean = 0, std = 0, excess_kurtosis = 0;
  double max_abs = 0, median_abs = 0, max_median_ratio = 0;  // ratio 0 when the median is 0
  double mean_square = 0;                                      // E[x^2]
};
TensorStats tensor_stats(std::span<const float> x);

// Streaming statistics of the input of every linear layer.
class ActivationStatsObserver final : public ForwardHooks {
 public:
  void linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) override;
  std::optional<TensorStats> stats(const LinearId& id) const;
  std::vector<LinearId> layers() const;

 private:
  struct Acc {
    double n = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, max_abs = 0;
    uint64_t seen = 0, stride = 1;
    std::vector<float> sample;  // |x|
  };
  std::map<LinearId, Acc> acc_;
};

struct LayerStats {
  LinearId id;
  int64_t out_features = 0, in_features = 0;
  TensorStats weight;
  std::optional<TensorStats> activation;
  double sensitivity = 0;  // sensitivity_score()
};

// Sensitivity score used by the mixed-precision policy: the expected output-error variance of
// the layer per unit of (step / max|w|)^2 under round-to-nearest,
//   s = max|w|^2 * E[x^2] * in_features
// (step of a b-bit grid ~ max|w| 2^-b, rounding noise step^2/12 per weight, summed over
// in_features inputs of mean square E[x^2]; E[x^2] = 1 without activation statistics), times
// (1 + max(0, excess kurtosis of the activations) / 3): heavy-tailed inputs amplify the large
// errors the grid makes on the few dominant features.
double sensitivity_score(const LayerStats& s);

struct LayerStatsReport {
  std::vector<LayerStats> layers;  // engine.linear_ids() order
  nlohmann::json to_json() const;
};

// Weight stats of every linear layer of the engine, activation stats from `acts` where present.
LayerStatsReport collect_layer_stats(const Engine& engine, const ActivationStatsObserver* acts = nullptr);

nlohmann::json to_json(const TensorStats& s);

}  // namespace qeval::quant
