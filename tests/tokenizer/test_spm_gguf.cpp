// GGUF "llama" (SPM) vocabularies against llama.cpp's own test vectors, HF's Llama-2 ids,
// SentencePiece/llama.cpp on stories260K, and the token sequences of the logits references.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "qeval/io/gguf.h"
#include "qeval/tokenizer/spm_gguf_tokenizer.h"
#include "qeval/util/error.h"
#include "test_support.h"
#include "tokenizer/tokenizer_test_util.h"

namespace qeval {
namespace {

using test::Ids;
using nlohmann::json;

using test::read_jsonl;
using test::show;

std::unique_ptr<Tokenizer> open_gguf_vocab(const std::filesystem::path& p) {
  const GGUFFile f = GGUFFile::open(p.string());
  return make_spm_gguf_tokenizer(f.metadata, p.string());
}

const EncodeOptions kPlain{.add_special = false, .parse_special = true};
const EncodeOptions kWithBos{.add_special = true, .parse_special = true};
const EncodeOptions kPlainNoParse{.add_special = false, .parse_special = false};
const EncodeOptions kWithBosNoParse{.add_special = true, .parse_special = false};

// llama.cpp's models/ggml-vocab-*.gguf.inp/.out: texts split on "\n__ggml_vocab_test__\n",
// one line of space-separated ids per text (no BOS).
void check_llamacpp_vectors(const std::string& name, size_t expected_cases) {
  const std::string rel = "reference/tokenizers/gguf-vocab/" + name;
  QEVAL_REQUIRE_SHARED(rel);
  auto tok = open_gguf_vocab(test::shared_path(rel));
  const std::string inp = test::read_text(test::shared_path(rel + ".inp"));
  const std::string outp = test::read_text(test::shared_path(rel + ".out"));

  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0;;) {
    const size_t next = inp.find(sep, pos);
    if (next == std::string::npos) {
      ASSERT_EQ(pos, inp.size()) << "the .inp file should end with the separator";
      break;
    }
    texts.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<Ids> expected;
  std::istringstream lines(outp);
  for (std::string line; std::getline(lines, line);) {
    Ids ids;
    std::istringstream ls(line);
    for (TokenId id; ls >> id;) ids.push_back(id);
    expected.push_back(ids);
  }
  ASSERT_EQ(texts.size(), expected.size());
  ASSERT_EQ(texts.size(), expected_cases);

  size_t pass = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const Ids got = tok->encode(texts[i], kPlain);
    if (got == expected[i]) ++pass;
    else ADD_FAILURE() << name << " case " << i << " text=" << json(texts[i]).dump() << "\n  expected " << show(expected[i])
                       << "\n  got      " << show(got);
  }
  std::cout << "[ parity ] " << name << ": " << pass << "/" << texts.size() << "\n";
  EXPECT_EQ(pass, texts.size());
}

TEST(SpmGguf, LlamaSpmVocabMatchesLlamaCppVectors) { check_llamacpp_vectors("ggml-vocab-llama-spm.gguf", 46); }
TEST(SpmGguf, Phi3VocabMatchesLlamaCppVectors) { check_llamacpp_vectors("ggml-vocab-phi-3.gguf", 46); }

// llama.cpp measured 0/1516 differences between this vocabulary and HF's Llama-2 tokenizer
// with special-token parsing on; decode also follows HF's decoder (special tokens kept).
TEST(SpmGguf, LlamaSpmVocabMatchesHfLlama2OnAllCases) {
  QEVAL_REQUIRE_SHARED("reference/tokenizers/gguf-vocab/ggml-vocab-llama-spm.gguf");
  QEVAL_REQUIRE_SHARED("reference/tokenizers/llama2/cases.jsonl");
  auto tok = open_gguf_vocab(test::shared_path("reference/tokenizers/gguf-vocab/ggml-vocab-llama-spm.gguf"));
  const auto cases = read_jsonl(test::shared_path("reference/tokenizers/llama2/cases.jsonl"));
  ASSERT_EQ(cases.size(), 1516u);
  size_t ok_ids = 0, ok_special = 0, ok_decoded = 0, ok_tokens = 0, reported = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"];
    const Ids want = c["ids"].get<Ids>();
    const Ids want_special = c["ids_with_special"].get<Ids>();
    const Ids got = tok->encode(text, kPlain);
    const Ids got_special = tok->encode(text, kWithBos);
    const std::string decoded = tok->decode(want);
    std::vector<std::string> tokens;
    for (TokenId id : want) tokens.push_back(tok->token_string(id));
    ok_ids += got == want;
    ok_special += got_special == want_special;
    ok_decoded += decoded == c["decoded"].get<std::string>();
    ok_tokens += tokens == c["tokens"].get<std::vector<std::string>>();
    if ((got != want || got_special != want_special || decoded != c["decoded"].get<std::string>()) && reported++ < 10)
      ADD_FAILURE() << "case " << c["index"] << " text=" << json(text).dump() << "\n  expected " << show(want)
                    << "\n  got      " << show(got) << "\n  decoded  " << json(decoded).dump() << " want "
                    << c["decoded"].dump();
  }
  std::cout << "[ parity ] llama-spm.gguf vs llama2/cases.jsonl: ids " << ok_ids << ", ids_with_special "
            << ok_special << ", decoded " << ok_decoded << ", tokens " << ok_tokens << " of " << cases.size() << "\n";
  EXPECT_EQ(ok_ids, cases.size());
  EXPECT_EQ(ok_special, cases.size());
  EXPECT_EQ(ok_decoded, cases.size());
  EXPECT_EQ(ok_tokens, cases.size());
}

