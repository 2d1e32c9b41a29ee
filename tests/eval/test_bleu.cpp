// BLEU parity with sacreBLEU 2.6.0 on every record of reference/metrics/bleu.jsonl.
#include <gtest/gtest.h>

#include "qeval/eval/metrics/bleu.h"
#include "reference_records.h"

namespace qeval::eval {
namespace {

using test::kMetricTol;

int compare(const BleuScore& got, const nlohmann::json& want, const std::string& where) {
  int failures = 0;
  auto check_float = [&](const char* name, double g, double w) {
    if (std::abs(g - w) > kMetricTol) {
      ADD_FAILURE() << where << "." << name << ": got " << g << ", want " << w;
      ++failures;
    }
  };
  auto check_int = [&](const char* name, int64_t g, int64_t w) {
    if (g != w) {
      ADD_FAILURE() << where << "." << name << ": got " << g << ", want " << w;
      ++failures;
    }
  };
  check_float("score", got.score, want.at("score"));
  check_float("bp", got.bp, want.at("bp"));
  check_int("sys_len", got.sys_len, want.at("sys_len"));
  check_int("ref_len", got.ref_len, want.at("ref_len"));
  for (int n = 0; n < kBleuMaxOrder; ++n) {
    check_int("counts", got.counts[n], want.at("counts").at(n));
    check_int("totals", got.totals[n], want.at("totals").at(n));
    check_float("precisions", got.precisions[n], want.at("precisions").at(n));
  }
  return failures;
}

// sacreBLEU's reference streams (references[k][i], null = missing) -> per-item lists.
std::vector<std::vector<std::string>> items_from_streams(const nlohmann::json& streams, size_t n) {
  std::vector<std::vector<std::string>> out(n);
  for (const auto& stream : streams)
    for (size_t i = 0; i < n; ++i)
      if (!stream.at(i).is_null()) out[i].push_back(stream.at(i).get<std::string>());
  return out;
}

TEST(BleuReference, EveryRecordMatches) {
  QEVAL_METRIC_RECORDS(records, "bleu.jsonl");
  int matched = 0, sentences = 0, corpora = 0;
  for (const auto& r : records) {
    const std::string id = r.at("id");
    int failures = 0;
    if (r.at("type") == "sentence") {
      ++sentences;
      const std::string hyp = r.at("hypothesis");
      const auto refs = r.at("references").get<std::vector<std::string>>();
      if (tokenize_13a(hyp) != r.at("hypothesis_tokenized").get<std::string>()) {
        ADD_FAILURE() << id << ": hypothesis tokens '" << tokenize_13a(hyp) << "'";
        ++failures;
      }
      for (size_t k = 0; k < refs.size(); ++k)
        if (tokenize_13a(refs[k]) != r.at("references_tokenized").at(k).get<std::string>()) {
          ADD_FAILURE() << id << ": reference " << k << " tokens '" << tokenize_13a(refs[k]) << "'";
          ++failures;
        }
      failures += compare(sentence_bleu(hyp, refs), r.at("sentence_bleu"), id + ".sentence_bleu");
      failures += compare(sentence_bleu(hyp, refs, false), r.at("sentence_bleu_no_effective_order"),
                          id + ".sentence_bleu_no_effective_order");
    } else {
      ++corpora;
      const auto hyps = r.at("hypotheses").get<std::vector<std::string>>();
      failures += compare(corpus_bleu(hyps, items_from_streams(r.at("references"), hyps.size())), r.at("corpus_bleu"),
                          id + ".corpus_bleu");
    }
    if (failures == 0) ++matched;
  }
  std::printf("bleu.jsonl: %d/%zu records match (%d sentence, %d corpus)\n", matched, records.size(), sentences, corpora);
  EXPECT_EQ(matched, static_cast<int>(records.size()));
}

TEST(Bleu, Tokenizer13a) {
  EXPECT_EQ(tokenize_13a("Hello, world!"), "Hello , world !");
  EXPECT_EQ(tokenize_13a("It costs $3.50, i.e. 3,000 units."), "It costs $ 3.50 , i . e . 3,000 units .");
  EXPECT_EQ(tokenize_13a("2021-2022 AT&amp;T &lt;b&gt;"), "2021 - 2022 AT & T < b >");
  EXPECT_EQ(tokenize_13a("line one-\nline two\nend"), "line oneline two end");
  EXPECT_EQ(tokenize_13a(""), "");
}

TEST(Bleu, PerfectMatchAndBrevity) {
  const BleuScore same = sentence_bleu("the cat sat on the mat", {"the cat sat on the mat"});
  EXPECT_DOUBLE_EQ(same.score, 100.0);
  EXPECT_DOUBLE_EQ(same.bp, 1.0);
  // Hypothesis of 3 tokens against 6: BP = exp(1 - 6/3).
  const BleuScore short_hyp = sentence_bleu("the cat sat", {"the cat sat on the mat"});
  EXPECT_NEAR(short_hyp.bp, std::exp(-1.0), 1e-15);
  // Effective order: only orders 1..3 exist, all precise.
  EXPECT_NEAR(short_hyp.score, 100.0 * std::exp(-1.0), 1e-12);
  EXPECT_EQ(sentence_bleu("the cat sat", {"the cat sat on the mat"}, false).score, 0.0);
  const BleuScore none = sentence_bleu("xyz", {"abc"});
  EXPECT_EQ(none.score, 0.0);
  EXPECT_EQ(none.precisions[0], 0.0);
}

TEST(Bleu, ClosestReferenceLengthPrefersShorterOnTies) {
  // Hypothesis of 4 tokens, references of 3 and 5 tokens: both 1 away, 3 wins.
  EXPECT_EQ(bleu_segment_stats("a b c d", {"a b c d e", "a b c"}).ref_len, 3);
  EXPECT_EQ(bleu_segment_stats("a b c d", {"a b c d e f", "a b c d e"}).ref_len, 5);
  EXPECT_EQ(bleu_segment_stats("a b", {"", "a b c d e"}).ref_len, 0);
}

}  // namespace
}  // namespace qeval::eval
