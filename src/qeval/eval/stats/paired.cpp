#include "qeval/eval/stats/paired.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "qeval/eval/stats/rng.h"
#include "qeval/eval/stats/summary.h"

namespace qeval::eval::stats {

double binomial_two_sided_p(int64_t k, int64_t n) {
  if (n <= 0) return 1.0;
  const int64_t m = std::min(k, n - k);
  // P(X <= m), X ~ Bin(n, 1/2), summed in log space so that large n does not underflow.
  const double log_half_n = static_cast<double>(n) * std::log(0.5);
  const double lg_n1 = std::lgamma(static_cast<double>(n) + 1);
  double tail = 0;
  for (int64_t j = 0; j <= m; ++j)
    tail += std::exp(lg_n1 - std::lgamma(static_cast<double>(j) + 1) - std::lgamma(static_cast<double>(n - j) + 1) +
                     log_half_n);
  return std::min(1.0, 2 * tail);
}

double binomial_two_sided_mid_p(int64_t k, int64_t n) {
  if (n <= 0) return 1.0;
  const int64_t m = std::min(k, n - k);
  const double log_half_n = static_cast<double>(n) * std::log(0.5);
  const double lg_n1 = std::lgamma(static_cast<double>(n) + 1);
  double tail = 0, point = 0;
  for (int64_t j = 0; j <= m; ++j) {
    point = std::exp(lg_n1 - std::lgamma(static_cast<double>(j) + 1) - std::lgamma(static_cast<double>(n - j) + 1) +
                     log_half_n);
    tail += point;
  }
  return std::min(1.0, 2 * tail - point);
}

double chi_square_1_sf(double x) { return x <= 0 ? 1.0 : std::erfc(std::sqrt(x / 2)); }

McNemarResult mcnemar(std::span<const int> a, std::span<const int> b, double level, int64_t exact_below) {
  if (a.size() != b.size()) throw std::invalid_argument("McNemar: the two configurations have different item counts");
  if (a.empty()) throw std::invalid_argument("McNemar: no items");
  if (!(level > 0 && level < 1)) throw std::invalid_argument("McNemar: level must be in (0, 1)");
  McNemarResult r;
  r.level = level;
  for (size_t i = 0; i < a.size(); ++i) {
    if ((a[i] != 0 && a[i] != 1) || (b[i] != 0 && b[i] != 1))
      throw std::invalid_argument("McNemar: outcomes must be 0 or 1");
    if (a[i] && b[i]) ++r.both_correct;
    else if (a[i]) ++r.only_a;
    else if (b[i]) ++r.only_b;
    else ++r.both_wrong;
  }
  r.n = static_cast<int64_t>(a.size());
  const auto n = static_cast<double>(r.n);
  r.accuracy_a = static_cast<double>(r.both_correct + r.only_a) / n;
  r.accuracy_b = static_cast<double>(r.both_correct + r.only_b) / n;
  r.difference = static_cast<double>(r.only_b - r.only_a) / n;
  const auto d = static_cast<double>(r.only_a + r.only_b);
  const auto diff = static_cast<double>(r.only_b - r.only_a);
  r.se_difference = std::sqrt(std::max(0.0, d - diff * diff / n)) / n;
  const double z = normal_quantile(1 - (1 - level) / 2);
  r.ci_low = r.difference - z * r.se_difference;
  r.ci_high = r.difference + z * r.se_difference;
  const int64_t discordant = r.only_a + r.only_b;
  r.p_value_mid = binomial_two_sided_mid_p(r.only_a, discordant);
  if (discordant == 0) {
    r.exact = true;
    r.p_value = 1.0;
  } else if (discordant < exact_below) {
    r.exact = true;
    r.statistic = static_cast<double>(std::min(r.only_a, r.only_b));
    r.p_value = binomial_two_sided_p(r.only_a, discordant);
  } else {
    r.exact = false;
    const double excess = std::max(0.0, std::fabs(diff) - 1);
    r.statistic = excess * excess / d;
    r.p_value = chi_square_1_sf(r.statistic);
  }
  return r;
}

PairedBootstrapResult paired_bootstrap(size_t n_items, const Statistic& a, const Statistic& b,
                                       const BootstrapOptions& options) {
  if (n_items == 0) throw std::invalid_argument("paired bootstrap: no items");
  if (options.samples < 2) throw std::invalid_argument("paired bootstrap: at least 2 resamples are needed");
  if (!(options.level > 0 && options.level < 1)) throw std::invalid_argument("paired bootstrap: level must be in (0, 1)");
  PairedBootstrapResult r;
  r.level = options.level;
  r.samples = options.samples;
  r.seed = options.seed;
  const std::vector<uint32_t> ones(n_items, 1u);
  r.value_a = a(ones);
  r.value_b = b(ones);
  r.delta = r.value_b - r.value_a;

  Rng rng(options.seed);
  std::vector<uint32_t> w(n_items);
  std::vector<double> deltas, relative;
  deltas.reserve(static_cast<size_t>(options.samples));
  int extreme = 0;
  for (int s = 0; s < options.samples; ++s) {
    std::fill(w.begin(), w.end(), 0u);
    for (size_t k = 0; k < n_items; ++k) ++w[rng.below(n_items)];
    const double va = a(w), vb = b(w);
    const double dlt = vb - va;
    deltas.push_back(dlt);
    if (va != 0) relative.push_back(dlt / std::fabs(va));
    if (std::fabs(dlt - r.delta) >= std::fabs(r.delta)) ++extreme;
  }
  r.p_value = (1.0 + extreme) / (options.samples + 1.0);
  double mean = 0;
  for (double x : deltas) mean += x;
  mean /= static_cast<double>(deltas.size());
  double ss = 0;
  for (double x : deltas) ss += (x - mean) * (x - mean);
  r.se = std::sqrt(ss / static_cast<double>(deltas.size() - 1));
  std::sort(deltas.begin(), deltas.end());
  r.ci_low = quantile_sorted(deltas, (1 - options.level) / 2);
  r.ci_high = quantile_sorted(deltas, (1 + options.level) / 2);
  if (relative.empty()) {
    r.relative_ci_low = r.relative_ci_high = std::numeric_limits<double>::quiet_NaN();
  } else {
    std::sort(relative.begin(), relative.end());
    r.relative_ci_low = quantile_sorted(relative, (1 - options.level) / 2);
    r.relative_ci_high = quantile_sorted(relative, (1 + options.level) / 2);
  }
  return r;
}

PairedBootstrapResult paired_bootstrap_mean(std::span<const double> a, std::span<const double> b,
                                            const BootstrapOptions& options) {
  if (a.size() != b.size()) throw std::invalid_argument("paired bootstrap: the two configurations have different item counts");
  return paired_bootstrap(
      a.size(), [a](std::span<const uint32_t> w) { return weighted_mean(a, w); },
      [b](std::span<const uint32_t> w) { return weighted_mean(b, w); }, options);
}

}  // namespace qeval::eval::stats
