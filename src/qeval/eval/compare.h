#pragma once
// Paired comparison of two evaluations of the same task on the same docs: a reference
// configuration (A, e.g. full precision) and a candidate (B, e.g. quantized).
//
// Per metric:
//  - 0/1 per-doc scores (acc, acc_norm, exact_match on every doc of both runs): McNemar's test
//    (stats/paired.h: exact binomial below 25 discordant docs, chi-square with continuity
//    correction above; the mid-p is reported beside it), Wald interval of the paired difference;
//  - anything else (graded means, corpus BLEU / chrF, ECE, perplexities): paired bootstrap of
//    MetricResult::statistic, both statistics on the same resampled docs;
//  - the verdict of the "within tolerance of full precision" rule (stats/verdict.h).
//
// Agreement of the answers (issue: agreement between base and quantized generations):
//  - identical_rate: share of docs whose answer is the same in both runs (multiple_choice: the
//    predicted choice; generate_until: each filter pipeline's extracted answer, and the raw
//    generations of every turn);
//  - answer_kl: relative entropy KL(P_A || P_B) in nats of the two answer distributions over the
//    corpus (how often each distinct answer occurs), both smoothed by adding 0.5 to the count of
//    every answer seen in either run so that it stays finite;
//  - choice_kl (multiple_choice): mean over docs of KL(p_A || p_B) of the softmax distributions
//    over the choices' log-likelihoods, and its standard error.
#include <cstdint>
#include <string>
#include <vector>

#include "qeval/eval/stats/bootstrap.h"
#include "qeval/eval/stats/paired.h"
#include "qeval/eval/stats/verdict.h"
#include "qeval/eval/task/evaluate.h"

namespace qeval::eval {

struct CompareOptions {
  stats::BootstrapOptions bootstrap{};  // paired bootstrap: 1000 resamples, seed 0, 95%
  double tolerance = 0.02;              // relative drop allowed by the verdict
  double alpha = 0.05;
};

struct MetricComparison {
  std::string metric;
  std::string test;          // "mcnemar" or "paired_bootstrap"
  bool higher_is_better = true;
  double reference = 0, candidate = 0;
  double delta = 0;          // candidate - reference
  double ci_low = 0, ci_high = 0;  // interval of delta
  double p_value = 1;        // McNemar: exact or chi-square (see stats::McNemarResult)
  double p_value_mid = 1;    // McNemar only: mid-p; NaN for the bootstrap
  stats::McNemarResult mcnemar;            // when test == "mcnemar"
  stats::PairedBootstrapResult bootstrap;  // when test == "paired_bootstrap"
  stats::ToleranceVerdict verdict;
};

struct AnswerAgreement {
  std::string answers;       // "predicted_choice", "answer,<pipeline>", "generation"
  int64_t n = 0;
  double identical_rate = 0;
  double answer_kl = 0;      // KL(P_A || P_B) of the answer distributions, nats
  int64_t distinct_answers = 0;  // in either run
};

struct TaskComparison {
  std::string task;
  int64_t n_docs = 0;
  std::vector<MetricComparison> metrics;
  std::vector<AnswerAgreement> agreement;
  bool has_choice_kl = false;
  double choice_kl_mean = 0, choice_kl_se = 0;  // multiple_choice
};

// Throws qeval::Error when the two results are not of the same task and docs.
TaskComparison compare_results(const task::TaskResult& reference, const task::TaskResult& candidate,
                               const CompareOptions& options = {});

// KL(P || Q) in nats of two samples of categorical answers, each count smoothed by +0.5 over the
// answers seen in either sample. Throws std::invalid_argument when a sample is empty.
double answer_distribution_kl(const std::vector<std::string>& p_sample, const std::vector<std::string>& q_sample);

}  // namespace qeval::eval
