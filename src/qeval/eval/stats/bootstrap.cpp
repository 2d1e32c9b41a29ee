#include "qeval/eval/stats/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "qeval/eval/stats/rng.h"

namespace qeval::eval::stats {
namespace {

void check(size_t n_items, const BootstrapOptions& o) {
  if (n_items == 0) throw std::invalid_argument("bootstrap: no items");
  if (o.samples < 2) throw std::invalid_argument("bootstrap: at least 2 resamples are needed");
  if (!(o.level > 0 && o.level < 1)) throw std::invalid_argument("bootstrap: level must be in (0, 1)");
}

}  // namespace

double quantile_sorted(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) throw std::invalid_argument("quantile of no values");
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + frac * (sorted[hi] - sorted[lo]);
}

std::vector<double> bootstrap_replicates(size_t n_items, const Statistic& stat, const BootstrapOptions& options) {
  check(n_items, options);
  Rng rng(options.seed);
  std::vector<uint32_t> weights(n_items);
  std::vector<double> reps;
  reps.reserve(static_cast<size_t>(options.samples));
  for (int b = 0; b < options.samples; ++b) {
    std::fill(weights.begin(), weights.end(), 0u);
    for (size_t k = 0; k < n_items; ++k) ++weights[rng.below(n_items)];
    reps.push_back(stat(weights));
  }
  return reps;
}

BootstrapEstimate bootstrap(size_t n_items, const Statistic& stat, const BootstrapOptions& options) {
  std::vector<double> reps = bootstrap_replicates(n_items, stat, options);
  BootstrapEstimate e;
  const std::vector<uint32_t> ones(n_items, 1u);
  e.point = stat(ones);
  e.level = options.level;
  e.samples = options.samples;
  e.seed = options.seed;
  double mean = 0;
  for (double r : reps) mean += r;
  mean /= static_cast<double>(reps.size());
  double ss = 0;
  for (double r : reps) ss += (r - mean) * (r - mean);
  e.se = std::sqrt(ss / static_cast<double>(reps.size() - 1));
  std::sort(reps.begin(), reps.end());
  e.ci_low = quantile_sorted(reps, (1 - options.level) / 2);
  e.ci_high = quantile_sorted(reps, (1 + options.level) / 2);
  return e;
}

double weighted_mean(std::span<const double> values, std::span<const uint32_t> weights) {
  double sum = 0, total = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    sum += weights[i] * values[i];
    total += weights[i];
  }
  return total > 0 ? sum / total : 0.0;
}

BootstrapEstimate bootstrap_mean(std::span<const double> values, const BootstrapOptions& options) {
  return bootstrap(
      values.size(), [values](std::span<const uint32_t> w) { return weighted_mean(values, w); }, options);
}

}  // namespace qeval::eval::stats
