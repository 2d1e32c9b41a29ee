#pragma once
// Paired comparison of two configurations (A = reference, e.g. full precision; B = candidate,
// e.g. quantized) scored on the same items.
//
// mcnemar: for 0/1 outcomes. Only the discordant items carry information: n01 = A right and B
// wrong, n10 = A wrong and B right. With d = n01 + n10 < exact_below (default 25) the p-value
// is the exact two-sided binomial test of n01 ~ Bin(d, 1/2), min(1, 2 P(X <= min(n01, n10)));
// otherwise the chi-square test with continuity correction,
// X2 = max(0, |n01 - n10| - 1)^2 / d on 1 degree of freedom. Both are conservative (the size
// of a 5% test is at most 5%); d = 0 gives p = 1. p_value_mid is the mid-p version of the exact
// test, 2 (P(X <= m) - P(X = m) / 2) with m = min(n01, n10), for every d (less conservative, size
// close to nominal; Fagerland, Lydersen and Laake 2013 recommend it). The accuracy difference B - A gets a Wald
// interval with the paired variance ((n01 + n10) - (n10 - n01)^2 / n) / n^2.
//
// paired_bootstrap: for any other statistic (means of graded scores, corpus BLEU/chrF). Both
// statistics are evaluated on the same resampled items. The interval of delta = B - A is the
// percentile interval; the two-sided p-value for "delta = 0" shifts the replicates to the null,
// p = (1 + #{|delta* - delta| >= |delta|}) / (samples + 1).
#include <cstdint>
#include <span>

#include "qeval/eval/stats/bootstrap.h"

namespace qeval::eval::stats {

struct McNemarResult {
  int64_t n = 0;
  int64_t both_correct = 0, only_a = 0, only_b = 0, both_wrong = 0;  // only_a = n01, only_b = n10
  double accuracy_a = 0, accuracy_b = 0;
  double difference = 0;  // accuracy_b - accuracy_a
  double se_difference = 0, ci_low = 0, ci_high = 0;
  double level = 0.95;
  bool exact = false;     // exact binomial (true) or chi-square with continuity correction
  double statistic = 0;   // X2 for the chi-square test, min(n01, n10) for the exact one
  double p_value = 1;
  double p_value_mid = 1;  // mid-p exact test
};

// Two-sided mid-p of the exact binomial test: 2 (P(X <= m) - P(X = m) / 2), m = min(k, n - k).
double binomial_two_sided_mid_p(int64_t k, int64_t n);
// Two-sided exact binomial p-value of k successes in n trials with p = 1/2.
double binomial_two_sided_p(int64_t k, int64_t n);
// P(X2 >= x) for a chi-square variable with 1 degree of freedom.
double chi_square_1_sf(double x);

// a[i], b[i] in {0, 1}; throws std::invalid_argument on different lengths, no items or other values.
McNemarResult mcnemar(std::span<const int> a, std::span<const int> b, double level = 0.95, int64_t exact_below = 25);

struct PairedBootstrapResult {
  double value_a = 0, value_b = 0;
  double delta = 0;  // value_b - value_a
  double se = 0;     // standard deviation of the delta replicates
  double ci_low = 0, ci_high = 0;
  // Percentile interval of (B* - A*) / |A*| over the replicates (replicates with A* = 0 skipped;
  // NaN when none is left).
  double relative_ci_low = 0, relative_ci_high = 0;
  double p_value = 1;
  double level = 0.95;
  int samples = 0;
  uint64_t seed = 0;
};

PairedBootstrapResult paired_bootstrap(size_t n_items, const Statistic& a, const Statistic& b,
                                       const BootstrapOptions& options = {});
PairedBootstrapResult paired_bootstrap_mean(std::span<const double> a, std::span<const double> b,
                                            const BootstrapOptions& options = {});

}  // namespace qeval::eval::stats