// stories260K GGUF vs llama.cpp: SentencePiece's ids on tok512.model, replaced by llama.cpp's
// own ids where llamacpp_check.json records that llama.cpp differs (it ignores
// remove_extra_whitespaces). llama.cpp ran with --no-parse-special.
TEST(SpmGguf, Stories260KMatchesLlamaCppOnAllCases) {
  const std::string model_rel = "models/stories260K-gguf/stories260K-F32.gguf";
  QEVAL_REQUIRE_SHARED(model_rel);
  QEVAL_REQUIRE_SHARED("reference/tokenizers/llamacpp_check.json");
  QEVAL_REQUIRE_SHARED("reference/tokenizers/stories260K-spm/cases.jsonl");
  auto tok = open_gguf_vocab(test::shared_path(model_rel));
  const auto cases = read_jsonl(test::shared_path("reference/tokenizers/stories260K-spm/cases.jsonl"));
  ASSERT_EQ(cases.size(), 1516u);
  const json check = json::parse(test::read_text(test::shared_path("reference/tokenizers/llamacpp_check.json")));
  const json& run = check["runs"]["stories260K-Q8_0_vs_stories260K-spm"];
  ASSERT_FALSE(run["parse_special"].get<bool>());
  std::map<int, Ids> llamacpp;
  for (const auto& d : run["diffs"]) llamacpp[d["index"].get<int>()] = d["llamacpp_ids"].get<Ids>();
  ASSERT_EQ(llamacpp.size(), run["differ"].get<size_t>());
  ASSERT_EQ(llamacpp.size(), 224u);

  size_t pass = 0, pass_bos = 0, pass_decoded = 0, reported = 0;
  for (const auto& c : cases) {
    const int index = c["index"];
    const std::string text = c["text"];
    const auto it = llamacpp.find(index);
    const Ids want = it != llamacpp.end() ? it->second : c["ids"].get<Ids>();
    Ids want_bos = {1};
    want_bos.insert(want_bos.end(), want.begin(), want.end());
    const Ids got = tok->encode(text, kPlainNoParse);
    pass += got == want;
    pass_bos += tok->encode(text, kWithBosNoParse) == want_bos;
    // Decoding as llama.cpp does it: the pieces concatenate to " " + text with spaces escaped,
    // so decoding gives the text back, except that a literal U+2581 comes back as a space.
    // (SentencePiece's `decoded` differs here on purpose: it leaves out the spaces its
    // remove_extra_whitespaces rule dropped, e.g. case 1396 "▁hello" -> "hello".)
    std::string want_decoded = text;
    for (size_t p; (p = want_decoded.find("\xE2\x96\x81")) != std::string::npos;) want_decoded.replace(p, 3, " ");
    const std::string decoded = tok->decode(want);
    pass_decoded += decoded == want_decoded;
    if (decoded != want_decoded && reported++ < 10)
      ADD_FAILURE() << "case " << index << " decoded " << json(decoded).dump() << " want " << json(want_decoded).dump();
    if (got != want && reported++ < 10)
      ADD_FAILURE() << "case " << index << " text=" << json(text).dump() << "\n  expected " << show(want)
                    << "\n  got      " << show(got);
  }
  std::cout << "[ parity ] stories260K-F32.gguf vs llama.cpp (" << cases.size() << " texts, " << llamacpp.size()
            << " from llamacpp_check.json): ids " << pass << ", with BOS " << pass_bos << ", decoded " << pass_decoded
            << "\n";
  EXPECT_EQ(pass, cases.size());
  EXPECT_EQ(pass_bos, cases.size());
  EXPECT_EQ(pass_decoded, cases.size());
}

