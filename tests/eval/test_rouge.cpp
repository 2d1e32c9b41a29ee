// ROUGE parity with rouge-score on every record of reference/metrics/rouge.jsonl.
#include <gtest/gtest.h>

#include "qeval/eval/metrics/rouge.h"
#include "reference_records.h"

namespace qeval::eval {
namespace {

using test::kMetricTol;

void expect_score(const RougeScore& got, const nlohmann::json& want, const std::string& where, int& failures) {
  const double g[3] = {got.precision, got.recall, got.fmeasure};
  const char* names[3] = {"precision", "recall", "fmeasure"};
  for (int k = 0; k < 3; ++k) {
    const double w = want.at(names[k]).get<double>();
    if (std::abs(g[k] - w) > kMetricTol) {
      ADD_FAILURE() << where << "." << names[k] << ": got " << g[k] << ", want " << w;
      ++failures;
    }
  }
}

TEST(RougeReference, EveryRecordMatches) {
  QEVAL_METRIC_RECORDS(records, "rouge.jsonl");
  int matched = 0;
  for (const auto& r : records) {
    const std::string id = r.at("id");
    const std::string pred = r.at("prediction"), ref = r.at("reference");
    int failures = 0;
    for (bool stem : {false, true}) {
      const auto& want = r.at(stem ? "stemmer" : "no_stemmer");
      const std::string where = id + (stem ? ".stemmer" : ".no_stemmer");
      const auto pt = rouge_tokenize(pred, stem);
      const auto rt = rouge_tokenize(ref, stem);
      if (pt != want.at("prediction_tokens").get<std::vector<std::string>>()) {
        ADD_FAILURE() << where << ": prediction tokens differ";
        ++failures;
      }
      if (rt != want.at("reference_tokens").get<std::vector<std::string>>()) {
        ADD_FAILURE() << where << ": reference tokens differ";
        ++failures;
      }
      const RougeScores s = rouge(pred, ref, stem);
      expect_score(s.rouge1, want.at("rouge1"), where + ".rouge1", failures);
      expect_score(s.rouge2, want.at("rouge2"), where + ".rouge2", failures);
      expect_score(s.rougeL, want.at("rougeL"), where + ".rougeL", failures);
      expect_score(s.rougeLsum, want.at("rougeLsum"), where + ".rougeLsum", failures);
    }
    if (failures == 0) ++matched;
  }
  std::printf("rouge.jsonl: %d/%zu records match\n", matched, records.size());
  EXPECT_EQ(matched, static_cast<int>(records.size()));
}

TEST(Rouge, HandComputedValues) {
  // pred "the cat sat on the mat", ref "the cat was on the mat": 5 of 6 unigrams shared,
  // bigrams {the cat, on the, the mat} of 5, LCS "the cat on the mat" = 5.
  const RougeScores s = rouge("The cat sat on the mat.", "the cat was on the mat", false);
  EXPECT_DOUBLE_EQ(s.rouge1.precision, 5.0 / 6);
  EXPECT_DOUBLE_EQ(s.rouge2.recall, 3.0 / 5);
  EXPECT_DOUBLE_EQ(s.rougeL.fmeasure, 5.0 / 6);
  EXPECT_DOUBLE_EQ(s.rougeLsum.fmeasure, 5.0 / 6);
  const RougeScores empty = rouge("", "", false);
  EXPECT_EQ(empty.rouge1.fmeasure, 0.0);
  EXPECT_EQ(empty.rougeLsum.fmeasure, 0.0);
}

TEST(Rouge, TokenizerKeepsOnlyAsciiAlnum) {
  EXPECT_EQ(rouge_tokenize("Café in Zürich, 3.5%", false), (std::vector<std::string>{"caf", "in", "z", "rich", "3", "5"}));
  EXPECT_EQ(rouge_tokenize("\xC4\xB0stanbul \xE2\x84\xAA", false), (std::vector<std::string>{"i", "stanbul", "k"}));
  EXPECT_EQ(rouge_tokenize("running dogs ran", true), (std::vector<std::string>{"run", "dog", "ran"}));
}

TEST(Rouge, MultiReferencePicksBestFmeasurePerType) {
  const std::vector<std::string> refs = {"completely different words", "the cat sat on the mat"};
  const RougeScores m = rouge_multi("the cat sat on the mat", refs, false);
  EXPECT_DOUBLE_EQ(m.rouge1.fmeasure, 1.0);
  EXPECT_DOUBLE_EQ(m.rougeL.fmeasure, 1.0);
  const RougeScores first = rouge_multi("the cat sat on the mat", {refs[0]}, false);
  EXPECT_EQ(first.rouge1.fmeasure, 0.0);
}

}  // namespace
}  // namespace qeval::eval
