// SQuAD EM / F1 parity with evaluate-v1.1.py on every record of reference/metrics/squad.jsonl.
#include <gtest/gtest.h>

#include "qeval/eval/metrics/squad.h"
#include "reference_records.h"

namespace qeval::eval {
namespace {

using test::kMetricTol;

TEST(SquadReference, EveryRecordMatches) {
  QEVAL_METRIC_RECORDS(records, "squad.jsonl");
  int matched = 0;
  for (const auto& r : records) {
    const std::string id = r.at("id");
    int failures = 0;
    auto fail = [&](const std::string& what) {
      ADD_FAILURE() << id << ": " << what;
      ++failures;
    };
    if (r.at("type") == "case") {
      const std::string pred = r.at("prediction");
      const auto gts = r.at("ground_truths").get<std::vector<std::string>>();
      if (squad_normalize(pred) != r.at("normalized_prediction").get<std::string>())
        fail("normalized prediction '" + squad_normalize(pred) + "'");
      for (size_t k = 0; k < gts.size(); ++k) {
        if (squad_normalize(gts[k]) != r.at("normalized_ground_truths").at(k).get<std::string>())
          fail("normalized ground truth '" + squad_normalize(gts[k]) + "'");
        const auto& want = r.at("per_ground_truth").at(k);
        if ((squad_exact_match(pred, gts[k]) ? 1 : 0) != want.at("exact_match").get<int>()) fail("per-answer EM");
        if (std::abs(squad_f1(pred, gts[k]) - want.at("f1").get<double>()) > kMetricTol) fail("per-answer F1");
      }
      const SquadScore s = squad_score(pred, gts);
      if (s.exact_match != r.at("exact_match").get<int>()) fail("EM");
      if (std::abs(s.f1 - r.at("f1").get<double>()) > kMetricTol) fail("F1");
    } else {
      double em = 0, f1 = 0;
      size_t n = 0;
      for (const auto& item : r.at("items")) {
        const SquadScore s = squad_score(item.at("prediction").get<std::string>(),
                                         item.at("ground_truths").get<std::vector<std::string>>());
        em += s.exact_match;
        f1 += s.f1;
        ++n;
      }
      if (n != r.at("total").get<size_t>()) fail("total");
      if (std::abs(100.0 * em / n - r.at("exact_match").get<double>()) > kMetricTol) fail("aggregate EM");
      if (std::abs(100.0 * f1 / n - r.at("f1").get<double>()) > kMetricTol) fail("aggregate F1");
    }
    if (failures == 0) ++matched;
  }
  std::printf("squad.jsonl: %d/%zu records match\n", matched, records.size());
  EXPECT_EQ(matched, static_cast<int>(records.size()));
}

TEST(Squad, Normalization) {
  EXPECT_EQ(squad_normalize("The  Lord of the Rings!"), "lord of rings");
  EXPECT_EQ(squad_normalize("Theatre an apple"), "theatre apple");
  EXPECT_EQ(squad_normalize("\xC3\xA9the"), "\xC3\xA9the");  // "éthe": no word boundary before "the"
  EXPECT_EQ(squad_normalize("\xCE\x9F\xCE\xA3"), "\xCE\xBF\xCF\x82");  // "ΟΣ" -> "ος" (final sigma)
  EXPECT_EQ(squad_normalize("\xE2\x80\x9C" "a\xE2\x80\x9D"), "\xE2\x80\x9C \xE2\x80\x9D");  // curly quotes are not \w
  EXPECT_EQ(squad_normalize("ab\xCC\x81 a\xCC\x81"), "ab\xCC\x81 \xCC\x81");  // U+0301 is not \w either
}

TEST(Squad, ScoresTakeTheMaximumOverAnswers) {
  const SquadScore s = squad_score("Neil Armstrong", {"Buzz Aldrin", "Armstrong"});
  EXPECT_EQ(s.exact_match, 0);
  EXPECT_DOUBLE_EQ(s.f1, 2.0 / 3);
  EXPECT_EQ(squad_score("a", {"the"}).exact_match, 1);
  EXPECT_EQ(squad_score("a", {"the"}).f1, 0.0);
}

}  // namespace
}  // namespace qeval::eval
