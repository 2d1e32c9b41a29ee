#include "qeval/eval/metrics/bleu.h"

#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <unordered_map>

#include "qeval/eval/metrics/text.h"

namespace qeval::eval {
namespace {

using NgramCounts = std::unordered_map<std::string, int64_t>;

// Python str.replace(from, to): non-overlapping, left to right.
std::u32string replace_all(const std::u32string& s, std::u32string_view from, std::u32string_view to) {
  std::u32string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::u32string::npos) break;
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::u32string::npos);
  return out;
}

bool is_digit(char32_t c) { return c >= U'0' && c <= U'9'; }
bool is_period_or_comma(char32_t c) { return c == U'.' || c == U','; }

// Characters the first 13a pass surrounds with spaces: the ASCII symbols { | } ~ [ \ ] ^ _ `
// space ! " # $ % & ( ) * + : ; < = > ? @ / (all ASCII punctuation except ' , - .).
bool is_13a_symbol(char32_t c) {
  return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
         (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == U'/';
}

// One left-to-right, non-overlapping pass of a two-character pattern `first second`, each
// match replaced by `before first middle second after` (the spaces the 13a rules insert).
template <class First, class Second>
std::u32string pair_pass(const std::u32string& s, First first, Second second, bool before, bool middle, bool after) {
  std::u32string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && first(s[i]) && second(s[i + 1])) {
      if (before) out.push_back(U' ');
      out.push_back(s[i]);
      if (middle) out.push_back(U' ');
      out.push_back(s[i + 1]);
      if (after) out.push_back(U' ');
      i += 2;
    } else {
      out.push_back(s[i]);
      ++i;
    }
  }
  return out;
}

std::vector<std::string> preprocess(std::string_view text) {
  // BLEU tokenizes rstrip(text); the tokens come back space-joined and are split again.
  const std::u32string decoded = text::decode_utf8(text);
  const std::string tok = tokenize_13a(text::encode_utf8(text::rstrip(decoded)));
  std::vector<std::string> tokens;
  size_t start = 0;
  while (start < tok.size()) {
    size_t sp = tok.find(' ', start);
    if (sp == std::string::npos) sp = tok.size();
    tokens.push_back(tok.substr(start, sp - start));
    start = sp + 1;
  }
  return tokens;
}

// n-grams of order 1..4 keyed by their space-joined tokens (tokens contain no spaces), one
// map per order.
std::array<NgramCounts, kBleuMaxOrder> ngrams(const std::vector<std::string>& tokens) {
  std::array<NgramCounts, kBleuMaxOrder> out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string key;
    for (size_t n = 0; n < kBleuMaxOrder && i + n < tokens.size(); ++n) {
      if (n > 0) key.push_back(' ');
      key += tokens[i + n];
      ++out[n][key];
    }
  }
  return out;
}

double safe_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

}  // namespace

BleuStats& BleuStats::operator+=(const BleuStats& o) {
  sys_len += o.sys_len;
  ref_len += o.ref_len;
  for (int n = 0; n < kBleuMaxOrder; ++n) {
    counts[n] += o.counts[n];
    totals[n] += o.totals[n];
  }
  return *this;
}

std::string tokenize_13a(std::string_view text) {
  std::u32string s = text::decode_utf8(text);
  s = replace_all(s, U"<skipped>", U"");
  s = replace_all(s, U"-\n", U"");
  s = replace_all(s, U"\n", U" ");
  if (s.find(U'&') != std::u32string::npos) {
    s = replace_all(s, U"&quot;", U"\"");
    s = replace_all(s, U"&amp;", U"&");
    s = replace_all(s, U"&lt;", U"<");
    s = replace_all(s, U"&gt;", U">");
  }
  std::u32string padded;
  padded.reserve(s.size() * 2 + 2);
  padded.push_back(U' ');
  for (char32_t c : s) {
    if (is_13a_symbol(c)) {
      padded.push_back(U' ');
      padded.push_back(c);
      padded.push_back(U' ');
    } else {
      padded.push_back(c);
    }
  }
  padded.push_back(U' ');
  auto not_digit = [](char32_t c) { return !is_digit(c); };
  auto is_dash = [](char32_t c) { return c == U'-'; };
  s = pair_pass(padded, not_digit, is_period_or_comma, false, true, true);  // ([^0-9])([\.,]) -> \1 \2
  s = pair_pass(s, is_period_or_comma, not_digit, true, true, false);       // ([\.,])([^0-9]) ->  \1 \2
  s = pair_pass(s, is_digit, is_dash, false, true, true);                   // ([0-9])(-) -> \1 \2
  std::string out;
  for (std::u32string_view tok : text::split_whitespace(s)) {
    if (!out.empty()) out.push_back(' ');
    for (char32_t c : tok) text::append_utf8(out, c);
  }
  return out;
}