// The token sequences llama-tokenize produced for the logits references (BOS added).
void check_logits_sequences(const std::string& model_rel, const std::string& logits_rel) {
  QEVAL_REQUIRE_SHARED(model_rel);
  QEVAL_REQUIRE_SHARED(logits_rel);
  auto tok = open_gguf_vocab(test::shared_path(model_rel));
  const json ref = json::parse(test::read_text(test::shared_path(logits_rel)));
  ASSERT_FALSE(ref["sequences"].empty());
  for (const auto& s : ref["sequences"]) {
    const std::string text = s["text"];
    EXPECT_EQ(tok->encode(text), s["tokens"].get<Ids>()) << s["name"] << ": " << text;
    Ids without_bos = s["tokens"].get<Ids>();
    without_bos.erase(without_bos.begin());
    EXPECT_EQ(tok->decode(without_bos), text) << s["name"];
  }
}

TEST(SpmGguf, Stories260KLogitsSequences) {
  check_logits_sequences("models/stories260K-gguf/stories260K-F32.gguf",
                         "reference/logits/stories260K-F32.logits.json");
}
TEST(SpmGguf, Aidreams260KLogitsSequences) {
  check_logits_sequences("models/aidreams260K-gguf/aidreams260K-F32.gguf",
                         "reference/logits/aidreams260K-F32.logits.json");
}

TEST(SpmGguf, LilyFromReferenceReadme) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  auto tok = open_gguf_vocab(test::shared_path("models/stories260K-gguf/stories260K-F32.gguf"));
  EXPECT_EQ(tok->encode("Once upon a time, there was a little girl named Lily."),
            (Ids{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426}));
  EXPECT_EQ(tok->kind(), "spm-gguf");
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->adds_bos());  // no add_bos_token key: llama.cpp's default for SPM
  EXPECT_FALSE(tok->adds_eos());
  EXPECT_EQ(tok->token_string(410), "\xE2\x96\x81");
  EXPECT_EQ(tok->token_text(410), " ");
  EXPECT_EQ(tok->token_text(13), "\n");  // <0x0A>
  EXPECT_EQ(tok->token_string(13), "<0x0A>");
  EXPECT_EQ(tok->token_text(1), "<s>");
  EXPECT_THROW(tok->token_text(512), Error);
  EXPECT_THROW(tok->decode({-1}), Error);
}

// ---- synthetic vocabularies: each rule on its own ----

struct VocabSpec {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
};

// <unk> <s> </s>, the 256 byte tokens, then `extra` (text, score, type).
GGUFMetadata make_vocab(const std::vector<std::tuple<std::string, float, int32_t>>& extra,
                        const std::string& name = "test") {
  VocabSpec v;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.scores = {0, 0, 0};
  v.types = {2, 3, 3};
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back({'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'});
    v.scores.push_back(0);
    v.types.push_back(6);
  }
  for (const auto& [t, s, ty] : extra) {
    v.tokens.push_back(t);
    v.scores.push_back(s);
    v.types.push_back(ty);
  }
  GGUFMetadata md;
  md.set("general.name", GGUFValue::str(name));
  md.set("tokenizer.ggml.model", GGUFValue::str("llama"));
  md.set("tokenizer.ggml.tokens", GGUFValue::string_array(v.tokens));
  md.set("tokenizer.ggml.scores", GGUFValue::f32_array(v.scores));
  md.set("tokenizer.ggml.token_type", GGUFValue::i32_array(v.types));
  return md;
}

