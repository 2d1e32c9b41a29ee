// Python-compatible text helpers.
#include <gtest/gtest.h>

#include "qeval/eval/metrics/text.h"

namespace qeval::eval::text {
namespace {

std::string py_lower(const std::string& s) { return encode_utf8(lower(decode_utf8(s))); }

TEST(Text, Utf8Validation) {
  EXPECT_FALSE(find_invalid_utf8("plain ascii").has_value());
  EXPECT_FALSE(find_invalid_utf8("\xE6\x9D\xB1\xE4\xBA\xAC \xF0\x9F\x98\x80").has_value());
  EXPECT_EQ(find_invalid_utf8("ab\xC3"), 2u);             // truncated
  EXPECT_EQ(find_invalid_utf8("\xC0\xAF"), 0u);           // overlong
  EXPECT_EQ(find_invalid_utf8("x\xED\xA0\x80"), 1u);      // surrogate
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);   // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("ok\x80"), 2u);             // stray continuation byte
  EXPECT_EQ(decode_utf8("a\xFF" "b"), U"a\uFFFD" "b");
  EXPECT_EQ(encode_utf8(decode_utf8("\xE2\x80\x94\xF0\x9F\x98\x80")), "\xE2\x80\x94\xF0\x9F\x98\x80");
}

TEST(Text, PythonLower) {
  EXPECT_EQ(py_lower("ABC \xC3\x89T\xC3\x89"), "abc \xC3\xA9t\xC3\xA9");         // ÉTÉ -> été
  EXPECT_EQ(py_lower("\xC4\xB0"), "i\xCC\x87");                                   // İ -> i + U+0307
  EXPECT_EQ(py_lower("\xE2\x84\xAA"), "k");                                       // KELVIN SIGN
  EXPECT_EQ(py_lower("\xCE\x9F\xCE\xA3 \xCE\xA3"), "\xCE\xBF\xCF\x82 \xCF\x83"); // ΟΣ Σ -> ος σ
  EXPECT_EQ(py_lower("\xCE\x9F\xCE\xA3\xCE\x91"), "\xCE\xBF\xCF\x83\xCE\xB1");   // ΟΣΑ -> οσα
  EXPECT_EQ(py_lower("\xC3\x9F"), "\xC3\x9F");                                    // ß stays
}

TEST(Text, PythonWhitespace) {
  const std::u32string s = U"a\u00A0b\u2009c\u200Bd\x1C" U"e\u3000";
  const auto parts = split_whitespace(s);
  ASSERT_EQ(parts.size(), 4u);  // U+200B ZERO WIDTH SPACE is not whitespace
  EXPECT_EQ(parts[2], U"c\u200Bd");
  EXPECT_EQ(rstrip(U"x \u2028\u0085"), U"x");
  EXPECT_TRUE(is_word(U'_'));
  EXPECT_TRUE(is_word(U'\u00E9'));
  EXPECT_FALSE(is_word(U'\u0301'));  // combining marks are not \w in Python's re
}

}  // namespace
}  // namespace qeval::eval::text
