#include "qeval/eval/stats/summary.h"

#include <cmath>
#include <stdexcept>

namespace qeval::eval::stats {

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

double normal_quantile(double p) {
  if (!(p > 0 && p < 1)) throw std::invalid_argument("normal_quantile: p must be in (0, 1)");
  // Bisection on the CDF: monotone, and 200 halvings of [-40, 40] reach the double's resolution.
  double lo = -40, hi = 40;
  for (int i = 0; i < 200 && hi - lo > 0; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (mid == lo || mid == hi) break;
    if (normal_cdf(mid) < p)
      lo = mid;
    else
      hi = mid;
  }
  return 0.5 * (lo + hi);
}

MeanEstimate mean_with_se(std::span<const double> values, double level) {
  if (values.empty()) throw std::invalid_argument("mean_with_se: no values");
  if (!(level > 0 && level < 1)) throw std::invalid_argument("mean_with_se: level must be in (0, 1)");
  MeanEstimate e;
  e.n = values.size();
  e.level = level;
  double sum = 0;
  for (double v : values) sum += v;
  e.mean = sum / static_cast<double>(e.n);
  if (e.n > 1) {
    double ss = 0;
    for (double v : values) ss += (v - e.mean) * (v - e.mean);
    e.stddev = std::sqrt(ss / static_cast<double>(e.n - 1));
    e.se = e.stddev / std::sqrt(static_cast<double>(e.n));
  }
  const double z = normal_quantile(1 - (1 - level) / 2);
  e.ci_low = e.mean - z * e.se;
  e.ci_high = e.mean + z * e.se;
  return e;
}

}  // namespace qeval::eval::stats
