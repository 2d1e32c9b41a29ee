// Regex translation (Oniguruma \s semantics on PCRE2), splitting behaviours, normalizers,
// pre-tokenizers and the byte-level alphabet.
#include <gtest/gtest.h>

#include <set>

#include "qeval/tokenizer/pretokenizer.h"
#include "qeval/tokenizer/unicode.h"
#include "qeval/util/error.h"

namespace qeval {
namespace {

using Pieces = std::vector<std::string>;
using unicode::utf8_encode;

std::vector<std::string> matches(const Regex& re, std::string_view text) {
  std::vector<std::pair<size_t, size_t>> m;
  re.find_all(text, m);
  std::vector<std::string> out;
  for (auto [b, e] : m) out.emplace_back(text.substr(b, e - b));
  return out;
}

Pieces split_with(const std::string& pattern, const std::string& text) {
  SplitPreTokenizer p(std::make_unique<Regex>(pattern), SplitBehavior::Isolated, false);
  Pieces pieces{text};
  p.pre_tokenize(pieces, true);
  return pieces;
}

bool full_match(const Regex& re, const std::string& s) {
  auto m = matches(re, s);
  return m.size() == 1 && m[0] == s;
}

TEST(Regex, WhitespaceIsOnigurumasSetEverywhere) {
  const Regex ws("\\s"), not_ws("\\S"), in_class("[\\s]"), neg_class("[^\\s]"), not_in_class("[\\S]"),
      neg_not_class("[^\\S]");
  size_t n_ws = 0;
  for (char32_t cp = 0; cp < 0x3100; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const std::string s = utf8_encode(cp);
    const bool w = unicode::is_whitespace(cp);
    n_ws += w;
    ASSERT_EQ(full_match(ws, s), w) << std::hex << static_cast<uint32_t>(cp);
    ASSERT_EQ(full_match(in_class, s), w) << std::hex << static_cast<uint32_t>(cp);
    ASSERT_EQ(full_match(neg_not_class, s), w) << std::hex << static_cast<uint32_t>(cp);
    ASSERT_EQ(full_match(not_ws, s), !w) << std::hex << static_cast<uint32_t>(cp);
    ASSERT_EQ(full_match(neg_class, s), !w) << std::hex << static_cast<uint32_t>(cp);
    ASSERT_EQ(full_match(not_in_class, s), !w) << std::hex << static_cast<uint32_t>(cp);
  }
  EXPECT_EQ(n_ws, 25u);  // 9-D, 20, 85, A0, 1680, 2000-200A, 2028, 2029, 202F, 205F, 3000
  // The characters the README names as the differences between engines.
  for (char32_t cp : {0x1Cu, 0x1Du, 0x1Eu, 0x1Fu, 0x180Eu, 0x200Bu, 0xFEFFu}) EXPECT_FALSE(full_match(ws, utf8_encode(cp)));
  for (char32_t cp : {0x85u, 0xA0u, 0x2028u, 0x2029u, 0x3000u, 0x0Bu}) EXPECT_TRUE(full_match(ws, utf8_encode(cp)));
  EXPECT_TRUE(full_match(not_ws, utf8_encode(0x10FFFF)));
}

TEST(Regex, TranslationLeavesEscapesAndQuotesAlone) {
  EXPECT_EQ(translate_onig_pattern("a\\\\s"), "a\\\\s");           // escaped backslash, then 's'
  EXPECT_EQ(translate_onig_pattern("\\Q\\s\\E"), "\\Q\\s\\E");     // quoted text
  EXPECT_EQ(translate_onig_pattern("[]\\s]").find("\\s"), std::string::npos);
  EXPECT_TRUE(full_match(Regex("a\\\\s"), "a\\s"));
  EXPECT_TRUE(full_match(Regex("\\Q\\s\\E"), "\\s"));
  EXPECT_TRUE(full_match(Regex("[]x]+"), "]x]"));
  EXPECT_TRUE(full_match(Regex("[[:alpha:]\\s]+"), "ab c"));
  EXPECT_TRUE(full_match(Regex(regex_escape("a.b*(c)\n")), "a.b*(c)\n"));
  EXPECT_FALSE(full_match(Regex(regex_escape("a.b")), "axb"));
}

TEST(Regex, BadPatternIsAnErrorNamingIt) {
  try {
    Regex r("(unclosed");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(unclosed"), std::string::npos) << e.what();
  }
}

TEST(Regex, EmptyMatchesAdvance) {
  EXPECT_EQ(matches(Regex("a*"), "baab"), (std::vector<std::string>{"aa"}));
  EXPECT_EQ(matches(Regex("x*"), "\xC3\xA9\xC3\xA9"), std::vector<std::string>{});
}

TEST(Regex, InvalidUtf8IsNeverMatchedAndNeverFails) {
  const Regex letters("\\p{L}+");
  EXPECT_EQ(matches(letters, "ab\xFF" "cd\xC3"), (std::vector<std::string>{"ab", "cd"}));
  EXPECT_EQ(matches(Regex("[^a]+"), "\xFF\xFE" "b"), (std::vector<std::string>{"b"}));
  // Overlong and surrogate encodings are invalid too.
  EXPECT_EQ(matches(Regex("."), "\xC0\xAF\xED\xA0\x80"), std::vector<std::string>{});
  // Every byte survives a split: gaps become pieces.
  const std::string junk = "x\xF0\x9F\x98 y\x80z\xFF\xFF 12";
  const auto pieces = split_with(kGpt2Pattern, junk);
  std::string joined;
  for (const auto& p : pieces) joined += p;
  EXPECT_EQ(joined, junk);
}

TEST(Regex, Gpt2Pattern) {
  EXPECT_EQ(split_with(kGpt2Pattern, "Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(split_with(kGpt2Pattern, "I'M don't"), (Pieces{"I", "'", "M", " don", "'t"}));
  EXPECT_EQ(split_with(kGpt2Pattern, "   Hello"), (Pieces{"  ", " Hello"}));
  EXPECT_EQ(split_with(kGpt2Pattern, "a  \n\nb "), (Pieces{"a", "  \n", "\n", "b", " "}));
  EXPECT_EQ(split_with(kGpt2Pattern, "x 1234567890!!"), (Pieces{"x", " 1234567890", "!!"}));
}

TEST(Regex, Llama3AndQwenPatterns) {
  const std::string llama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
      "\\s+(?!\\S)|\\s+";
  EXPECT_EQ(split_with(llama3, "1234567890"), (Pieces{"123", "456", "789", "0"}));
  EXPECT_EQ(split_with(llama3, "I'M $abc x$y"), (Pieces{"I", "'M", " $", "abc", " x", "$y"}));
  EXPECT_EQ(split_with(llama3, "a\n\n  b"), (Pieces{"a", "\n\n", " ", " b"}));
  // U+180E is not whitespace for Oniguruma: it leads the letter run like any other symbol.
  EXPECT_EQ(split_with(llama3, "a\xE1\xA0\x8E" "b"), (Pieces{"a", "\xE1\xA0\x8E" "b"}));
  // U+2000 is whitespace.
  EXPECT_EQ(split_with(llama3, "a\xE2\x80\x80\xE2\x80\x80!"), (Pieces{"a", "\xE2\x80\x80", "\xE2\x80\x80", "!"}));
}

TEST(Split, Behaviours) {
  const std::string text = "the-final--countdown";
  std::vector<std::pair<size_t, size_t>> m;
  Regex("-").find_all(text, m);
  auto run = [&](SplitBehavior b, bool invert) {
    Pieces out;
    split_pieces(text, m, b, invert, out);
    return out;
  };
  EXPECT_EQ(run(SplitBehavior::Removed, false), (Pieces{"the", "final", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::Isolated, false), (Pieces{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::MergedWithPrevious, false), (Pieces{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::MergedWithNext, false), (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(run(SplitBehavior::Contiguous, false), (Pieces{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::Removed, true), (Pieces{"-", "-", "-"}));
  Pieces none;
  split_pieces("", {}, SplitBehavior::Isolated, false, none);
  EXPECT_TRUE(none.empty());
}

TEST(PreTokenizers, ByteLevel) {
  ByteLevelPreTokenizer with_regex(false, true);
  Pieces p{"Hello world\n"};
  with_regex.pre_tokenize(p, true);
  EXPECT_EQ(p, (Pieces{"Hello", "\xC4\xA0world", "\xC4\x8A"}));  // Ġworld, Ċ
  ByteLevelPreTokenizer prefix(true, false);
  Pieces q{"Hi", " there"};
  prefix.pre_tokenize(q, true);
  EXPECT_EQ(q, (Pieces{"\xC4\xA0Hi", "\xC4\xA0there"}));
}

TEST(PreTokenizers, DigitsWhitespaceSplitMetaspaceSequence) {
  Pieces a{"a123b"};
  DigitsPreTokenizer(true).pre_tokenize(a, true);
  EXPECT_EQ(a, (Pieces{"a", "1", "2", "3", "b"}));
  Pieces b{"a123b"};
  DigitsPreTokenizer(false).pre_tokenize(b, true);
  EXPECT_EQ(b, (Pieces{"a", "123", "b"}));
  Pieces c{" a \t b\xE3\x80\x80" "c "};
  WhitespaceSplitPreTokenizer().pre_tokenize(c, true);
  EXPECT_EQ(c, (Pieces{"a", "b", "c"}));

  const std::string m = "\xE2\x96\x81";
  Pieces d{"Hey friend"};
  MetaspacePreTokenizer(m, MetaspacePreTokenizer::Prepend::Always, true).pre_tokenize(d, false);
  EXPECT_EQ(d, (Pieces{m + "Hey", m + "friend"}));
  Pieces e{"Hey friend"};
  MetaspacePreTokenizer(m, MetaspacePreTokenizer::Prepend::First, false).pre_tokenize(e, false);
  EXPECT_EQ(e, (Pieces{"Hey" + m + "friend"}));
  Pieces f{"Hey"};
  MetaspacePreTokenizer(m, MetaspacePreTokenizer::Prepend::First, false).pre_tokenize(f, true);
  EXPECT_EQ(f, (Pieces{m + "Hey"}));

  std::vector<std::unique_ptr<PreTokenizer>> parts;
  parts.push_back(std::make_unique<DigitsPreTokenizer>(true));
  parts.push_back(std::make_unique<ByteLevelPreTokenizer>(false, false));
  SequencePreTokenizer seq(std::move(parts));
  Pieces g{"x 12"};
  seq.pre_tokenize(g, true);
  EXPECT_EQ(g, (Pieces{"x\xC4\xA0", "1", "2"}));
}

TEST(Normalizers, Basics) {
  EXPECT_EQ(PrependNormalizer("_").normalize(""), "");
  EXPECT_EQ(PrependNormalizer("_").normalize("a"), "_a");
  EXPECT_EQ(ReplaceNormalizer(" ", "\xE2\x96\x81").normalize(" a  b"), "\xE2\x96\x81" "a\xE2\x96\x81\xE2\x96\x81" "b");
  EXPECT_EQ(ReplaceNormalizer(std::make_unique<Regex>("\\s+"), " ").normalize("a \t\n b"), "a b");
  EXPECT_EQ(StripNormalizer(true, true).normalize(" \xE3\x80\x80 a b \n"), "a b");
  EXPECT_EQ(StripNormalizer(false, true).normalize("  a  "), "  a");
  EXPECT_EQ(LowercaseNormalizer().normalize("ABC \xC3\x89"), "abc \xC3\xA9");
  std::vector<std::unique_ptr<Normalizer>> parts;
  parts.push_back(std::make_unique<PrependNormalizer>("\xE2\x96\x81"));
  parts.push_back(std::make_unique<ReplaceNormalizer>(" ", "\xE2\x96\x81"));
  EXPECT_EQ(SequenceNormalizer(std::move(parts)).normalize("a b"), "\xE2\x96\x81" "a\xE2\x96\x81" "b");
}

TEST(Normalizers, UnicodeForms) {
  const UnicodeNormalizer nfc(unicode::NormalForm::NFC), nfd(unicode::NormalForm::NFD),
      nfkc(unicode::NormalForm::NFKC);
  EXPECT_EQ(nfc.normalize("cafe\xCC\x81"), "caf\xC3\xA9");
  EXPECT_EQ(nfd.normalize("caf\xC3\xA9"), "cafe\xCC\x81");
  EXPECT_EQ(nfc.normalize("\xE2\x84\xA6"), "\xCE\xA9");          // OHM SIGN -> GREEK CAPITAL OMEGA
  EXPECT_EQ(nfc.normalize("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");  // composition exclusion
  EXPECT_EQ(nfkc.normalize("\xEF\xAC\x81"), "fi");               // ligature
  EXPECT_EQ(nfc.normalize("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // Hangul jamo -> syllable
  // Invalid bytes and NUL stay where they are; the valid runs around them are normalized.
  EXPECT_EQ(nfc.normalize(std::string("e\xCC\x81\xFF" "e\xCC\x81\0x", 9)), std::string("\xC3\xA9\xFF\xC3\xA9\0x", 7));
}

TEST(Unicode, ByteLevelAlphabet) {
  std::set<std::string> seen;
  std::string all;
  for (int b = 0; b < 256; ++b) {
    seen.insert(unicode::byte_to_unicode(static_cast<uint8_t>(b)));
    all.push_back(static_cast<char>(b));
  }
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_EQ(unicode::byte_to_unicode(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(unicode::byte_to_unicode('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(unicode::byte_to_unicode('\t'), "\xC4\x89");  // ĉ
  EXPECT_EQ(unicode::byte_to_unicode('A'), "A");
  EXPECT_EQ(unicode::byte_to_unicode(0xAD), "\xC5\x83");  // the last remapped byte: U+0143
  EXPECT_EQ(unicode::byte_level_to_bytes(unicode::bytes_to_byte_level(all)), all);
  EXPECT_EQ(unicode::byte_level_to_bytes("\xE2\x96\x81x"), "\xE2\x96\x81x");  // not in the alphabet: kept
}

TEST(Unicode, Utf8Decoding) {
  auto c = unicode::utf8_next("\xF0\x9F\xA6\x99", 0);
  EXPECT_TRUE(c.valid);
  EXPECT_EQ(c.cp, 0x1F999u);
  EXPECT_EQ(c.len, 4u);
  EXPECT_FALSE(unicode::utf8_next("\xF0\x9F\xA6", 0).valid);  // truncated
  EXPECT_FALSE(unicode::utf8_next("\xE0\x80\xAF", 0).valid);  // overlong
  EXPECT_FALSE(unicode::utf8_next("\xF4\x90\x80\x80", 0).valid);  // > U+10FFFF
  EXPECT_TRUE(unicode::is_valid_utf8("h\xC3\xA9llo"));
  EXPECT_FALSE(unicode::is_valid_utf8("h\xC3llo"));
}

}  // namespace
}  // namespace qeval
