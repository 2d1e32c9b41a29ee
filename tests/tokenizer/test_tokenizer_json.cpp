// tokenizer.json loading: errors, and the BPE options/components on small synthetic files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "qeval/tokenizer/tokenizer_json.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval {
namespace {

using json = nlohmann::json;
using Ids = std::vector<TokenId>;

// A minimal BPE tokenizer.json: vocab from a list (id = position), merges as "a b".
json tiny(const std::vector<std::string>& vocab, const std::vector<std::string>& merges) {
  json v = json::object();
  for (size_t i = 0; i < vocab.size(); ++i) v[vocab[i]] = i;
  return json{{"version", "1.0"},
              {"normalizer", nullptr},
              {"pre_tokenizer", nullptr},
              {"post_processor", nullptr},
              {"decoder", {{"type", "Fuse"}}},
              {"added_tokens", json::array()},
              {"model", {{"type", "BPE"}, {"vocab", v}, {"merges", merges}}}};
}

std::unique_ptr<BpeTokenizer> make(const json& j, const json& config = nullptr) {
  return parse_tokenizer_json(j.dump(), "tiny.json", config.is_null() ? std::string() : config.dump(), "tiny_config.json");
}

Ids enc(const Tokenizer& t, const std::string& s, bool parse_special = true) {
  return t.encode(s, {.add_special = false, .parse_special = parse_special});
}

std::string error_of(const std::string& text) {
  try {
    parse_tokenizer_json(text, "bad.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TokenizerJson, RejectsFileWithoutModel) {
  EXPECT_EQ(error_of(R"({"version": "1.0", "normalizer": null})"), "bad.json: no model section");
  EXPECT_EQ(error_of(R"({"model": null})"), "bad.json: no model section");
  test::TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  json j = tiny({"a"}, {});
  j.erase("model");
  test::write_bytes(path, j.dump());
  try {
    load_tokenizer_json(path);
    FAIL() << "accepted a tokenizer.json without model";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": no model section");
  }
}

TEST(TokenizerJson, MalformedFilesGiveOneLineErrorsNamingTheFile) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "invalid JSON"},
      {"[1, 2]", "not a tokenizer.json"},
      {R"({"model": {"type": "WordPiece", "vocab": {}}})", "unsupported model type 'WordPiece'"},
      {R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})", "vocab entry 'a' has no integer id"},
      {R"({"model": {"type": "BPE", "vocab": {"a": -3}, "merges": []}})", "out of range"},
      {R"({"model": {"type": "BPE", "vocab": [1], "merges": []}})", "\"vocab\" must be an object"},
      {R"({"model": {"type": "BPE", "merges": []}})", "missing \"vocab\""},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}})", "is not \"a b\""},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}})", "neither"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})", "not in the vocab"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}})", "dropout"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "Precompiled"}})",
       "unsupported normalizer type 'Precompiled'"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "BertPreTokenizer"}})",
       "unsupported pre_tokenizer type 'BertPreTokenizer'"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "decoder": {"type": "WordPiece"}})",
       "unsupported decoder type 'WordPiece'"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "post_processor": {"type": "Frobnicate"}})",
       "unsupported post_processor type 'Frobnicate'"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Nope"}]}})",
       "pre_tokenizer.pretokenizers[0]: unsupported pre_tokenizer type 'Nope'"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "("}, "behavior": "Isolated"}})",
       "invalid regex"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split", "pattern": {"String": "x"}, "behavior": "Sideways"}})",
       "unknown split behavior 'Sideways'"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"content": "x"}]})", "added_tokens[0]"},
  };
  for (const auto& [text, want] : cases) {
    const std::string msg = error_of(text);
    EXPECT_EQ(msg.rfind("bad.json: ", 0), 0u) << text << " -> " << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << text << " -> " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_THROW(load_tokenizer_json("/nonexistent/tokenizer.json"), Error);
}

TEST(TokenizerJson, MergeRanksDecide) {
  const std::vector<std::string> v = {"a", "b", "c", "ab", "bc", "abc"};
  EXPECT_EQ(enc(*make(tiny(v, {"b c", "a b"})), "abc"), (Ids{0, 4}));
  EXPECT_EQ(enc(*make(tiny(v, {"a b", "b c"})), "abc"), (Ids{3, 2}));
  EXPECT_EQ(enc(*make(tiny(v, {"b c", "a b", "a bc"})), "abc"), (Ids{5}));
  // Pairs form of merges.
  json j = tiny(v, {});
  j["model"]["merges"] = json::array({json::array({"a", "b"}), json::array({"ab", "c"})});
  EXPECT_EQ(enc(*make(j), "abcab"), (Ids{5, 3}));
  // Equal ranks: leftmost first.
  EXPECT_EQ(enc(*make(tiny({"a", "aa"}, {"a a"})), "aaa"), (Ids{1, 0}));
  EXPECT_EQ(enc(*make(tiny({"a", "aa", "aaaa"}, {"a a", "aa aa"})), "aaaaa"), (Ids{2, 0}));
}

