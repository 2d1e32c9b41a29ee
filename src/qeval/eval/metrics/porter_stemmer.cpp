#include "qeval/eval/metrics/porter_stemmer.h"

#include <array>
#include <utility>

namespace qeval::eval {
namespace {

bool ends_with(const std::string& w, std::string_view suffix) {
  return w.size() >= suffix.size() && std::string_view(w).substr(w.size() - suffix.size()) == suffix;
}

std::string drop(const std::string& w, size_t n) { return w.substr(0, w.size() - n); }

// A letter is a consonant unless it is a, e, i, o, u, or a 'y' that follows a consonant.
bool consonant_at(std::string_view w, size_t i) {
  const char c = w[i];
  if (c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u') return false;
  if (c != 'y' || i == 0) return true;
  return !consonant_at(w, i - 1);  // 'y' after a consonant acts as a vowel
}

// m in [C](VC)^m[V]: the number of vowel-run -> consonant transitions.
int measure(std::string_view w) {
  int m = 0;
  bool prev_vowel = false;
  for (size_t i = 0; i < w.size(); ++i) {
    const bool cons = consonant_at(w, i);
    if (cons && prev_vowel) ++m;
    prev_vowel = !cons;
  }
  return m;
}

bool has_vowel(std::string_view w) {
  for (size_t i = 0; i < w.size(); ++i)
    if (!consonant_at(w, i)) return true;
  return false;
}

bool double_consonant_end(std::string_view w) {
  const size_t n = w.size();
  return n >= 2 && w[n - 1] == w[n - 2] && consonant_at(w, n - 1);
}

// *o: consonant-vowel-consonant ending, the last not w, x or y; NLTK also accepts a
// two-letter vowel-consonant word.
bool cvc_end(std::string_view w) {
  const size_t n = w.size();
  if (n >= 3 && consonant_at(w, n - 3) && !consonant_at(w, n - 2) && consonant_at(w, n - 1)) {
    const char last = w[n - 1];
    if (last != 'w' && last != 'x' && last != 'y') return true;
  }
  return n == 2 && !consonant_at(w, 0) && consonant_at(w, 1);
}

enum class Cond { kNone, kM0, kM1, kM1StOrT, kLogi };

struct Rule {
  std::string_view suffix;
  std::string_view replacement;
  Cond cond;
};

bool holds(Cond cond, const std::string& stem, const std::string& word) {
  switch (cond) {
    case Cond::kNone: return true;
    case Cond::kM0: return measure(stem) > 0;
    case Cond::kM1: return measure(stem) > 1;
    case Cond::kM1StOrT: return measure(stem) > 1 && !stem.empty() && (stem.back() == 's' || stem.back() == 't');
    case Cond::kLogi: return measure(std::string_view(word).substr(0, word.size() - 3)) > 0;  // stem + "l"
  }
  return false;
}

// The first rule whose suffix ends the word decides: it is applied if its condition holds,
// and otherwise the word is returned unchanged (later rules are not tried).
template <size_t N>
std::string apply_first(const std::string& word, const std::array<Rule, N>& rules) {
  for (const Rule& r : rules) {
    if (!ends_with(word, r.suffix)) continue;
    std::string stem = drop(word, r.suffix.size());
    if (!holds(r.cond, stem, word)) return word;
    return stem.append(r.replacement);
  }
  return word;
}

std::string step1a(const std::string& w) {
  if (ends_with(w, "ies") && w.size() == 4) return drop(w, 3) + "ie";
  static constexpr std::array<Rule, 4> rules{{
      {"sses", "ss", Cond::kNone}, {"ies", "i", Cond::kNone}, {"ss", "ss", Cond::kNone}, {"s", "", Cond::kNone}}};
  return apply_first(w, rules);
}

std::string step1b(const std::string& w) {
  if (ends_with(w, "ied")) return drop(w, 3) + (w.size() == 4 ? "ie" : "i");
  if (ends_with(w, "eed")) {
    std::string stem = drop(w, 3);
    return measure(stem) > 0 ? stem + "ee" : w;
  }
  std::string stem;
  bool removed = false;
  for (std::string_view suffix : {std::string_view("ed"), std::string_view("ing")}) {
    if (ends_with(w, suffix)) {
      std::string candidate = drop(w, suffix.size());
      if (has_vowel(candidate)) {
        stem = std::move(candidate);
        removed = true;
        break;
      }
    }
  }
  if (!removed) return w;
  if (ends_with(stem, "at") || ends_with(stem, "bl") || ends_with(stem, "iz")) return stem + "e";
  if (double_consonant_end(stem)) {
    const char last = stem.back();
    if (last != 'l' && last != 's' && last != 'z') stem.pop_back();
    return stem;
  }
  if (measure(stem) == 1 && cvc_end(stem)) return stem + "e";
  return stem;
}

std::string step1c(const std::string& w) {
  // y -> i after a consonant that is not the first letter.
  if (ends_with(w, "y")) {
    std::string stem = drop(w, 1);
    if (stem.size() > 1 && consonant_at(stem, stem.size() - 1)) return stem + "i";
  }
  return w;
}

std::string step2(const std::string& w) {
  // NLTK tries "alli" -> "al" first and runs step 2 again on the result.
  if (ends_with(w, "alli") && measure(std::string_view(w).substr(0, w.size() - 4)) > 0)
    return step2(drop(w, 4) + "al");
  static constexpr std::array<Rule, 22> rules{{
      {"ational", "ate", Cond::kM0}, {"tional", "tion", Cond::kM0}, {"enci", "ence", Cond::kM0},
      {"anci", "ance", Cond::kM0},   {"izer", "ize", Cond::kM0},    {"bli", "ble", Cond::kM0},
      {"alli", "al", Cond::kM0},     {"entli", "ent", Cond::kM0},   {"eli", "e", Cond::kM0},
      {"ousli", "ous", Cond::kM0},   {"ization", "ize", Cond::kM0}, {"ation", "ate", Cond::kM0},
      {"ator", "ate", Cond::kM0},    {"alism", "al", Cond::kM0},    {"iveness", "ive", Cond::kM0},
      {"fulness", "ful", Cond::kM0}, {"ousness", "ous", Cond::kM0}, {"aliti", "al", Cond::kM0},
      {"iviti", "ive", Cond::kM0},   {"biliti", "ble", Cond::kM0},  {"fulli", "ful", Cond::kM0},
      {"logi", "log", Cond::kLogi}}};
  return apply_first(w, rules);
}

std::string step3(const std::string& w) {
  static constexpr std::array<Rule, 7> rules{{{"icate", "ic", Cond::kM0},
                                              {"ative", "", Cond::kM0},
                                              {"alize", "al", Cond::kM0},
                                              {"iciti", "ic", Cond::kM0},
                                              {"ical", "ic", Cond::kM0},
                                              {"ful", "", Cond::kM0},
                                              {"ness", "", Cond::kM0}}};
  return apply_first(w, rules);
}

std::string step4(const std::string& w) {
  static constexpr std::array<Rule, 19> rules{{
      {"al", "", Cond::kM1},   {"ance", "", Cond::kM1},  {"ence", "", Cond::kM1}, {"er", "", Cond::kM1},
      {"ic", "", Cond::kM1},   {"able", "", Cond::kM1},  {"ible", "", Cond::kM1}, {"ant", "", Cond::kM1},
      {"ement", "", Cond::kM1}, {"ment", "", Cond::kM1}, {"ent", "", Cond::kM1},  {"ion", "", Cond::kM1StOrT},
      {"ou", "", Cond::kM1},   {"ism", "", Cond::kM1},   {"ate", "", Cond::kM1},  {"iti", "", Cond::kM1},
      {"ous", "", Cond::kM1},  {"ive", "", Cond::kM1},   {"ize", "", Cond::kM1}}};
  return apply_first(w, rules);
}

std::string step5a(const std::string& w) {
  if (!ends_with(w, "e")) return w;
  std::string stem = drop(w, 1);
  const int m = measure(stem);
  if (m > 1 || (m == 1 && !cvc_end(stem))) return stem;
  return w;
}

std::string step5b(const std::string& w) {
  // (m > 1 and *d and *L) -> single letter; the measure is taken with one 'l' still on.
  if (ends_with(w, "ll")) {
    std::string one_l = drop(w, 1);
    if (measure(one_l) > 1) return one_l;
  }
  return w;
}

}  // namespace

std::string porter_stem(std::string_view word) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 16> kIrregular{{
      {"skies", "sky"},     {"sky", "sky"},       {"dying", "die"},       {"lying", "lie"},
      {"tying", "tie"},     {"news", "news"},     {"innings", "inning"},  {"inning", "inning"},
      {"outings", "outing"}, {"outing", "outing"}, {"cannings", "canning"}, {"canning", "canning"},
      {"howe", "howe"},     {"proceed", "proceed"}, {"exceed", "exceed"}, {"succeed", "succeed"}}};
  for (const auto& [form, stem] : kIrregular)
    if (form == word) return std::string(stem);
  std::string w(word);
  if (w.size() <= 2) return w;
  w = step1a(w);
  w = step1b(w);
  w = step1c(w);
  w = step2(w);
  w = step3(w);
  w = step4(w);
  w = step5a(w);
  w = step5b(w);
  return w;
}

}  // namespace qeval::eval