constexpr TokenId kFirst = 259;  // id of the first extra token
const std::string kU = "\xE2\x96\x81";

TEST(SpmGgufSynthetic, HighestScoreMergesFirst) {
  // "abc": ab (score -1) vs bc (score -0.5): bc wins, then a+bc is not a token.
  auto md = make_vocab({{"a", -10, 1}, {"b", -10, 1}, {"c", -10, 1}, {"ab", -1, 1}, {"bc", -0.5, 1}, {kU, -5, 1}});
  md.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(false));
  auto tok = make_spm_gguf_tokenizer(md, "synthetic.gguf");
  EXPECT_EQ(tok->encode("abc", kPlain), (Ids{kFirst + 0, kFirst + 4}));
  // With ab scored higher, ab wins.
  auto md2 = make_vocab({{"a", -10, 1}, {"b", -10, 1}, {"c", -10, 1}, {"ab", -0.1f, 1}, {"bc", -0.5, 1}});
  md2.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(false));
  EXPECT_EQ(make_spm_gguf_tokenizer(md2, "x")->encode("abc", kPlain), (Ids{kFirst + 3, kFirst + 2}));
}

TEST(SpmGgufSynthetic, TiesGoToTheLeftmostPair) {
  // "aaa": the pairs (0,1) and (1,2) both make "aa" with the same score; the left one merges.
  auto md = make_vocab({{"a", -10, 1}, {"aa", -1, 1}});
  md.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(false));
  auto tok = make_spm_gguf_tokenizer(md, "x");
  EXPECT_EQ(tok->encode("aaa", kPlain), (Ids{kFirst + 1, kFirst + 0}));
  // A merged symbol can merge again: "aaaa" -> aa aa -> aaaa.
  auto md2 = make_vocab({{"a", -10, 1}, {"aa", -1, 1}, {"aaaa", -2, 1}});
  md2.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(false));
  EXPECT_EQ(make_spm_gguf_tokenizer(md2, "x")->encode("aaaa", kPlain), (Ids{kFirst + 2}));
}

