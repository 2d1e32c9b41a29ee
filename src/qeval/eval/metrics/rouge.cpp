#include "qeval/eval/metrics/rouge.h"

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include "qeval/eval/metrics/porter_stemmer.h"
#include "qeval/eval/metrics/text.h"

namespace qeval::eval {
namespace {

double fmeasure(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; }

RougeScore make_score(double p, double r) { return {p, r, fmeasure(p, r)}; }

// Tokens joined by ' ' (tokens are [a-z0-9]+, so the key is unambiguous).
std::unordered_map<std::string, long> ngram_counts(const std::vector<std::string>& tokens, int n) {
  std::unordered_map<std::string, long> counts;
  const size_t un = static_cast<size_t>(n);
  for (size_t i = 0; i + un <= tokens.size(); ++i) {
    std::string key = tokens[i];
    for (size_t k = 1; k < un; ++k) key.append(" ").append(tokens[i + k]);
    ++counts[key];
  }
  return counts;
}

// (len(a)+1) x (len(b)+1) LCS length table, row-major.
std::vector<int> lcs_table(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  const size_t cols = b.size() + 1;
  std::vector<int> t((a.size() + 1) * cols, 0);
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j)
      t[i * cols + j] = a[i - 1] == b[j - 1] ? t[(i - 1) * cols + j - 1] + 1
                                             : std::max(t[(i - 1) * cols + j], t[i * cols + j - 1]);
  return t;
}

// Positions in `ref` of one LCS of ref and cand, read back from the bottom-right corner:
// on a match take it; otherwise move left when the left cell is strictly larger, else up.
std::vector<size_t> lcs_positions(const std::vector<std::string>& ref, const std::vector<std::string>& cand) {
  const std::vector<int> t = lcs_table(ref, cand);
  const size_t cols = cand.size() + 1;
  std::vector<size_t> pos;
  size_t i = ref.size(), j = cand.size();
  while (i > 0 && j > 0) {
    if (ref[i - 1] == cand[j - 1]) {
      pos.push_back(i - 1);
      --i;
      --j;
    } else if (t[i * cols + j - 1] > t[(i - 1) * cols + j]) {
      --j;
    } else {
      --i;
    }
  }
  return pos;
}

std::vector<std::string> split_lines_nonempty(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (true) {
    const size_t nl = text.find('\n', start);
    const std::string_view line = text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (!line.empty()) lines.emplace_back(line);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return lines;
}

std::vector<std::vector<std::string>> tokenize_lines(std::string_view text, bool stem) {
  std::vector<std::vector<std::string>> out;
  for (const std::string& line : split_lines_nonempty(text)) out.push_back(rouge_tokenize(line, stem));
  return out;
}

}  // namespace

std::vector<std::string> rouge_tokenize(std::string_view text, bool stem) {
  const std::u32string lowered = text::lower(text::decode_utf8(text));
  std::vector<std::string> tokens;
  std::string cur;
  auto flush = [&] {
    if (cur.empty()) return;
    if (stem && cur.size() > 3) cur = porter_stem(cur);
    if (!cur.empty()) tokens.push_back(std::move(cur));  // the stem of [a-z0-9]+ stays [a-z0-9]+
    cur.clear();
  };
  for (char32_t c : lowered) {
    if ((c >= U'a' && c <= U'z') || (c >= U'0' && c <= U'9')) {
      cur.push_back(static_cast<char>(c));
    } else {
      flush();
    }
  }
  flush();
  return tokens;
}

RougeScore rouge_n(const std::vector<std::string>& prediction, const std::vector<std::string>& reference, int n) {
  if (n < 1) throw std::invalid_argument("rouge_n: n must be >= 1");
  const auto pred = ngram_counts(prediction, n);
  const auto ref = ngram_counts(reference, n);
  long overlap = 0, pred_total = 0, ref_total = 0;
  for (const auto& [g, c] : pred) {
    pred_total += c;
    if (auto it = ref.find(g); it != ref.end()) overlap += std::min(c, it->second);
  }
  for (const auto& kv : ref) ref_total += kv.second;
  const double p = static_cast<double>(overlap) / static_cast<double>(std::max(pred_total, 1L));
  const double r = static_cast<double>(overlap) / static_cast<double>(std::max(ref_total, 1L));
  return make_score(p, r);
}

RougeScore rouge_l(const std::vector<std::string>& prediction, const std::vector<std::string>& reference) {
  if (prediction.empty() || reference.empty()) return {};
  const std::vector<int> t = lcs_table(reference, prediction);
  const double lcs = t.back();
  return make_score(lcs / static_cast<double>(prediction.size()), lcs / static_cast<double>(reference.size()));
}

RougeScore rouge_lsum(const std::vector<std::vector<std::string>>& prediction_lines,
                      const std::vector<std::vector<std::string>>& reference_lines) {
  if (prediction_lines.empty() || reference_lines.empty()) return {};
  size_t m = 0, n = 0;
  std::map<std::string, long> ref_left, pred_left;
  for (const auto& line : reference_lines) {
    m += line.size();
    for (const auto& t : line) ++ref_left[t];
  }
  for (const auto& line : prediction_lines) {
    n += line.size();
    for (const auto& t : line) ++pred_left[t];
  }
  if (m == 0 || n == 0) return {};
  long hits = 0;
  for (const auto& ref : reference_lines) {
    std::set<size_t> uni;
    for (const auto& cand : prediction_lines)
      for (size_t p : lcs_positions(ref, cand)) uni.insert(p);
    for (size_t p : uni) {
      const std::string& tok = ref[p];
      long& pc = pred_left[tok];
      long& rc = ref_left[tok];
      if (pc > 0 && rc > 0) {
        ++hits;
        --pc;
        --rc;
      }
    }
  }
  return make_score(static_cast<double>(hits) / static_cast<double>(n), static_cast<double>(hits) / static_cast<double>(m));
}

RougeScores rouge(std::string_view prediction, std::string_view reference, bool stem) {
  const auto pred = rouge_tokenize(prediction, stem);
  const auto ref = rouge_tokenize(reference, stem);
  RougeScores s;
  s.rouge1 = rouge_n(pred, ref, 1);
  s.rouge2 = rouge_n(pred, ref, 2);
  s.rougeL = rouge_l(pred, ref);
  s.rougeLsum = rouge_lsum(tokenize_lines(prediction, stem), tokenize_lines(reference, stem));
  return s;
}

RougeScores rouge_multi(std::string_view prediction, const std::vector<std::string>& references, bool stem) {
  if (references.empty()) throw std::invalid_argument("rouge_multi: no references");
  RougeScores best = rouge(prediction, references[0], stem);
  for (size_t k = 1; k < references.size(); ++k) {
    const RougeScores s = rouge(prediction, references[k], stem);
    if (s.rouge1.fmeasure > best.rouge1.fmeasure) best.rouge1 = s.rouge1;
    if (s.rouge2.fmeasure > best.rouge2.fmeasure) best.rouge2 = s.rouge2;
    if (s.rougeL.fmeasure > best.rougeL.fmeasure) best.rougeL = s.rougeL;
    if (s.rougeLsum.fmeasure > best.rougeLsum.fmeasure) best.rougeLsum = s.rougeLsum;
  }
  return best;
}

}  // namespace qeval::eval
