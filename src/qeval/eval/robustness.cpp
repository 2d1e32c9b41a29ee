#include "qeval/eval/robustness.h"

#include <cmath>

#include "qeval/eval/stats/summary.h"

namespace qeval::eval {

std::vector<RobustnessDrop> robustness_drop(const task::TaskResult& clean, const task::TaskResult& adversarial,
                                            bool paired, const CompareOptions& options) {
  std::vector<RobustnessDrop> out;
  const double z = stats::normal_quantile(1 - (1 - options.bootstrap.level) / 2);
  if (paired) {
    // compare_results wants the same task name on both sides; the docs must match by index.
    task::TaskResult c = clean;
    c.task = adversarial.task;
    const TaskComparison cmp = compare_results(c, adversarial, options);
    for (const MetricComparison& m : cmp.metrics) {
      RobustnessDrop d;
      d.clean_task = clean.task;
      d.adversarial_task = adversarial.task;
      d.metric = m.metric;
      d.paired = true;
      d.test = m.test;
      d.higher_is_better = m.higher_is_better;
      d.n_clean = d.n_adversarial = cmp.n_docs;
      d.clean = m.reference;
      d.adversarial = m.candidate;
      const double sign = m.higher_is_better ? -1.0 : 1.0;  // drop = sign * (adversarial - clean)
      d.drop = sign * m.delta;
      d.ci_low = std::fmin(sign * m.ci_low, sign * m.ci_high);
      d.ci_high = std::fmax(sign * m.ci_low, sign * m.ci_high);
      d.se = m.test == "mcnemar" ? m.mcnemar.se_difference : m.bootstrap.se;
      d.p_value = m.p_value;
      d.relative_drop = d.clean != 0 ? d.drop / std::fabs(d.clean) : std::nan("");
      out.push_back(d);
    }
    return out;
  }
  for (const task::MetricResult& ma : adversarial.metrics) {
    const task::MetricResult* mc = clean.metric(ma.name);
    if (mc == nullptr) continue;
    RobustnessDrop d;
    d.clean_task = clean.task;
    d.adversarial_task = adversarial.task;
    d.metric = ma.name;
    d.test = "two_sample_z";
    d.higher_is_better = ma.higher_is_better;
    d.n_clean = mc->n;
    d.n_adversarial = ma.n;
    d.clean = mc->value;
    d.adversarial = ma.value;
    d.drop = ma.higher_is_better ? mc->value - ma.value : ma.value - mc->value;
    d.relative_drop = d.clean != 0 ? d.drop / std::fabs(d.clean) : std::nan("");
    d.se = std::sqrt(mc->stderr_value * mc->stderr_value + ma.stderr_value * ma.stderr_value);
    d.ci_low = d.drop - z * d.se;
    d.ci_high = d.drop + z * d.se;
    if (d.se > 0) d.p_value = 2 * (1 - stats::normal_cdf(std::fabs(d.drop) / d.se));
    else d.p_value = d.drop == 0 ? 1.0 : 0.0;
    out.push_back(d);
  }
  return out;
}

}  // namespace qeval::eval
