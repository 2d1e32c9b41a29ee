#include "qeval/eval/metrics/text.h"

#include <algorithm>

#include "qeval/eval/metrics/unicode_data.h"

namespace qeval::eval::text {
namespace {

using unicode_data::CodeRange;

bool in_ranges(const CodeRange* table, size_t n, char32_t c) {
  // First range whose upper end is >= c; c is in the table when that range starts at or below c.
  const CodeRange* end = table + n;
  const CodeRange* it = std::lower_bound(table, end, c, [](const CodeRange& r, char32_t v) { return r.hi < v; });
  return it != end && it->lo <= c;
}

// Length of the valid UTF-8 sequence starting at s[i], with its code point, or 0 if invalid.
size_t decode_one(std::string_view s, size_t i, char32_t& out) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    out = b0;
    return 1;
  }
  size_t len;
  char32_t cp;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  out = cp;
  return len;
}

}  // namespace

std::optional<size_t> find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    char32_t c;
    const size_t n = decode_one(s, i, c);
    if (n == 0) return i;
    i += n;
  }
  return std::nullopt;
}

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    char32_t c;
    const size_t n = decode_one(s, i, c);
    if (n == 0) {
      out.push_back(U'\uFFFD');
      ++i;
    } else {
      out.push_back(c);
      i += n;
    }
  }
  return out;
}


std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

bool is_space(char32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  return in_ranges(unicode_data::kSpace, unicode_data::kSpaceSize, c);
}

bool is_alnum(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return in_ranges(unicode_data::kAlnum, unicode_data::kAlnumSize, c);
}

bool is_word(char32_t c) { return c == U'_' || is_alnum(c); }

std::u32string lower(std::u32string_view s) {
  using namespace unicode_data;
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c < 0x80) {
      out.push_back(c >= U'A' && c <= U'Z' ? c + 32 : c);
    } else if (c == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE: the one 1:2 mapping
      out.push_back(U'i');
      out.push_back(0x307);
    } else if (c == 0x3A3) {
      // Final sigma: a cased letter before (skipping case-ignorables) and none after.
      size_t j = i;
      while (j > 0 && in_ranges(kCaseIgnorable, kCaseIgnorableSize, s[j - 1])) --j;
      bool final_sigma = j > 0 && in_ranges(kCased, kCasedSize, s[j - 1]);
      if (final_sigma) {
        size_t k = i + 1;
        while (k < s.size() && in_ranges(kCaseIgnorable, kCaseIgnorableSize, s[k])) ++k;
        final_sigma = k == s.size() || !in_ranges(kCased, kCasedSize, s[k]);
      }
      out.push_back(final_sigma ? 0x3C2 : 0x3C3);
    } else {
      const LowerPair* end = kLower + kLowerSize;
      const LowerPair* it =
          std::lower_bound(kLower, end, c, [](const LowerPair& p, char32_t v) { return p.from < v; });
      out.push_back(it != end && it->from == c ? it->to : c);
    }
  }
  return out;
}

std::vector<std::u32string_view> split_whitespace(std::u32string_view s) {
  std::vector<std::u32string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    const size_t start = i;
    while (i < s.size() && !is_space(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::u32string_view rstrip(std::u32string_view s) {
  size_t n = s.size();
  while (n > 0 && is_space(s[n - 1])) --n;
  return s.substr(0, n);
}

}  // namespace qeval::eval::text
