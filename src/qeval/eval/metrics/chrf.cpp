#include "qeval/eval/metrics/chrf.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

#include "qeval/eval/metrics/text.h"

namespace qeval::eval {
namespace {

using CharNgrams = std::array<std::unordered_map<std::u32string, int64_t>, kChrfCharOrder>;

CharNgrams char_ngrams(std::string_view text) {
  const std::u32string decoded = text::decode_utf8(text);
  std::u32string s;
  for (std::u32string_view piece : text::split_whitespace(decoded)) s.append(piece);
  CharNgrams out;
  for (size_t n = 1; n <= kChrfCharOrder; ++n)
    for (size_t i = 0; i + n <= s.size(); ++i) ++out[n - 1][s.substr(i, n)];
  return out;
}

ChrfStats match_stats(const CharNgrams& hyp, const CharNgrams& ref) {
  ChrfStats st{};
  for (int n = 0; n < kChrfCharOrder; ++n) {
    int64_t hyp_count = 0, ref_count = 0, matches = 0;
    for (const auto& [g, c] : hyp[n]) {
      hyp_count += c;
      if (auto it = ref[n].find(g); it != ref[n].end()) matches += std::min(c, it->second);
    }
    for (const auto& kv : ref[n]) ref_count += kv.second;
    st[3 * n] = ref_count > 0 ? hyp_count : 0;
    st[3 * n + 1] = ref_count;
    st[3 * n + 2] = matches;
  }
  return st;
}

}  // namespace

double chrf_from_stats(const ChrfStats& st) {
  const double factor = kChrfBeta * kChrfBeta;
  double avg_prec = 0.0, avg_rec = 0.0;
  int effective = 0;
  for (int n = 0; n < kChrfCharOrder; ++n) {
    const int64_t hyp = st[3 * n], ref = st[3 * n + 1], match = st[3 * n + 2];
    if (hyp > 0 && ref > 0) {
      avg_prec += static_cast<double>(match) / static_cast<double>(hyp);
      avg_rec += static_cast<double>(match) / static_cast<double>(ref);
      ++effective;
    }
  }
  if (effective == 0) return 0.0;
  avg_prec /= effective;
  avg_rec /= effective;
  if (avg_prec + avg_rec == 0.0) return 0.0;
  double score = (1 + factor) * avg_prec * avg_rec;
  score /= factor * avg_prec + avg_rec;
  return 100 * score;
}

ChrfStats chrf_segment_stats(std::string_view hypothesis, const std::vector<std::string>& references) {
  if (references.empty()) throw std::invalid_argument("chrF: a segment has no reference");
  const CharNgrams hyp = char_ngrams(hypothesis);
  ChrfStats best{};
  double best_f = -1.0;
  for (const std::string& ref : references) {
    const ChrfStats st = match_stats(hyp, char_ngrams(ref));
    const double f = chrf_from_stats(st);
    if (f > best_f) {
      best_f = f;
      best = st;
    }
  }
  return best;
}

ChrfScore sentence_chrf(std::string_view hypothesis, const std::vector<std::string>& references) {
  ChrfScore out;
  out.statistics = chrf_segment_stats(hypothesis, references);
  out.score = chrf_from_stats(out.statistics);
  return out;
}

ChrfScore corpus_chrf(const std::vector<std::string>& hypotheses, const std::vector<std::vector<std::string>>& references) {
  if (hypotheses.size() != references.size())
    throw std::invalid_argument("corpus chrF: hypothesis and reference counts differ");
  ChrfScore out;
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    const ChrfStats st = chrf_segment_stats(hypotheses[i], references[i]);
    for (size_t k = 0; k < st.size(); ++k) out.statistics[k] += st[k];
  }
  out.score = chrf_from_stats(out.statistics);
  return out;
}

}  // namespace qeval::eval