TEST(TokenizerJson, IgnoreMerges) {
  json j = tiny({"a", "b", "c", "ab", "abc"}, {"a b"});
  EXPECT_EQ(enc(*make(j), "abc"), (Ids{3, 2}));
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(enc(*make(j), "abc"), (Ids{4}));
  EXPECT_EQ(enc(*make(j), "abab"), (Ids{3, 3}));
}

TEST(TokenizerJson, UnknownCharacters) {
  json j = tiny({"<unk>", "a", "b"}, {});
  EXPECT_EQ(enc(*make(j), "axyb"), (Ids{1, 2}));  // no unk_token: dropped, as HF does
  j["model"]["unk_token"] = "<unk>";
  EXPECT_EQ(enc(*make(j), "axyb"), (Ids{1, 0, 0, 2}));
  j["model"]["fuse_unk"] = true;
  EXPECT_EQ(enc(*make(j), "axyb\xC3\xA9"), (Ids{1, 0, 2, 0}));
}

TEST(TokenizerJson, ByteFallback) {
  json j = tiny({"<unk>", "a", "<0xC3>", "<0xA9>", "<0xFF>"}, {});
  j["model"]["unk_token"] = "<unk>";
  j["model"]["byte_fallback"] = true;
  j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  auto t = make(j);
  EXPECT_EQ(enc(*t, "a\xC3\xA9z"), (Ids{1, 2, 3, 0}));  // 'z' has no byte token either: unk
  EXPECT_EQ(t->decode({1, 2, 3}), "a\xC3\xA9");
  EXPECT_EQ(enc(*t, "\xFF" "a"), (Ids{4, 1}));             // invalid UTF-8 byte -> its byte token
  EXPECT_EQ(t->decode({4, 1}), "\xFF" "a");                // raw bytes come back
  EXPECT_EQ(t->token_text(2), "\xC3");
}

TEST(TokenizerJson, ContinuingSubwordPrefixAndSuffix) {
  json j = tiny({"a", "##b", "ab", "##c", "abc"}, {"a ##b", "ab ##c"});
  j["model"]["continuing_subword_prefix"] = "##";
  EXPECT_EQ(enc(*make(j), "abc"), (Ids{4}));
  EXPECT_EQ(enc(*make(j), "ab"), (Ids{2}));
  json k = tiny({"a", "b</w>", "ab</w>", "b"}, {"a b</w>"});
  k["model"]["end_of_word_suffix"] = "</w>";
  EXPECT_EQ(enc(*make(k), "ab"), (Ids{2}));
}

TEST(TokenizerJson, AddedTokensMatchLongestLeftmostWithFlags) {
  json j = tiny({"x", "y", " ", "<", ">", "m"}, {});
  j["added_tokens"] = json::array({
      {{"id", 10}, {"content", "<m>"}, {"special", true}, {"normalized", false}},
      {{"id", 11}, {"content", "<m>>"}, {"special", false}, {"normalized", false}},
      {{"id", 12}, {"content", "[L]"}, {"special", true}, {"lstrip", true}, {"normalized", false}},
      {{"id", 13}, {"content", "[R]"}, {"special", true}, {"rstrip", true}, {"normalized", false}},
      {{"id", 14}, {"content", "xy"}, {"special", false}, {"single_word", true}, {"normalized", false}},
  });
  auto t = make(j);
  EXPECT_EQ(t->vocab_size(), 15);
  EXPECT_EQ(enc(*t, "x<m>y"), (Ids{0, 10, 1}));
  EXPECT_EQ(enc(*t, "x<m>>y"), (Ids{0, 11, 1}));             // longest wins
  EXPECT_EQ(enc(*t, "x<m>y", false), (Ids{0, 3, 5, 4, 1}));   // special not parsed: text
  EXPECT_EQ(enc(*t, "x<m>>", false), (Ids{0, 11}));           // non-special still matched
  EXPECT_EQ(enc(*t, "x  [L] y"), (Ids{0, 12, 2, 1}));         // lstrip eats the spaces before
  EXPECT_EQ(enc(*t, "x [R]  y"), (Ids{0, 2, 13, 1}));         // rstrip eats the spaces after
  EXPECT_EQ(enc(*t, "xy xxy"), (Ids{14, 2, 0, 0, 1}));        // single_word: not inside a word
  EXPECT_EQ(t->decode({0, 10, 1}), "x<m>y");
  EXPECT_EQ(t->token_string(10), "<m>");
}

TEST(TokenizerJson, NormalizedAddedTokensMatchAfterNormalization) {
  json j = tiny({"h", "i", "H", "I", " "}, {});
  j["normalizer"] = {{"type", "Lowercase"}};
  j["added_tokens"] = json::array({{{"id", 20}, {"content", "hi"}, {"special", false}, {"normalized", true}},
                                   {{"id", 21}, {"content", "HI!"}, {"special", false}, {"normalized", false}}});
  auto t = make(j);
  EXPECT_EQ(enc(*t, "HI hI"), (Ids{20, 4, 20}));
  EXPECT_EQ(enc(*t, "HI!"), (Ids{21}));  // raw match first
}