TEST(SpmGgufSynthetic, SpacePrefixEscapingAndByteFallback) {
  auto md = make_vocab({{kU, -1, 1}, {"h", -2, 1}, {"i", -2, 1}, {kU + "h", -0.5, 1}, {"hi", -0.1f, 1}});
  auto tok = make_spm_gguf_tokenizer(md, "x");
  // "hi" -> "▁hi": "hi" (-0.1) beats "▁h" (-0.5); then "▁" + "hi" is not a token.
  EXPECT_EQ(tok->encode("hi", kPlain), (Ids{kFirst + 0, kFirst + 4}));
  EXPECT_EQ(tok->encode("hi", kWithBos), (Ids{1, kFirst + 0, kFirst + 4}));
  // "h é": é (C3 A9) is not in the vocabulary -> its bytes.
  EXPECT_EQ(tok->encode("h \xC3\xA9", kPlain), (Ids{kFirst + 3, kFirst + 0, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok->decode({kFirst + 3, kFirst + 0, 3 + 0xC3, 3 + 0xA9}), "h \xC3\xA9");
  EXPECT_EQ(tok->encode("", kWithBos), (Ids{1}));
  EXPECT_EQ(tok->encode("", kPlain), Ids{});
  // Without the prefix flag, no leading ▁ and decode keeps a leading space.
  md.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(false));
  auto raw = make_spm_gguf_tokenizer(md, "x");
  EXPECT_EQ(raw->encode("hi", kPlain), (Ids{kFirst + 4}));
  EXPECT_EQ(raw->decode({kFirst + 0, kFirst + 4}), " hi");
  EXPECT_EQ(tok->decode({kFirst + 0, kFirst + 4}), "hi");
}

TEST(SpmGgufSynthetic, SpecialTokens) {
  auto md = make_vocab({{kU, -1, 1}, {"<", -2, 1}, {"s", -2, 1}, {">", -2, 1}, {"<tool>", 0, 4}, {"x", -2, 1}});
  auto tok = make_spm_gguf_tokenizer(md, "x");
  const TokenId U = kFirst, LT = kFirst + 1, S = kFirst + 2, GT = kFirst + 3, TOOL = kFirst + 4, X = kFirst + 5;
  // Control tokens only with parse_special; the text after a special gets the space prefix again.
  EXPECT_EQ(tok->encode("x<s>x", kPlain), (Ids{U, X, 1, U, X}));
  EXPECT_EQ(tok->encode("x<s>x", kPlainNoParse), (Ids{U, X, LT, S, GT, X}));
  // User-defined tokens always.
  EXPECT_EQ(tok->encode("<tool>x", kPlainNoParse), (Ids{TOOL, U, X}));
  EXPECT_EQ(tok->encode("<unk>", kPlain), (Ids{0}));
  // Decode keeps special text; the leading space after a special stays.
  EXPECT_EQ(tok->decode({1, U, X, 2}), "<s> x</s>");
  EXPECT_EQ(tok->decode({U, X, TOOL}), "x<tool>");
  EXPECT_EQ(tok->token_text(TOOL), "<tool>");
}

TEST(SpmGgufSynthetic, Phi3StripsWhitespaceAfterSpecialTokens) {
  const std::vector<std::tuple<std::string, float, int32_t>> extra = {{kU, -1, 1}, {"x", -2, 1}, {"<|end|>", 0, 3}};
  const TokenId U = kFirst, X = kFirst + 1, END = kFirst + 2;
  auto phi = make_spm_gguf_tokenizer(make_vocab(extra, "Phi3"), "x");
  auto other = make_spm_gguf_tokenizer(make_vocab(extra, "other"), "x");
  EXPECT_EQ(phi->encode("x<|end|> \n x", kPlain), (Ids{U, X, END, U, X}));
  EXPECT_EQ(other->encode("x<|end|> x", kPlain), (Ids{U, X, END, U, U, X}));
  // <s> keeps what follows (llama.cpp's exception list).
  EXPECT_EQ(phi->encode("<s> x", kPlain), (Ids{1, U, U, X}));
}

TEST(SpmGgufSynthetic, SpecialIdsAndFlags) {
  auto md = make_vocab({{"x", -2, 1}});
  md.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(2));
  md.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(0xFFFFFFFFu));  // invalid: keeps the default 2
  md.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(false));
  md.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(true));
  auto tok = make_spm_gguf_tokenizer(md, "x");
  EXPECT_EQ(tok->bos_id(), 2);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_FALSE(tok->adds_bos());
  EXPECT_TRUE(tok->adds_eos());
  // No BOS; "▁" is not in this vocabulary, so the prefix falls back to its three bytes.
  EXPECT_EQ(tok->encode("x", kWithBos), (Ids{3 + 0xE2, 3 + 0x96, 3 + 0x81, kFirst, 2}));
}

TEST(SpmGgufSynthetic, BadVocabulariesAreClearErrors) {
  auto expect_error = [](const GGUFMetadata& md, const std::string& needle) {
    try {
      make_spm_gguf_tokenizer(md, "bad.gguf");
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.gguf"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  GGUFMetadata empty;
  expect_error(empty, "tokenizer.ggml.tokens");
  auto md = make_vocab({{"x", -2, 1}});
  md.set("tokenizer.ggml.scores", GGUFValue::f32_array({1.0f}));
  expect_error(md, "tokenizer.ggml.scores");
  auto md2 = make_vocab({});
  md2.set("tokenizer.ggml.model", GGUFValue::str("gpt2"));
  expect_error(md2, "gpt2");
}

}  // namespace
}  // namespace qeval
