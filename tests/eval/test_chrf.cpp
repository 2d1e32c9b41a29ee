// chrF parity with sacreBLEU 2.6.0 on every record of reference/metrics/chrf.jsonl.
#include <gtest/gtest.h>

#include "qeval/eval/metrics/chrf.h"
#include "reference_records.h"

namespace qeval::eval {
namespace {

using test::kMetricTol;

int compare(const ChrfScore& got, const nlohmann::json& want, const std::string& where) {
  int failures = 0;
  if (std::abs(got.score - want.at("score").get<double>()) > kMetricTol) {
    ADD_FAILURE() << where << ".score: got " << got.score << ", want " << want.at("score");
    ++failures;
  }
  const auto stats = want.at("statistics").get<std::vector<int64_t>>();
  if (std::vector<int64_t>(got.statistics.begin(), got.statistics.end()) != stats) {
    ADD_FAILURE() << where << ".statistics differ";
    ++failures;
  }
  return failures;
}

TEST(ChrfReference, EveryRecordMatches) {
  QEVAL_METRIC_RECORDS(records, "chrf.jsonl");
  int matched = 0;
  for (const auto& r : records) {
    const std::string id = r.at("id");
    int failures = 0;
    if (r.at("type") == "sentence") {
      const std::string hyp = r.at("hypothesis");
      const auto refs = r.at("references").get<std::vector<std::string>>();
      failures += compare(sentence_chrf(hyp, refs), r.at("chrf"), id);
      const auto& per_ref = r.at("chrf").at("per_reference_scores");
      for (size_t k = 0; k < refs.size(); ++k) {
        const double got = sentence_chrf(hyp, {refs[k]}).score;
        if (std::abs(got - per_ref.at(k).get<double>()) > kMetricTol) {
          ADD_FAILURE() << id << ".per_reference_scores[" << k << "]: got " << got;
          ++failures;
        }
      }
    } else {
      const auto hyps = r.at("hypotheses").get<std::vector<std::string>>();
      std::vector<std::vector<std::string>> refs(hyps.size());
      for (const auto& stream : r.at("references"))
        for (size_t i = 0; i < hyps.size(); ++i)
          if (!stream.at(i).is_null()) refs[i].push_back(stream.at(i).get<std::string>());
      failures += compare(corpus_chrf(hyps, refs), r.at("chrf"), id);
    }
    if (failures == 0) ++matched;
  }
  std::printf("chrf.jsonl: %d/%zu records match\n", matched, records.size());
  EXPECT_EQ(matched, static_cast<int>(records.size()));
}

TEST(Chrf, HandComputedValues) {
  EXPECT_DOUBLE_EQ(sentence_chrf("abc def", {"abcdef"}).score, 100.0);  // whitespace is removed
  // "ab" vs "ac": unigrams 1/2 matched both ways; bigrams 0/1. Averages over orders 1-2:
  // P = R = 0.25, so F_2 = 0.25.
  EXPECT_NEAR(sentence_chrf("ab", {"ac"}).score, 25.0, 1e-12);
  EXPECT_EQ(sentence_chrf("", {"abc"}).score, 0.0);
  // Orders where the reference has no n-grams record 0 hypothesis n-grams.
  const ChrfScore s = sentence_chrf("abcd", {"ab"});
  EXPECT_EQ(s.statistics[3 * 2], 0);
  EXPECT_EQ(s.statistics[3 * 1], 3);
}

TEST(Chrf, CorpusIsNotTheMeanOfSentences) {
  const std::vector<std::string> hyps = {"a", "the quick brown fox"};
  const std::vector<std::vector<std::string>> refs = {{"b"}, {"the quick brown fox"}};
  const double corpus = corpus_chrf(hyps, refs).score;
  const double mean = (sentence_chrf(hyps[0], refs[0]).score + sentence_chrf(hyps[1], refs[1]).score) / 2;
  EXPECT_GT(std::abs(corpus - mean), 1.0);
}

}  // namespace
}  // namespace qeval::eval
