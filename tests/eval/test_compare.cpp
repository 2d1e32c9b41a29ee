// Paired comparison of two evaluations (compare.h) and the on-disk request cache
// (request_cache.h), with fake language models on small synthetic tasks.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "qeval/eval/compare.h"
#include "qeval/eval/request_cache.h"
#include "qeval/eval/robustness.h"
#include "qeval/eval/stats/paired.h"
#include "qeval/eval/task/evaluate.h"
#include "qeval/eval/task/task.h"
#include "test_support.h"

namespace qeval::eval {
namespace {

namespace fs = std::filesystem;
using task::LoglikelihoodResult;
using task::Request;
using task::RollingResult;

// Answers from functions of the request; counts the requests it is asked.
class CountingModel : public task::LanguageModel {
 public:
  std::function<LoglikelihoodResult(const Request&)> ll;
  std::function<std::string(const Request&)> gen = [](const Request& r) { return "answer " + r.context.substr(0, 3); };
  size_t requests = 0;
  std::vector<LoglikelihoodResult> loglikelihood(const std::vector<Request>& rs) override {
    std::vector<LoglikelihoodResult> out;
    for (const auto& r : rs) out.push_back(ll(r));
    requests += rs.size();
    return out;
  }
  std::vector<RollingResult> loglikelihood_rolling(const std::vector<Request>& rs) override {
    std::vector<RollingResult> out;
    for (const auto& r : rs) out.push_back({-0.25 * static_cast<double>(r.continuation.size()), 3});
    requests += rs.size();
    return out;
  }
  std::vector<std::string> generate_until(const std::vector<Request>& rs) override {
    std::vector<std::string> out;
    for (const auto& r : rs) out.push_back(gen(r));
    requests += rs.size();
    return out;
  }
};

// A 4-choice task of `n` docs (gold = doc % 4) and a translation-like generation task.
struct Tasks {
  test::TempDir dir;
  task::TaskConfig mc, gen;
  task::TaskData mc_data, gen_data;
  explicit Tasks(int n) {
    fs::create_directories(dir.path() / "tasks");
    fs::create_directories(dir.path() / "data");
    test::write_bytes(dir.path() / "tasks" / "mc.yaml", R"Y(task: mc
output_type: multiple_choice
dataset:
  path: mc.jsonl
doc_to_text: "Q{{ i }}:"
doc_to_choice: "{{ choices }}"
doc_to_target: "{{ label }}"
metric_list: [acc, acc_norm, ece]
)Y");
    test::write_bytes(dir.path() / "tasks" / "gen.yaml", R"Y(task: gen
output_type: generate_until
dataset:
  path: gen.jsonl
doc_to_text: "{{ src }}"
doc_to_target: "{{ ref }}"
generation_kwargs: {until: ["\n"], max_gen_toks: 16}
metric_list: [exact_match, chrf]
)Y");
    std::string mc_rows, gen_rows;
    for (int i = 0; i < n; ++i) {
      mc_rows += "{\"i\": " + std::to_string(i) + ", \"choices\": [\"a\", \"bb\", \"ccc\", \"dddd\"], \"label\": " +
                 std::to_string(i % 4) + "}\n";
      gen_rows += "{\"src\": \"s" + std::to_string(i) + "\", \"ref\": \"answer s" + std::to_string(i % 10) + "\"}\n";
    }
    test::write_bytes(dir.path() / "data" / "mc.jsonl", mc_rows);
    test::write_bytes(dir.path() / "data" / "gen.jsonl", gen_rows);
    mc = task::load_task_file(dir.path() / "tasks" / "mc.yaml");
    gen = task::load_task_file(dir.path() / "tasks" / "gen.yaml");
    mc_data = task::load_task_data(mc, dir.path() / "data");
    gen_data = task::load_task_data(gen, dir.path() / "data");
  }
};

int doc_index(const Request& r) { return std::stoi(r.context.substr(1, r.context.find(':') - 1)); }

// Right on every doc where `right(doc)`, else the choice after the gold.
std::function<LoglikelihoodResult(const Request&)> picker(std::function<bool(int)> right) {
  return [right](const Request& r) {
    const int d = doc_index(r);
    const int want = right(d) ? d % 4 : (d + 1) % 4;
    return LoglikelihoodResult{r.choice == want ? -0.5 : -3.0 - 0.1 * r.choice, r.choice == want, 1};
  };
}

TEST(Compare, AccuracyUsesMcNemarOnTheSameDocs) {
  Tasks t(60);
  CountingModel a, b;
  a.ll = picker([](int d) { return d % 3 != 0; });       // 40 right
  b.ll = picker([](int d) { return d % 3 != 0 && d % 5 != 0; });  // loses the 8 docs with d%5==0, d%3!=0
  const auto ra = task::evaluate(t.mc, t.mc_data, a);
  const auto rb = task::evaluate(t.mc, t.mc_data, b);
  const TaskComparison c = compare_results(ra, rb);
  ASSERT_EQ(c.n_docs, 60);
  const MetricComparison* acc = nullptr;
  for (const auto& m : c.metrics)
    if (m.metric == "acc") acc = &m;
  ASSERT_NE(acc, nullptr);
  EXPECT_EQ(acc->test, "mcnemar");
  EXPECT_EQ(acc->mcnemar.only_a, 8);
  EXPECT_EQ(acc->mcnemar.only_b, 0);
  EXPECT_NEAR(acc->reference, 40.0 / 60, 1e-12);
  EXPECT_NEAR(acc->candidate, 32.0 / 60, 1e-12);
  EXPECT_NEAR(acc->delta, -8.0 / 60, 1e-12);
  EXPECT_TRUE(acc->mcnemar.exact);
  EXPECT_NEAR(acc->p_value, 2.0 / 256, 1e-12);       // 2 * 0.5^8
  EXPECT_NEAR(acc->p_value_mid, 1.0 / 256, 1e-12);   // 2 * (0.5^8 - 0.5^8 / 2)
  EXPECT_FALSE(acc->verdict.within);                  // a 20% relative drop
  EXPECT_TRUE(acc->verdict.significant);
  EXPECT_NEAR(acc->verdict.relative_drop, 0.2, 1e-12);
  // ECE is not a 0/1 mean: paired bootstrap, lower is better.
  bool saw_ece = false;
  for (const auto& m : c.metrics)
    if (m.metric == "ece") {
      saw_ece = true;
      EXPECT_EQ(m.test, "paired_bootstrap");
      EXPECT_FALSE(m.higher_is_better);
      EXPECT_NEAR(m.reference, ra.metric("ece")->value, 1e-12);
      EXPECT_NEAR(m.candidate, rb.metric("ece")->value, 1e-12);
      EXPECT_LE(m.ci_low, m.ci_high);
    }
  EXPECT_TRUE(saw_ece);
  // Agreement: the predictions differ on exactly the 8 docs.
  ASSERT_FALSE(c.agreement.empty());
  EXPECT_EQ(c.agreement[0].answers, "predicted_choice");
  EXPECT_NEAR(c.agreement[0].identical_rate, 52.0 / 60, 1e-12);
  // The 8 changed predictions (d = 5, 10, 20, ...: 1,2,0,1,3,0,2,3 -> 2,3,1,2,0,1,3,0) permute the
  // same labels, so the two answer distributions are equal although the answers differ.
  EXPECT_NEAR(c.agreement[0].answer_kl, 0.0, 1e-15);
  EXPECT_TRUE(c.has_choice_kl);
  EXPECT_GT(c.choice_kl_mean, 0.0);
}

TEST(Compare, IdenticalRunsAreWithinToleranceWithNoDifference) {
  Tasks t(40);
  CountingModel a;
  a.ll = picker([](int d) { return d % 2 == 0; });
  const auto r1 = task::evaluate(t.mc, t.mc_data, a);
  const auto r2 = task::evaluate(t.mc, t.mc_data, a);
  const TaskComparison c = compare_results(r1, r2);
  for (const auto& m : c.metrics) {
    EXPECT_EQ(m.delta, 0.0) << m.metric;
    EXPECT_EQ(m.p_value, 1.0) << m.metric;
    EXPECT_TRUE(m.verdict.within) << m.metric;
  }
  EXPECT_EQ(c.agreement[0].identical_rate, 1.0);
  EXPECT_NEAR(c.agreement[0].answer_kl, 0.0, 1e-15);
  EXPECT_NEAR(c.choice_kl_mean, 0.0, 1e-15);
}

TEST(Compare, CorpusMetricsUsePairedBootstrapAndAnswersAgreement) {
  Tasks t(30);
  CountingModel a, b;
  b.gen = [](const Request& r) { return r.context[1] == '1' ? std::string("wrong") : "answer " + r.context.substr(0, 3); };
  const auto ra = task::evaluate(t.gen, t.gen_data, a);
  const auto rb = task::evaluate(t.gen, t.gen_data, b);
  const TaskComparison c = compare_results(ra, rb);
  bool saw_chrf = false, saw_em = false;
  for (const auto& m : c.metrics) {
    if (m.metric == "chrf") {
      saw_chrf = true;
      EXPECT_EQ(m.test, "paired_bootstrap");
      EXPECT_NEAR(m.reference, ra.metric("chrf")->value, 1e-9);
      EXPECT_NEAR(m.candidate, rb.metric("chrf")->value, 1e-9);
      EXPECT_LT(m.delta, 0.0);
      EXPECT_EQ(m.bootstrap.samples, 1000);
    }
    if (m.metric == "exact_match") {
      saw_em = true;
      EXPECT_EQ(m.test, "mcnemar");
    }
  }
  EXPECT_TRUE(saw_chrf);
  EXPECT_TRUE(saw_em);
  // Docs s1, s10..s19: 11 of 30 answers differ.
  bool saw_answer = false;
  for (const auto& g : c.agreement)
    if (g.answers == "answer") {
      saw_answer = true;
      EXPECT_NEAR(g.identical_rate, 19.0 / 30, 1e-12);
    }
  EXPECT_TRUE(saw_answer);
}

TEST(Compare, RefusesDifferentDocs) {
  Tasks t(20);
  CountingModel a;
  a.ll = picker([](int) { return true; });
  const auto r1 = task::evaluate(t.mc, t.mc_data, a);
  auto r2 = r1;
  r2.docs.pop_back();
  EXPECT_THROW(compare_results(r1, r2), Error);
  auto r3 = r1;
  r3.task = "other";
  EXPECT_THROW(compare_results(r1, r3), Error);
}

TEST(Compare, AnswerDistributionKl) {
  // P = {x: 3, y: 1}, Q = {x: 1, y: 3}; +0.5 smoothing: p = (3.5, 1.5) / 5, q = (1.5, 3.5) / 5.
  const double p1 = 0.7, p2 = 0.3;
  const double want = p1 * std::log(p1 / p2) + p2 * std::log(p2 / p1);
  EXPECT_NEAR(answer_distribution_kl({"x", "x", "x", "y"}, {"x", "y", "y", "y"}), want, 1e-12);
  EXPECT_NEAR(answer_distribution_kl({"a", "b"}, {"b", "a"}), 0.0, 1e-15);
  EXPECT_THROW(answer_distribution_kl({}, {"a"}), std::invalid_argument);
}

TEST(Compare, McNemarMidP) {
  // n01 = 1, n10 = 6: exact p = 2 (1 + 7) / 128; mid-p = 2 (8 / 128 - 7 / 256).
  EXPECT_NEAR(stats::binomial_two_sided_p(1, 7), 0.125, 1e-12);
  EXPECT_NEAR(stats::binomial_two_sided_mid_p(1, 7), 2 * (8.0 / 128 - 3.5 / 128), 1e-12);
  // Balanced: both tails cover everything; the mid-p is exactly 1.
  EXPECT_NEAR(stats::binomial_two_sided_mid_p(5, 10), 1.0, 1e-12);
  EXPECT_NEAR(stats::binomial_two_sided_mid_p(0, 0), 1.0, 1e-12);
}

TEST(Robustness, IndependentDropIsATwoSampleZTest) {
  Tasks clean_tasks(60), adv_tasks(40);
  CountingModel clean_model, adv_model;
  clean_model.ll = picker([](int d) { return d % 4 != 0; });  // 45 / 60 = 0.75
  adv_model.ll = picker([](int d) { return d % 2 == 0; });    // 20 / 40 = 0.5
  auto clean = task::evaluate(clean_tasks.mc, clean_tasks.mc_data, clean_model);
  auto adv = task::evaluate(adv_tasks.mc, adv_tasks.mc_data, adv_model);
  clean.task = "clean";
  adv.task = "adversarial";
  const auto drops = robustness_drop(clean, adv, false);
  const RobustnessDrop* acc = nullptr;
  for (const auto& d : drops)
    if (d.metric == "acc") acc = &d;
  ASSERT_NE(acc, nullptr);
  EXPECT_EQ(acc->test, "two_sample_z");
  EXPECT_EQ(acc->n_clean, 60);
  EXPECT_EQ(acc->n_adversarial, 40);
  EXPECT_NEAR(acc->drop, 0.25, 1e-12);
  EXPECT_NEAR(acc->relative_drop, 0.25 / 0.75, 1e-12);
  // SE from the two sample standard errors (sample sd / sqrt(n)).
  const double se_c = std::sqrt(0.75 * 0.25 * 60 / 59 / 60), se_a = std::sqrt(0.5 * 0.5 * 40 / 39 / 40);
  EXPECT_NEAR(acc->se, std::sqrt(se_c * se_c + se_a * se_a), 1e-12);
  EXPECT_NEAR(acc->ci_low, 0.25 - 1.959963984540054 * acc->se, 1e-9);
  const double zv = 0.25 / acc->se;
  EXPECT_NEAR(acc->p_value, std::erfc(zv / std::sqrt(2.0)), 1e-9);
  EXPECT_LT(acc->p_value, 0.05);
  // ECE: lower is better, so the drop is adversarial - clean.
  for (const auto& d : drops) {
    if (d.metric == "ece") {
      EXPECT_NEAR(d.drop, adv.metric("ece")->value - clean.metric("ece")->value, 1e-12);
    }
  }
}

TEST(Robustness, PairedDropUsesMcNemar) {
  Tasks t(50);
  CountingModel clean_model, adv_model;
  clean_model.ll = picker([](int) { return true; });
  adv_model.ll = picker([](int d) { return d >= 10; });  // the first 10 items flip to wrong
  const auto clean = task::evaluate(t.mc, t.mc_data, clean_model);
  const auto adv = task::evaluate(t.mc, t.mc_data, adv_model);
  const auto drops = robustness_drop(clean, adv, true);
  for (const auto& d : drops)
    if (d.metric == "acc") {
      EXPECT_TRUE(d.paired);
      EXPECT_EQ(d.test, "mcnemar");
      EXPECT_NEAR(d.drop, 0.2, 1e-12);
      EXPECT_LE(d.ci_low, d.drop);
      EXPECT_GE(d.ci_high, d.drop);
      EXPECT_NEAR(d.p_value, 2 * std::pow(0.5, 10), 1e-12);
    }
  auto fewer = adv;
  fewer.docs.pop_back();
  EXPECT_THROW(robustness_drop(clean, fewer, true), Error);
}

// ---------------------------------------------------------------------------------------------
// Request cache

RequestCacheOptions cache_options(const fs::path& dir, std::vector<std::string>* warnings) {
  RequestCacheOptions o;
  o.dir = dir;
  o.model = "model-identity";
  o.config = "spec=none";
  o.task = "mc";
  o.chunk = 7;  // several chunks per call
  o.warn = [warnings](const std::string& m) { warnings->push_back(m); };
  return o;
}

TEST(RequestCache, SecondRunMakesNoModelCallsAndGivesIdenticalResults) {
  Tasks t(25);
  test::TempDir cache_dir;
  std::vector<std::string> warnings;
  CountingModel inner;
  inner.ll = picker([](int d) { return d % 3 != 0; });
  task::TaskResult first, second;
  {
    CachingLanguageModel cached(inner, cache_options(cache_dir.path(), &warnings));
    first = task::evaluate(t.mc, t.mc_data, cached);
    EXPECT_EQ(cached.hits(), 0u);
    EXPECT_EQ(cached.misses(), 100u);
  }
  EXPECT_EQ(inner.requests, 100u);
  {
    CachingLanguageModel cached(inner, cache_options(cache_dir.path(), &warnings));
    second = task::evaluate(t.mc, t.mc_data, cached);
    EXPECT_EQ(cached.hits(), 100u);
    EXPECT_EQ(cached.misses(), 0u);
  }
  EXPECT_EQ(inner.requests, 100u);  // no new model calls
  EXPECT_TRUE(warnings.empty());
  ASSERT_EQ(first.docs.size(), second.docs.size());
  for (size_t d = 0; d < first.docs.size(); ++d) {
    EXPECT_EQ(first.docs[d].logprobs, second.docs[d].logprobs);
    EXPECT_EQ(first.docs[d].greedy, second.docs[d].greedy);
  }
  for (const auto& m : first.metrics) EXPECT_EQ(m.value, second.metric(m.name)->value) << m.name;

  // Generations, and a different configuration does not see the first one's entries.
  CountingModel gen_model;
  auto o = cache_options(cache_dir.path(), &warnings);
  o.task = "gen";
  std::vector<std::string> g1, g2;
  {
    CachingLanguageModel cached(gen_model, o);
    g1 = task::evaluate(t.gen, t.gen_data, cached).docs[3].generations;
  }
  {
    CachingLanguageModel cached(gen_model, o);
    g2 = task::evaluate(t.gen, t.gen_data, cached).docs[3].generations;
  }
  EXPECT_EQ(gen_model.requests, 25u);
  EXPECT_EQ(g1, g2);
  o.config = "spec=w4g128";
  CachingLanguageModel other(gen_model, o);
  task::evaluate(t.gen, t.gen_data, other);
  EXPECT_EQ(other.hits(), 0u);
  EXPECT_EQ(gen_model.requests, 50u);
}

TEST(RequestCache, CorruptFilesAndEntriesAreIgnoredWithAWarning) {
  Tasks t(10);
  test::TempDir cache_dir;
  std::vector<std::string> warnings;
  CountingModel inner;
  inner.ll = picker([](int) { return true; });
  fs::path file;
  {
    CachingLanguageModel cached(inner, cache_options(cache_dir.path(), &warnings));
    task::evaluate(t.mc, t.mc_data, cached);
    file = cached.file();
  }
  ASSERT_TRUE(fs::exists(file));
  // No temporary files left beside it.
  int files = 0;
  for (const auto& e : fs::directory_iterator(file.parent_path())) {
    ++files;
    EXPECT_EQ(e.path().filename(), file.filename());
  }
  EXPECT_EQ(files, 1);

  // A truncated file: warning, everything recomputed, the file rewritten whole.
  std::string text = test::read_text(file);
  test::write_bytes(file, text.substr(0, text.size() / 2));
  {
    CachingLanguageModel cached(inner, cache_options(cache_dir.path(), &warnings));
    task::evaluate(t.mc, t.mc_data, cached);
    EXPECT_EQ(cached.misses(), 40u);
  }
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("corrupt cache file"), std::string::npos) << warnings[0];
  EXPECT_EQ(inner.requests, 80u);

