#include "qeval/eval/compare.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

#include "qeval/eval/stats/summary.h"
#include "qeval/util/error.h"

namespace qeval::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Per-doc values of a mean metric, when every doc has one.
bool doc_column(const task::TaskResult& r, const std::string& metric, std::vector<double>& out) {
  out.clear();
  for (const auto& d : r.docs) {
    auto it = d.scores.find(metric);
    if (it == d.scores.end()) return false;
    out.push_back(it->second);
  }
  return true;
}

bool all_binary(const std::vector<double>& v) {
  for (double x : v)
    if (x != 0.0 && x != 1.0) return false;
  return true;
}

std::vector<double> softmax(const std::vector<double>& logprobs) {
  double m = -std::numeric_limits<double>::infinity();
  for (double x : logprobs) m = std::max(m, x);
  std::vector<double> p(logprobs.size());
  double z = 0;
  for (size_t i = 0; i < p.size(); ++i) z += p[i] = std::exp(logprobs[i] - m);
  for (double& x : p) x /= z;
  return p;
}

AnswerAgreement agreement(const std::string& name, const std::vector<std::string>& a,
                          const std::vector<std::string>& b) {
  AnswerAgreement g;
  g.answers = name;
  g.n = static_cast<int64_t>(a.size());
  int64_t same = 0;
  std::set<std::string> distinct;
  for (size_t i = 0; i < a.size(); ++i) {
    same += a[i] == b[i];
    distinct.insert(a[i]);
    distinct.insert(b[i]);
  }
  g.identical_rate = static_cast<double>(same) / static_cast<double>(a.size());
  g.answer_kl = answer_distribution_kl(a, b);
  g.distinct_answers = static_cast<int64_t>(distinct.size());
  return g;
}

}  // namespace

double answer_distribution_kl(const std::vector<std::string>& p_sample, const std::vector<std::string>& q_sample) {
  if (p_sample.empty() || q_sample.empty()) throw std::invalid_argument("answer KL: empty sample");
  std::map<std::string, std::pair<double, double>> counts;
  for (const auto& x : p_sample) counts[x].first += 1;
  for (const auto& x : q_sample) counts[x].second += 1;
  constexpr double kPseudo = 0.5;
  const double k = static_cast<double>(counts.size());
  const double np = static_cast<double>(p_sample.size()) + kPseudo * k;
  const double nq = static_cast<double>(q_sample.size()) + kPseudo * k;
  double kl = 0;
  for (const auto& [answer, c] : counts) {
    const double p = (c.first + kPseudo) / np, q = (c.second + kPseudo) / nq;
    kl += p * std::log(p / q);
  }
  return std::max(0.0, kl);
}

