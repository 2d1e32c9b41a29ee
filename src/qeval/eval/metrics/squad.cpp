#include "qeval/eval/metrics/squad.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "qeval/eval/metrics/text.h"

namespace qeval::eval {
namespace {

bool is_ascii_punctuation(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}

bool is_article(std::u32string_view w) { return w == U"a" || w == U"an" || w == U"the"; }

std::vector<std::string> tokens_of(std::string_view answer) {
  const std::string norm = squad_normalize(answer);
  std::vector<std::string> out;
  size_t start = 0;
  while (start < norm.size()) {
    size_t sp = norm.find(' ', start);
    if (sp == std::string::npos) sp = norm.size();
    out.push_back(norm.substr(start, sp - start));
    start = sp + 1;
  }
  return out;
}

}  // namespace

std::string squad_normalize(std::string_view answer) {
  const std::u32string lowered = text::lower(text::decode_utf8(answer));
  std::u32string s;
  s.reserve(lowered.size());
  for (char32_t c : lowered)
    if (!is_ascii_punctuation(c)) s.push_back(c);
  // \b(a|an|the)\b: a match is always a whole maximal run of word characters.
  std::u32string no_articles;
  no_articles.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (!text::is_word(s[i])) {
      no_articles.push_back(s[i++]);
      continue;
    }
    size_t j = i;
    while (j < s.size() && text::is_word(s[j])) ++j;
    const std::u32string_view word(s.data() + i, j - i);
    if (is_article(word))
      no_articles.push_back(U' ');
    else
      no_articles.append(word);
    i = j;
  }
  std::string out;
  for (std::u32string_view tok : text::split_whitespace(no_articles)) {
    if (!out.empty()) out.push_back(' ');
    for (char32_t c : tok) text::append_utf8(out, c);
  }
  return out;
}

bool squad_exact_match(std::string_view prediction, std::string_view ground_truth) {
  return squad_normalize(prediction) == squad_normalize(ground_truth);
}

double squad_f1(std::string_view prediction, std::string_view ground_truth) {
  const auto pred = tokens_of(prediction);
  const auto gold = tokens_of(ground_truth);
  std::map<std::string, long> gold_counts;
  for (const auto& t : gold) ++gold_counts[t];
  long same = 0;
  for (const auto& t : pred) {
    auto it = gold_counts.find(t);
    if (it != gold_counts.end() && it->second > 0) {
      ++same;
      --it->second;
    }
  }
  if (same == 0) return 0.0;
  const double precision = 1.0 * static_cast<double>(same) / static_cast<double>(pred.size());
  const double recall = 1.0 * static_cast<double>(same) / static_cast<double>(gold.size());
  return (2 * precision * recall) / (precision + recall);
}

SquadScore squad_score(std::string_view prediction, const std::vector<std::string>& ground_truths) {
  if (ground_truths.empty()) throw std::invalid_argument("SQuAD: no ground-truth answer");
  SquadScore best;
  bool first = true;
  for (const std::string& gt : ground_truths) {
    const int em = squad_exact_match(prediction, gt) ? 1 : 0;
    const double f1 = squad_f1(prediction, gt);
    best.exact_match = first ? em : std::max(best.exact_match, em);
    best.f1 = first ? f1 : std::max(best.f1, f1);
    first = false;
  }
  return best;
}

}  // namespace qeval::eval