BleuStats bleu_segment_stats(std::string_view hypothesis, const std::vector<std::string>& references) {
  if (references.empty()) throw std::invalid_argument("BLEU: a segment has no reference");
  std::array<NgramCounts, kBleuMaxOrder> ref_max;
  std::vector<int64_t> ref_lens;
  for (const std::string& ref : references) {
    const auto tokens = preprocess(ref);
    ref_lens.push_back(static_cast<int64_t>(tokens.size()));
    const auto counts = ngrams(tokens);
    for (int n = 0; n < kBleuMaxOrder; ++n)
      for (const auto& [g, c] : counts[n]) {
        int64_t& m = ref_max[n][g];
        m = std::max(m, c);
      }
  }
  const auto hyp_tokens = preprocess(hypothesis);
  BleuStats st;
  st.sys_len = static_cast<int64_t>(hyp_tokens.size());
  // Closest reference length; the shorter one on ties.
  int64_t best_diff = -1;
  for (int64_t len : ref_lens) {
    const int64_t diff = std::llabs(st.sys_len - len);
    if (best_diff < 0 || diff < best_diff || (diff == best_diff && len < st.ref_len)) {
      best_diff = diff;
      st.ref_len = len;
    }
  }
  const auto hyp = ngrams(hyp_tokens);
  for (int n = 0; n < kBleuMaxOrder; ++n)
    for (const auto& [g, c] : hyp[n]) {
      st.totals[n] += c;
      if (auto it = ref_max[n].find(g); it != ref_max[n].end()) st.counts[n] += std::min(c, it->second);
    }
  return st;
}

BleuScore bleu_from_stats(const BleuStats& st, bool effective_order) {
  BleuScore out;
  out.counts = st.counts;
  out.totals = st.totals;
  out.sys_len = st.sys_len;
  out.ref_len = st.ref_len;
  if (st.sys_len < st.ref_len)
    out.bp = st.sys_len > 0 ? std::exp(1.0 - static_cast<double>(st.ref_len) / static_cast<double>(st.sys_len)) : 0.0;
  else
    out.bp = 1.0;
  bool any_match = false;
  for (int64_t c : st.counts) any_match = any_match || c != 0;
  if (!any_match) return out;  // score and precisions 0, bp as computed

  double smooth = 1.0;
  int orders = kBleuMaxOrder;
  for (int n = 0; n < kBleuMaxOrder; ++n) {
    if (st.totals[n] == 0) break;
    if (effective_order) orders = n + 1;
    if (st.counts[n] == 0) {
      smooth *= 2;
      out.precisions[n] = 100.0 / (smooth * static_cast<double>(st.totals[n]));
    } else {
      out.precisions[n] = 100.0 * static_cast<double>(st.counts[n]) / static_cast<double>(st.totals[n]);
    }
  }
  double log_sum = 0.0;
  for (int n = 0; n < orders; ++n) log_sum += safe_log(out.precisions[n]);
  out.score = out.bp * std::exp(log_sum / orders);
  return out;
}

BleuScore sentence_bleu(std::string_view hypothesis, const std::vector<std::string>& references, bool effective_order) {
  return bleu_from_stats(bleu_segment_stats(hypothesis, references), effective_order);
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::vector<std::string>>& references) {
  if (hypotheses.size() != references.size())
    throw std::invalid_argument("corpus BLEU: hypothesis and reference counts differ");
  BleuStats total;
  for (size_t i = 0; i < hypotheses.size(); ++i) total += bleu_segment_stats(hypotheses[i], references[i]);
  return bleu_from_stats(total, false);
}

}  // namespace qeval::eval
