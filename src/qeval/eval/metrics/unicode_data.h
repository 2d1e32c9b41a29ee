#pragma once
// Character-property tables generated from Python 3.11's unicodedata (see unicode_data.cpp).
// The metric reference implementations are Python programs, so "whitespace", "lower case" and
// "word character" mean exactly what Python's str methods and re module take them to mean.
#include <cstddef>

namespace qeval::eval::unicode_data {

struct CodeRange {
  char32_t lo, hi;  // inclusive
};
struct LowerPair {
  char32_t from, to;
};

extern const CodeRange kSpace[];          // str.isspace()
extern const size_t kSpaceSize;
extern const CodeRange kAlnum[];          // str.isalnum(): re's \w is this plus '_'
extern const size_t kAlnumSize;
extern const CodeRange kCaseIgnorable[];  // Case_Ignorable, as str.lower()'s final-sigma rule sees it
extern const size_t kCaseIgnorableSize;
extern const CodeRange kCased[];          // Cased and not Case_Ignorable
extern const size_t kCasedSize;
extern const LowerPair kLower[];          // one-to-one str.lower() mappings (not U+0130, U+03A3)
extern const size_t kLowerSize;

}  // namespace qeval::eval::unicode_data
