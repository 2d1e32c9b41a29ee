#pragma once
// BLEU as sacreBLEU 2.6.0 computes it with its defaults: the 13a tokenizer on the
// right-stripped text, case-sensitive, n-grams of order 1..4, 'exp' smoothing (mteval-v13a),
// reference n-gram counts as the per-n-gram maximum over the references and the closest
// reference length (shorter on ties). Sentence BLEU uses the effective order (as
// sacrebleu.sentence_bleu does); corpus BLEU sums the segment statistics and does not.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qeval::eval {

inline constexpr int kBleuMaxOrder = 4;

// Sufficient statistics of one segment (or, summed, of a corpus).
struct BleuStats {
  int64_t sys_len = 0;
  int64_t ref_len = 0;
  std::array<int64_t, kBleuMaxOrder> counts{};  // matched hypothesis n-grams (clipped)
  std::array<int64_t, kBleuMaxOrder> totals{};  // hypothesis n-grams
  BleuStats& operator+=(const BleuStats& o);
};

struct BleuScore {
  double score = 0;  // 0-100
  std::array<int64_t, kBleuMaxOrder> counts{};
  std::array<int64_t, kBleuMaxOrder> totals{};
  std::array<double, kBleuMaxOrder> precisions{};  // percent, after smoothing
  double bp = 0;
  int64_t sys_len = 0;
  int64_t ref_len = 0;
};

// sacreBLEU's 13a tokenizer; tokens joined by single spaces. BLEU applies it to rstrip(text).
std::string tokenize_13a(std::string_view text);

// references must not be empty; an empty-string reference is a reference of length 0.
BleuStats bleu_segment_stats(std::string_view hypothesis, const std::vector<std::string>& references);
BleuScore bleu_from_stats(const BleuStats& stats, bool effective_order);

BleuScore sentence_bleu(std::string_view hypothesis, const std::vector<std::string>& references,
                        bool effective_order = true);
// references[i] are the references of hypotheses[i] (any number >= 1 per item).
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::vector<std::string>>& references);

}  // namespace qeval::eval
