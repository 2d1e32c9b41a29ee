#pragma once
// Closed-form summaries of per-item scores.
//
// mean_with_se: the mean, the sample standard deviation (n - 1 in the denominator) and the
// standard error s / sqrt(n), as lm-evaluation-harness reports for acc-style metrics; the
// interval is the normal one, mean +- z * SE with z = Phi^-1(1 - (1 - level) / 2) (1.95996 for
// 95%). For 0/1 scores this is the Wald interval with the sample variance; it keeps its nominal
// coverage when n * p and n * (1 - p) are not small (tests: n = 200, p = 0.5 and 0.2).
#include <cstddef>
#include <span>

namespace qeval::eval::stats {

double normal_cdf(double x);
double normal_quantile(double p);  // inverse of normal_cdf, p in (0, 1)

struct MeanEstimate {
  size_t n = 0;
  double mean = 0;
  double stddev = 0;  // sample standard deviation; 0 when n < 2
  double se = 0;      // stddev / sqrt(n)
  double ci_low = 0, ci_high = 0;
  double level = 0.95;
};

// Throws std::invalid_argument for no values or a level outside (0, 1).
MeanEstimate mean_with_se(std::span<const double> values, double level = 0.95);

}  // namespace qeval::eval::stats
