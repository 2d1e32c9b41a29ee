#pragma once
// Robustness: the drop of a metric from a task's clean version to its adversarial (or shifted)
// version, declared in the adversarial task's file with `clean_task:` (docs/TASKS.md).
//
//   drop = clean - adversarial for a higher-is-better metric (adversarial - clean otherwise), so a
//   positive drop is a loss; relative_drop = drop / |clean|.
//
// Paired (clean_paired: doc i of both tasks is the same item, e.g. rows carrying an original and
// a perturbed sentence): McNemar for 0/1 per-doc scores, paired bootstrap otherwise (compare.h).
// Independent (different items, e.g. SNLI as the clean source of AdvGLUE's MNLI): a two-sample
// z-test with SE = sqrt(SE_clean^2 + SE_adversarial^2) from each metric's own standard error,
// normal 95% interval, two-sided p-value.
#include <cstdint>
#include <string>
#include <vector>

#include "qeval/eval/compare.h"
#include "qeval/eval/task/evaluate.h"

namespace qeval::eval {

struct RobustnessDrop {
  std::string clean_task, adversarial_task, metric;
  bool paired = false;
  std::string test;  // "mcnemar", "paired_bootstrap" or "two_sample_z"
  bool higher_is_better = true;
  int64_t n_clean = 0, n_adversarial = 0;
  double clean = 0, adversarial = 0;
  double drop = 0, relative_drop = 0;
  double se = 0;     // of the drop (two-sample: combined; paired: from the paired test's interval)
  double ci_low = 0, ci_high = 0;  // of the drop
  double p_value = 1;
};

// One entry per metric present in both results. Throws qeval::Error for paired results whose
// docs differ.
std::vector<RobustnessDrop> robustness_drop(const task::TaskResult& clean, const task::TaskResult& adversarial,
                                            bool paired, const CompareOptions& options = {});

}  // namespace qeval::eval