TaskComparison compare_results(const task::TaskResult& reference, const task::TaskResult& candidate,
                               const CompareOptions& options) {
  const std::string& name = candidate.task;
  if (reference.task != candidate.task)
    throw Error(fmt::format("compare: different tasks '{}' and '{}'", reference.task, candidate.task));
  if (reference.docs.size() != candidate.docs.size())
    throw Error(fmt::format("compare: {}: the reference scored {} docs and the candidate {}", name,
                            reference.docs.size(), candidate.docs.size()));
  for (size_t i = 0; i < reference.docs.size(); ++i)
    if (reference.docs[i].doc != candidate.docs[i].doc)
      throw Error(fmt::format("compare: {}: the two runs scored different docs (position {})", name, i));
  TaskComparison out;
  out.task = name;
  out.n_docs = static_cast<int64_t>(candidate.docs.size());
  if (candidate.docs.empty()) return out;

  for (const task::MetricResult& mb : candidate.metrics) {
    const task::MetricResult* ma = reference.metric(mb.name);
    if (ma == nullptr) continue;
    MetricComparison c;
    c.metric = mb.name;
    c.higher_is_better = mb.higher_is_better;
    const stats::ToleranceRule rule{.tolerance = options.tolerance, .alpha = options.alpha,
                                    .higher_is_better = mb.higher_is_better};
    std::vector<double> va, vb;
    if (mb.stderr_method == "mean" && doc_column(reference, mb.name, va) && doc_column(candidate, mb.name, vb) &&
        all_binary(va) && all_binary(vb)) {
      std::vector<int> ia(va.begin(), va.end()), ib(vb.begin(), vb.end());
      c.test = "mcnemar";
      c.mcnemar = stats::mcnemar(ia, ib, options.bootstrap.level);
      c.reference = c.mcnemar.accuracy_a;
      c.candidate = c.mcnemar.accuracy_b;
      c.delta = c.mcnemar.difference;
      c.ci_low = c.mcnemar.ci_low;
      c.ci_high = c.mcnemar.ci_high;
      c.p_value = c.mcnemar.p_value;
      c.p_value_mid = c.mcnemar.p_value_mid;
      c.verdict = stats::judge_tolerance(c.mcnemar, rule);
    } else {
      if (!ma->statistic || !mb.statistic) continue;
      c.test = "paired_bootstrap";
      c.bootstrap = stats::paired_bootstrap(candidate.docs.size(), ma->statistic, mb.statistic, options.bootstrap);
      c.reference = c.bootstrap.value_a;
      c.candidate = c.bootstrap.value_b;
      c.delta = c.bootstrap.delta;
      c.ci_low = c.bootstrap.ci_low;
      c.ci_high = c.bootstrap.ci_high;
      c.p_value = c.bootstrap.p_value;
      c.p_value_mid = kNaN;
      c.verdict = stats::judge_tolerance(c.bootstrap, rule);
    }
    out.metrics.push_back(std::move(c));
  }

  const size_t n = candidate.docs.size();
  if (candidate.output_type == task::OutputType::multiple_choice) {
    std::vector<std::string> pa, pb;
    std::vector<double> kls;
    for (size_t i = 0; i < n; ++i) {
      const auto& da = reference.docs[i];
      const auto& db = candidate.docs[i];
      pa.push_back(std::to_string(da.predicted));
      pb.push_back(std::to_string(db.predicted));
      if (da.logprobs.size() != db.logprobs.size())
        throw Error(fmt::format("compare: {}: doc {} has {} choices in one run and {} in the other", name, da.doc,
                                da.logprobs.size(), db.logprobs.size()));
      const auto p = softmax(da.logprobs), q = softmax(db.logprobs);
      double kl = 0;
      for (size_t c = 0; c < p.size(); ++c)
        if (p[c] > 0) kl += p[c] * (std::log(p[c]) - std::log(std::max(q[c], std::numeric_limits<double>::min())));
      kls.push_back(std::max(0.0, kl));
    }
    out.agreement.push_back(agreement("predicted_choice", pa, pb));
    const stats::MeanEstimate e = stats::mean_with_se(kls);
    out.has_choice_kl = true;
    out.choice_kl_mean = e.mean;
    out.choice_kl_se = e.se;
  } else if (candidate.output_type == task::OutputType::generate_until) {
    std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>> by_pipeline;
    std::vector<std::string> ga, gb;
    for (size_t i = 0; i < n; ++i) {
      for (const auto& [pipe, ans] : candidate.docs[i].answers) {
        auto it = reference.docs[i].answers.find(pipe);
        if (it == reference.docs[i].answers.end()) continue;
        by_pipeline[pipe].first.push_back(it->second);
        by_pipeline[pipe].second.push_back(ans);
      }
      // Every turn, joined with a separator that generations do not contain.
      auto joined = [](const std::vector<std::string>& turns) {
        std::string s;
        for (const auto& t : turns) s += t + '\x1f';
        return s;
      };
      ga.push_back(joined(reference.docs[i].generations));
      gb.push_back(joined(candidate.docs[i].generations));
    }
    for (const auto& [pipe, ab] : by_pipeline)
      if (ab.first.size() == n) out.agreement.push_back(agreement(pipe == "none" ? "answer" : "answer," + pipe, ab.first, ab.second));
    out.agreement.push_back(agreement("generation", ga, gb));
  }
  return out;
}

}  // namespace qeval::eval
