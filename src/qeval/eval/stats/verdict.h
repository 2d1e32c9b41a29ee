#pragma once
// The "within 2% of full precision" rule.
//
// relative drop = (full - quantized) / |full| for a higher-is-better metric, and
// (quantized - full) / |full| for a lower-is-better one (perplexity, ECE); a negative drop is an
// improvement. The verdict itself is decided on the point estimate:
//   within      = relative drop <= tolerance (default 0.02; 1e-12 slack so that a drop of
//                 exactly 2% is not lost to rounding).
// Two qualifiers come from the paired comparison and never flip the verdict:
//   significant = the paired test's p-value < alpha (default 0.05): the quantized model's score
//                 differs from full precision by more than item-sampling noise;
//   conclusive  = the interval of the relative drop lies entirely on one side of the tolerance
//                 (upper end <= tolerance: surely within; lower end > tolerance: surely outside).
// So "within, not conclusive" means the point estimate passes but the data cannot rule out a
// drop above 2%. With full = 0 a relative drop is undefined: equal scores count as a drop of
// 0, a worse quantized score as +inf, a better one as -inf.
#include <string>

#include "qeval/eval/stats/paired.h"

namespace qeval::eval::stats {

struct ToleranceRule {
  double tolerance = 0.02;
  double alpha = 0.05;
  bool higher_is_better = true;
};

struct ToleranceVerdict {
  double full = 0, quantized = 0;
  double relative_drop = 0;
  double drop_ci_low = 0, drop_ci_high = 0;  // NaN when unknown
  double p_value = 1;
  double tolerance = 0.02, alpha = 0.05;
  bool within = false;
  bool significant = false;
  bool conclusive = false;
  std::string label() const { return within ? "within" : "outside"; }
  std::string describe() const;  // one line, e.g. for reports
};

// rel_change_ci: interval of (quantized - full) / |full|.
ToleranceVerdict judge_tolerance(double full, double quantized, double rel_change_ci_low, double rel_change_ci_high,
                                 double p_value, const ToleranceRule& rule = {});
// Configuration A is full precision, B the quantized one. For McNemar the interval of the
// relative change is the accuracy-difference interval divided by A's accuracy.
ToleranceVerdict judge_tolerance(const McNemarResult& r, const ToleranceRule& rule = {});
ToleranceVerdict judge_tolerance(const PairedBootstrapResult& r, const ToleranceRule& rule = {});

}  // namespace qeval::eval::stats
