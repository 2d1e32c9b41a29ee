#pragma once
// Non-parametric bootstrap over items, for metrics without a closed-form standard error
// (corpus BLEU and chrF, ECE, means of bounded scores).
//
// A statistic is evaluated on item multiplicities: weights[i] is how many times item i is in
// the resample (all ones for the observed data), so a corpus metric sums weight * segment
// statistics and a mean is sum(weight * x) / n. Each replicate draws n items with replacement
// from Rng(seed). The standard error is the sample standard deviation of the replicates; the
// interval is the percentile interval (quantiles (1 - level) / 2 and (1 + level) / 2 of the
// replicates, linearly interpolated as numpy.quantile's default does).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace qeval::eval::stats {

using Statistic = std::function<double(std::span<const uint32_t> weights)>;

struct BootstrapOptions {
  int samples = 1000;
  uint64_t seed = 0;
  double level = 0.95;
};

struct BootstrapEstimate {
  double point = 0;  // the statistic on the observed data
  double se = 0;
  double ci_low = 0, ci_high = 0;
  double level = 0.95;
  int samples = 0;
  uint64_t seed = 0;
};

// Quantile q in [0, 1] of sorted values, linear interpolation between order statistics.
double quantile_sorted(const std::vector<double>& sorted, double q);

// The replicates themselves (unsorted), for callers that need more than the summary.
std::vector<double> bootstrap_replicates(size_t n_items, const Statistic& stat, const BootstrapOptions& options);

// Throws std::invalid_argument for no items, samples < 2 or a level outside (0, 1).
BootstrapEstimate bootstrap(size_t n_items, const Statistic& stat, const BootstrapOptions& options = {});
BootstrapEstimate bootstrap_mean(std::span<const double> values, const BootstrapOptions& options = {});

// Weighted mean sum(w_i x_i) / sum(w_i), the statistic bootstrap_mean resamples.
double weighted_mean(std::span<const double> values, std::span<const uint32_t> weights);

}  // namespace qeval::eval::stats