  // One malformed entry: only that request is recomputed.
  text = test::read_text(file);
  const size_t at = text.find("\"logprob\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 9, "\"logprog\"");
  test::write_bytes(file, text);
  warnings.clear();
  {
    CachingLanguageModel cached(inner, cache_options(cache_dir.path(), &warnings));
    task::evaluate(t.mc, t.mc_data, cached);
    EXPECT_EQ(cached.misses(), 1u);
    EXPECT_EQ(cached.hits(), 39u);
  }
  EXPECT_EQ(warnings.size(), 1u);
  EXPECT_EQ(inner.requests, 81u);
}

TEST(RequestCache, KeysSeparateEveryField) {
  Request a;
  a.context = "ab";
  a.continuation = "c";
  Request b = a;
  b.context = "a";
  b.continuation = "bc";
  EXPECT_NE(CachingLanguageModel::request_key(a), CachingLanguageModel::request_key(b));
  Request g = a;
  g.type = task::RequestType::generate_until;
  Request g2 = g;
  g2.max_gen_toks = 5;
  Request g3 = g;
  g3.until = {"\n"};
  EXPECT_NE(CachingLanguageModel::request_key(a), CachingLanguageModel::request_key(g));
  EXPECT_NE(CachingLanguageModel::request_key(g), CachingLanguageModel::request_key(g2));
  EXPECT_NE(CachingLanguageModel::request_key(g), CachingLanguageModel::request_key(g3));
  // The doc index does not change the answer, so it is not part of the key.
  Request d = a;
  d.doc = 9;
  EXPECT_EQ(CachingLanguageModel::request_key(a), CachingLanguageModel::request_key(d));
  EXPECT_EQ(CachingLanguageModel::request_key(a).size(), 32u);
}

TEST(RequestCache, ModelIdentityChangesWithTheFile) {
  test::TempDir d;
  test::write_bytes(d.path() / "m.bin", "weights-1");
  const std::string a = model_file_identity(d.path() / "m.bin");
  test::write_bytes(d.path() / "m.bin", "weights-2");
  const std::string b = model_file_identity(d.path() / "m.bin");
  EXPECT_NE(a, b);
  EXPECT_THROW(model_file_identity(d.path() / "missing"), Error);
}

}  // namespace
}  // namespace qeval::eval
