#include "qeval/eval/stats/verdict.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

namespace qeval::eval::stats {
namespace {

constexpr double kSlack = 1e-12;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

ToleranceVerdict judge_tolerance(double full, double quantized, double rel_change_ci_low, double rel_change_ci_high,
                                 double p_value, const ToleranceRule& rule) {
  ToleranceVerdict v;
  v.full = full;
  v.quantized = quantized;
  v.p_value = p_value;
  v.tolerance = rule.tolerance;
  v.alpha = rule.alpha;
  const double sign = rule.higher_is_better ? -1.0 : 1.0;  // drop = sign * relative change
  if (full != 0) {
    v.relative_drop = sign * (quantized - full) / std::fabs(full);
    const double a = sign * rel_change_ci_low, b = sign * rel_change_ci_high;
    v.drop_ci_low = std::fmin(a, b);
    v.drop_ci_high = std::fmax(a, b);
    if (std::isnan(a) || std::isnan(b)) v.drop_ci_low = v.drop_ci_high = kNaN;
  } else {
    const double change = sign * (quantized - full);
    v.relative_drop = change == 0 ? 0.0 : (change > 0 ? kInf : -kInf);
    v.drop_ci_low = v.drop_ci_high = kNaN;
  }
  v.within = v.relative_drop <= rule.tolerance + kSlack;
  v.significant = p_value < rule.alpha;
  v.conclusive = !std::isnan(v.drop_ci_low) &&
                 (v.within ? v.drop_ci_high <= rule.tolerance + kSlack : v.drop_ci_low > rule.tolerance + kSlack);
  return v;
}

ToleranceVerdict judge_tolerance(const McNemarResult& r, const ToleranceRule& rule) {
  const double base = std::fabs(r.accuracy_a);
  const double lo = base > 0 ? r.ci_low / base : kNaN;
  const double hi = base > 0 ? r.ci_high / base : kNaN;
  return judge_tolerance(r.accuracy_a, r.accuracy_b, lo, hi, r.p_value, rule);
}

ToleranceVerdict judge_tolerance(const PairedBootstrapResult& r, const ToleranceRule& rule) {
  return judge_tolerance(r.value_a, r.value_b, r.relative_ci_low, r.relative_ci_high, r.p_value, rule);
}

std::string ToleranceVerdict::describe() const {
  std::string ci = std::isnan(drop_ci_low) ? std::string("n/a")
                                          : fmt::format("{:.2f}%..{:.2f}%", 100 * drop_ci_low, 100 * drop_ci_high);
  return fmt::format("{} {:.0f}% (relative drop {:.2f}%, CI {}; {}, p={:.3g}; {})", label(), 100 * tolerance,
                     100 * relative_drop, ci, significant ? "significant difference" : "difference not significant",
                     p_value, conclusive ? "conclusive" : "not conclusive");
}

}  // namespace qeval::eval::stats