TEST(TokenizerJson, PostProcessorsAndConfig) {
  json j = tiny({"<s>", "</s>", "a"}, {});
  j["added_tokens"] = json::array({{{"id", 0}, {"content", "<s>"}, {"special", true}},
                                   {{"id", 1}, {"content", "</s>"}, {"special", true}}});
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
                          {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}};
  auto t = make(j);
  EXPECT_EQ(t->encode("a"), (Ids{0, 2, 1}));
  EXPECT_EQ(t->encode(""), (Ids{0, 1}));
  EXPECT_EQ(enc(*t, "a"), (Ids{2}));
  EXPECT_TRUE(t->adds_bos());
  EXPECT_TRUE(t->adds_eos());
  EXPECT_EQ(t->bos_id(), 0);
  EXPECT_EQ(t->eos_id(), 1);
  // tokenizer_config.json's add_bos_token / add_eos_token override the template.
  auto u = make(j, {{"add_bos_token", false}, {"add_eos_token", false}, {"bos_token", "<s>"}, {"eos_token", {{"content", "</s>"}}}});
  EXPECT_EQ(u->encode("a"), (Ids{2}));
  EXPECT_FALSE(u->adds_bos());
  EXPECT_EQ(u->eos_id(), 1);
  json plain = j;
  plain["post_processor"] = {{"type", "ByteLevel"}};
  auto w = make(plain, {{"add_bos_token", true}, {"bos_token", "<s>"}, {"eos_token", nullptr}});
  EXPECT_EQ(w->encode("a"), (Ids{0, 2}));
  EXPECT_EQ(w->eos_id(), -1);
  // Roberta: <s> A </s>.
  json rob = j;
  rob["post_processor"] = {{"type", "RobertaProcessing"}, {"sep", {"</s>", 1}}, {"cls", {"<s>", 0}}};
  EXPECT_EQ(make(rob)->encode("a"), (Ids{0, 2, 1}));
  // Sequence of post-processors.
  json seq = j;
  seq["post_processor"] = {{"type", "Sequence"}, {"processors", {{{"type", "ByteLevel"}}, j["post_processor"]}}};
  EXPECT_EQ(make(seq)->encode("a"), (Ids{0, 2, 1}));
}

TEST(TokenizerJson, MetaspacePipelineAndDecoders) {
  const std::string m = "\xE2\x96\x81";
  json j = tiny({m, "a", "b", m + "a"}, {m + " a"});
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "always"}, {"split", true}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "always"}, {"split", true}};
  auto t = make(j);
  EXPECT_EQ(enc(*t, "a ab"), (Ids{3, 3, 2}));
  EXPECT_EQ(t->decode({3, 3, 2}), "a ab");
  EXPECT_EQ(t->token_text(3), " a");  // no stripping when streaming one token

  json s = tiny({"x", " "}, {});
  s["decoder"] = {{"type", "Sequence"},
                  {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", "x"}}}, {"content", "yy"}},
                                {{"type", "Fuse"}},
                                {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 2}}}}};
  EXPECT_EQ(make(s)->decode({1, 1, 0, 1, 1, 1}), " yy ");
  json none = tiny({"x", "y"}, {});
  none["decoder"] = nullptr;
  EXPECT_EQ(make(none)->decode({0, 1, 0}), "x y x");  // HF joins with spaces without a decoder
}

TEST(TokenizerJson, ByteLevelPipeline) {
  // Every byte is a token; merges build "Ġhi".
  std::vector<std::string> v;
  for (int b = 0; b < 256; ++b) v.push_back(unicode::byte_to_unicode(static_cast<uint8_t>(b)));
  v.push_back("\xC4\xA0h");
  v.push_back("\xC4\xA0hi");
  json j = tiny(v, {"\xC4\xA0 h", "\xC4\xA0h i"});
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  auto t = make(j);
  const TokenId ghi = 257;
  EXPECT_EQ(enc(*t, "hi hi"), (Ids{ghi, ghi}));  // add_prefix_space
  const std::string junk = "\xFF\xFEhi\x80 hi";
  const Ids ids = enc(*t, junk);
  EXPECT_EQ(t->decode(ids), " " + junk);
}

}  // namespace
}  // namespace qeval

namespace qeval {
namespace {

// Found by fuzz_tokenizer_json: a vocab id of 14444444 in a 6-entry vocabulary made the
// loader allocate dense tables for 14M ids. Such ids are now rejected up front.
TEST(TokenizerJson, RejectsIdsFarBeyondTheVocabulary) {
  const std::string vocab_error = error_of(
      R"({"model": {"type": "BPE", "vocab": {"a": 14444444, "b": 1}, "merges": []}})");
  EXPECT_NE(vocab_error.find("bad.json"), std::string::npos) << vocab_error;
  EXPECT_NE(vocab_error.find("vocab id 14444444 is out of range"), std::string::npos) << vocab_error;
  const std::string added_error = error_of(
      R"({"added_tokens": [{"id": 99999999, "content": "<x>", "special": true}],
          "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}})");
  EXPECT_NE(added_error.find("id 99999999 of '<x>' is out of range"), std::string::npos) << added_error;
}

}  // namespace
}  // namespace qeval
