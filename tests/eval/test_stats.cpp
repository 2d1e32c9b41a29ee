// Statistics: closed-form values, and coverage / size checked by simulation with fixed seeds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "qeval/eval/stats/bootstrap.h"
#include "qeval/eval/stats/paired.h"
#include "qeval/eval/stats/rng.h"
#include "qeval/eval/stats/summary.h"
#include "qeval/eval/stats/verdict.h"

namespace qeval::eval::stats {
namespace {

TEST(Stats, NormalQuantile) {
  EXPECT_NEAR(normal_quantile(0.975), 1.959963984540054, 1e-12);
  EXPECT_NEAR(normal_quantile(0.5), 0.0, 1e-15);
  for (double p : {1e-10, 0.01, 0.3, 0.9, 0.999999})
    EXPECT_NEAR(normal_cdf(normal_quantile(p)), p, 1e-12 * std::max(1.0, p / 1e-10) + p * 1e-9);
  EXPECT_THROW(normal_quantile(1.0), std::invalid_argument);
}

TEST(Stats, MeanWithSe) {
  const std::vector<double> x = {1, 2, 3, 4};
  const MeanEstimate e = mean_with_se(x);
  EXPECT_DOUBLE_EQ(e.mean, 2.5);
  EXPECT_DOUBLE_EQ(e.stddev, std::sqrt(5.0 / 3));
  EXPECT_DOUBLE_EQ(e.se, std::sqrt(5.0 / 3) / 2);
  EXPECT_NEAR(e.ci_high - e.mean, 1.959963984540054 * e.se, 1e-12);
  const std::vector<double> one = {0.7};
  EXPECT_EQ(mean_with_se(one).se, 0.0);
}

TEST(Stats, RngIsDeterministicAndUniform) {
  Rng a(42), b(42), c(43);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.next(), b.next());
  EXPECT_NE(Rng(42).next(), c.next());
  Rng r(7);
  std::vector<int> counts(6, 0);
  for (int i = 0; i < 60000; ++i) ++counts[r.below(6)];
  for (int k : counts) EXPECT_NEAR(k, 10000, 400);
}

// 2000 samples of n = 200 Bernoulli(p): how often does the 95% interval contain p?
double bernoulli_coverage(double p, uint64_t seed) {
  Rng rng(seed);
  int covered = 0;
  std::vector<double> x(200);
  for (int draw = 0; draw < 2000; ++draw) {
    for (double& v : x) v = rng.bernoulli(p) ? 1.0 : 0.0;
    const MeanEstimate e = mean_with_se(x);
    if (e.ci_low <= p && p <= e.ci_high) ++covered;
  }
  return covered / 2000.0;
}

TEST(StatsCoverage, MeanIntervalOfBernoulli) {
  const double c50 = bernoulli_coverage(0.5, 1), c20 = bernoulli_coverage(0.2, 2);
  std::printf("95%% mean CI coverage, n=200 Bernoulli: p=0.5 %.2f%%, p=0.2 %.2f%%\n", 100 * c50, 100 * c20);
  EXPECT_GE(c50, 0.93);
  EXPECT_LE(c50, 0.97);
  EXPECT_GE(c20, 0.93);
  EXPECT_LE(c20, 0.97);
}

TEST(StatsCoverage, BootstrapPercentileIntervalOfNormalMean) {
  // 2000 data sets of n = 100 from N(3, 2^2); 300 resamples each.
  Rng rng(11);
  const int draws = 2000;
  int covered = 0;
  double se_ratio = 0;
  std::vector<double> x(100);
  for (int d = 0; d < draws; ++d) {
    for (double& v : x) v = 3 + 2 * rng.normal();
    const BootstrapEstimate e = bootstrap_mean(x, {300, static_cast<uint64_t>(1000 + d), 0.95});
    if (e.ci_low <= 3 && 3 <= e.ci_high) ++covered;
    se_ratio += e.se / mean_with_se(x).se;
  }
  const double coverage = static_cast<double>(covered) / draws;
  se_ratio /= draws;
  std::printf("bootstrap 95%% percentile CI coverage, normal mean n=100: %.2f%%; bootstrap SE / analytic SE %.3f\n",
              100 * coverage, se_ratio);
  EXPECT_GE(coverage, 0.93);
  EXPECT_LE(coverage, 0.97);
  EXPECT_NEAR(se_ratio, 1.0, 0.03);  // the bootstrap SE of a mean is s * sqrt((n-1)/n) / sqrt(n)
}

TEST(Stats, BootstrapIsReproducible) {
  const std::vector<double> x = {0.1, 0.5, 0.9, 0.3, 0.7};
  const BootstrapEstimate a = bootstrap_mean(x, {200, 5, 0.95});
  const BootstrapEstimate b = bootstrap_mean(x, {200, 5, 0.95});
  const BootstrapEstimate c = bootstrap_mean(x, {200, 6, 0.95});
  EXPECT_EQ(a.se, b.se);
  EXPECT_EQ(a.ci_low, b.ci_low);
  EXPECT_NE(a.se, c.se);
  EXPECT_DOUBLE_EQ(a.point, 0.5);
}

TEST(Stats, QuantileInterpolates) {
  const std::vector<double> s = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(quantile_sorted(s, 0.0), 1);
  EXPECT_DOUBLE_EQ(quantile_sorted(s, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(quantile_sorted(s, 1.0), 4);
  EXPECT_DOUBLE_EQ(quantile_sorted(s, 0.25), 1.75);
}

TEST(Stats, McNemarClosedForm) {
  // 10 discordant items, 8 favour A: exact two-sided p = 2 * P(X <= 2 | Bin(10, 1/2)) = 2 * 56/1024.
  std::vector<int> a, b;
  for (int i = 0; i < 8; ++i) a.push_back(1), b.push_back(0);
  for (int i = 0; i < 2; ++i) a.push_back(0), b.push_back(1);
  for (int i = 0; i < 30; ++i) a.push_back(1), b.push_back(1);
  McNemarResult r = mcnemar(a, b);
  EXPECT_TRUE(r.exact);
  EXPECT_NEAR(r.p_value, 2 * 56.0 / 1024, 1e-14);
  EXPECT_EQ(r.only_a, 8);
  EXPECT_EQ(r.only_b, 2);
  EXPECT_DOUBLE_EQ(r.difference, -6.0 / 40);
  // 30 vs 10 discordant: chi-square with continuity correction (|30-10|-1)^2/40 = 9.025.
  a.clear(), b.clear();
  for (int i = 0; i < 30; ++i) a.push_back(1), b.push_back(0);
  for (int i = 0; i < 10; ++i) a.push_back(0), b.push_back(1);
  r = mcnemar(a, b);
  EXPECT_FALSE(r.exact);
  EXPECT_DOUBLE_EQ(r.statistic, 9.025);
  EXPECT_NEAR(r.p_value, std::erfc(std::sqrt(9.025 / 2)), 1e-15);
  EXPECT_NEAR(r.p_value, 0.002663, 1e-6);
  EXPECT_EQ(mcnemar(std::vector<int>{1, 0}, std::vector<int>{1, 0}).p_value, 1.0);
  EXPECT_THROW(mcnemar(std::vector<int>{1}, std::vector<int>{1, 0}), std::invalid_argument);
}

// Fraction of p-values below 0.05 over 2000 simulated pairs of n = 200 outcomes where A and B
// are equally good; `discordance` is the chance that an item is right for exactly one of them.
double mcnemar_rejections(double discordance, double p_a_only_share, uint64_t seed, bool* exact_seen,
                          bool* chi2_seen) {
  Rng rng(seed);
  std::vector<int> a(200), b(200);
  int rejected = 0;
  for (int draw = 0; draw < 2000; ++draw) {
    for (size_t i = 0; i < a.size(); ++i) {
      const double u = rng.uniform();
      if (u < discordance * p_a_only_share) {
        a[i] = 1, b[i] = 0;
      } else if (u < discordance) {
        a[i] = 0, b[i] = 1;
      } else {
        a[i] = b[i] = rng.bernoulli(0.6) ? 1 : 0;
      }
    }
    const McNemarResult r = mcnemar(a, b);
    (r.exact ? *exact_seen : *chi2_seen) = true;
    if (r.p_value < 0.05) ++rejected;
  }
  return rejected / 2000.0;
}

TEST(StatsCoverage, McNemarSizeAndPower) {
  bool exact = false, chi2 = false;
  const double size_chi2 = mcnemar_rejections(0.3, 0.5, 21, &exact, &chi2);  // ~60 discordant: chi-square
  bool exact2 = false, chi2b = false;
  const double size_exact = mcnemar_rejections(0.06, 0.5, 22, &exact2, &chi2b);  // ~12 discordant: exact
  const double power = mcnemar_rejections(0.3, 0.7, 23, &exact, &chi2);
  std::printf("McNemar, n=200, H0 true: P(p<0.05) = %.2f%% (chi-square regime), %.2f%% (exact regime); "
              "power at 70/30 split of 30%% discordant: %.1f%%\n",
              100 * size_chi2, 100 * size_exact, 100 * power);
  EXPECT_TRUE(chi2);
  EXPECT_TRUE(exact2);
  // Both tests are conservative by construction: size a little under 5%, never far above it.
  EXPECT_GE(size_chi2, 0.025);
  EXPECT_LE(size_chi2, 0.06);
  EXPECT_GE(size_exact, 0.015);
  EXPECT_LE(size_exact, 0.06);
  EXPECT_GE(power, 0.8);
}

TEST(StatsCoverage, PairedBootstrapSizeAndPower) {
  // 400 pairs of n = 100 graded scores sharing an item effect; 400 resamples each.
  Rng rng(31);
  const int draws = 400;
  int rejected_null = 0, rejected_alt = 0, covered = 0;
  std::vector<double> a(100), b(100), c(100);
  for (int d = 0; d < draws; ++d) {
    for (size_t i = 0; i < a.size(); ++i) {
      const double item = rng.normal();
      a[i] = item + 0.5 * rng.normal();
      b[i] = item + 0.5 * rng.normal();
      c[i] = item + 0.5 * rng.normal() - 0.25;
    }
    const BootstrapOptions o{400, static_cast<uint64_t>(d), 0.95};
    const PairedBootstrapResult null = paired_bootstrap_mean(a, b, o);
    if (null.p_value < 0.05) ++rejected_null;
    if (null.ci_low <= 0 && 0 <= null.ci_high) ++covered;
    if (paired_bootstrap_mean(a, c, o).p_value < 0.05) ++rejected_alt;
  }
  const double size = static_cast<double>(rejected_null) / draws, power = static_cast<double>(rejected_alt) / draws;
  const double coverage = static_cast<double>(covered) / draws;
  std::printf("paired bootstrap, n=100: P(p<0.05 | H0) = %.2f%%, delta CI coverage %.2f%%, power at delta=-0.25 "
              "(0.35 sd) %.1f%%\n",
              100 * size, 100 * coverage, 100 * power);
  EXPECT_GE(size, 0.02);
  EXPECT_LE(size, 0.09);
  EXPECT_GE(coverage, 0.91);
  EXPECT_GE(power, 0.8);
}

TEST(Stats, ToleranceVerdict) {
  // Accuracy 0.80 -> 0.79: 1.25% drop, within.
  ToleranceVerdict v = judge_tolerance(0.80, 0.79, -0.03, 0.005, 0.4);
  EXPECT_TRUE(v.within);
  EXPECT_NEAR(v.relative_drop, 0.0125, 1e-12);
  EXPECT_FALSE(v.significant);
  EXPECT_FALSE(v.conclusive);  // the drop's interval reaches 3%
  EXPECT_EQ(v.label(), "within");
  // Exactly 2% is within despite rounding of (0.5 - 0.49) / 0.5.
  EXPECT_TRUE(judge_tolerance(0.5, 0.49, -0.021, -0.019, 0.01).within);
  // 5% drop, interval 3%..7%: outside and conclusive.
  v = judge_tolerance(0.60, 0.57, -0.07, -0.03, 0.001);
  EXPECT_FALSE(v.within);
  EXPECT_TRUE(v.conclusive);
  EXPECT_TRUE(v.significant);
  // Lower is better (perplexity 10 -> 10.1 is a 1% drop; 10 -> 10.3 is 3%).
  ToleranceRule lower;
  lower.higher_is_better = false;
  EXPECT_TRUE(judge_tolerance(10.0, 10.1, 0.005, 0.015, 0.2, lower).within);
  EXPECT_TRUE(judge_tolerance(10.0, 10.1, 0.005, 0.015, 0.2, lower).conclusive);
  EXPECT_FALSE(judge_tolerance(10.0, 10.3, 0.02, 0.04, 0.01, lower).within);
  // An improvement is within.
  EXPECT_TRUE(judge_tolerance(0.5, 0.6, 0.1, 0.3, 0.01).within);
  // full = 0.
  EXPECT_TRUE(judge_tolerance(0.0, 0.0, 0, 0, 1).within);
  EXPECT_FALSE(judge_tolerance(0.0, -0.1, 0, 0, 1).within);
  EXPECT_FALSE(v.describe().empty());
}

TEST(Stats, ToleranceVerdictFromPairedTests) {
  // McNemar: A right on 90 of 100, B loses 5 of them: 5.6% drop, outside.
  std::vector<int> a(100, 0), b(100, 0);
  for (int i = 0; i < 90; ++i) a[i] = 1;
  for (int i = 0; i < 85; ++i) b[i] = 1;
  const ToleranceVerdict m = judge_tolerance(mcnemar(a, b));
  EXPECT_FALSE(m.within);
  EXPECT_NEAR(m.relative_drop, 5.0 / 90, 1e-12);
  // Paired bootstrap of identical scores: no drop, within, not significant.
  std::vector<double> x(50);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<double>(i % 7) / 7;
  const ToleranceVerdict p = judge_tolerance(paired_bootstrap_mean(x, x, {200, 1, 0.95}));
  EXPECT_TRUE(p.within);
  EXPECT_FALSE(p.significant);
  EXPECT_TRUE(p.conclusive);
}

}  // namespace
}  // namespace qeval::eval::stats
