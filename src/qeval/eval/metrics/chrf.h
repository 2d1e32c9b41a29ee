#pragma once
// chrF as sacreBLEU 2.6.0's CHRF() computes it with its defaults: character n-grams of order
// 1..6 over Unicode code points after removing all (Python) whitespace, no word n-grams,
// beta = 2, case-sensitive, no eps smoothing. Per order the statistics are
// [hypothesis n-grams (0 when the reference has none), reference n-grams, clipped matches];
// precision and recall are averaged over the orders where both counts are > 0, and the score
// is 100 * F_beta of the two averages. Several references: the one with the highest sentence
// chrF (first on ties). Corpus chrF scores the summed statistics.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qeval::eval {

inline constexpr int kChrfCharOrder = 6;
inline constexpr double kChrfBeta = 2.0;

using ChrfStats = std::array<int64_t, 3 * kChrfCharOrder>;

struct ChrfScore {
  double score = 0;  // 0-100
  ChrfStats statistics{};
};

// Statistics against the best of `references` (must not be empty).
ChrfStats chrf_segment_stats(std::string_view hypothesis, const std::vector<std::string>& references);
double chrf_from_stats(const ChrfStats& stats);

ChrfScore sentence_chrf(std::string_view hypothesis, const std::vector<std::string>& references);
ChrfScore corpus_chrf(const std::vector<std::string>& hypotheses, const std::vector<std::vector<std::string>>& references);

}  // namespace qeval::eval
