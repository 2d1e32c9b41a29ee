// SentencePiece .model files: parity with Python sentencepiece (cases_sentencepiece.jsonl,
// stories260K-spm/cases.jsonl) and, with special-token parsing, with HF's Llama-2 tokenizer.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "qeval/tokenizer/sentencepiece_tokenizer.h"
#include "qeval/util/error.h"
#include "test_support.h"
#include "tokenizer/tokenizer_test_util.h"

namespace qeval {
namespace {

using test::Ids;
using nlohmann::json;

using test::read_jsonl;
using test::show;

struct Counts {
  size_t cases = 0, ids = 0, with_special = 0, decoded = 0, tokens = 0;
};

// Every case: ids, ids_with_special, decoded, tokens.
Counts check_cases(const Tokenizer& tok, const std::filesystem::path& cases_path, bool parse_special) {
  const auto cases = read_jsonl(cases_path);
  Counts n;
  n.cases = cases.size();
  const EncodeOptions plain{.add_special = false, .parse_special = parse_special};
  const EncodeOptions with_special{.add_special = true, .parse_special = parse_special};
  size_t reported = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"];
    const Ids want = c["ids"].get<Ids>();
    const Ids want_special = c["ids_with_special"].get<Ids>();
    const std::string want_decoded = c["decoded"];
    const Ids got = tok.encode(text, plain);
    const Ids got_special = tok.encode(text, with_special);
    const std::string decoded = tok.decode(want);
    std::vector<std::string> tokens;
    for (TokenId id : want) tokens.push_back(tok.token_string(id));
    n.ids += got == want;
    n.with_special += got_special == want_special;
    n.decoded += decoded == want_decoded;
    n.tokens += tokens == c["tokens"].get<std::vector<std::string>>();
    if ((got != want || got_special != want_special || decoded != want_decoded) && reported++ < 10)
      ADD_FAILURE() << cases_path.filename() << " case " << c["index"] << " text=" << json(text).dump()
                    << "\n  ids      " << show(got) << " want " << show(want) << "\n  special  " << show(got_special)
                    << " want " << show(want_special) << "\n  decoded  " << json(decoded).dump() << " want "
                    << json(want_decoded).dump();
  }
  return n;
}

void expect_all(const Counts& n, const std::string& label) {
  std::cout << "[ parity ] " << label << ": ids " << n.ids << ", ids_with_special " << n.with_special
            << ", decoded " << n.decoded << ", tokens " << n.tokens << " of " << n.cases << "\n";
  EXPECT_EQ(n.cases, 1516u);
  EXPECT_EQ(n.ids, n.cases);
  EXPECT_EQ(n.with_special, n.cases);
  EXPECT_EQ(n.decoded, n.cases);
  EXPECT_EQ(n.tokens, n.cases);
}

TEST(SentencePiece, Llama2MatchesSentencePieceOnAllCases) {
  QEVAL_REQUIRE_SHARED("reference/tokenizers/llama2/tokenizer.model");
  QEVAL_REQUIRE_SHARED("reference/tokenizers/llama2/cases_sentencepiece.jsonl");
  auto tok = load_sentencepiece_tokenizer(test::shared_path("reference/tokenizers/llama2/tokenizer.model").string());
  expect_all(check_cases(*tok, test::shared_path("reference/tokenizers/llama2/cases_sentencepiece.jsonl"), false),
             "llama2 tokenizer.model vs cases_sentencepiece.jsonl");
}

TEST(SentencePiece, Stories260KMatchesSentencePieceOnAllCases) {
  QEVAL_REQUIRE_SHARED("reference/tokenizers/stories260K-spm/tok512.model");
  QEVAL_REQUIRE_SHARED("reference/tokenizers/stories260K-spm/cases.jsonl");
  auto tok = load_sentencepiece_tokenizer(test::shared_path("reference/tokenizers/stories260K-spm/tok512.model").string());
  expect_all(check_cases(*tok, test::shared_path("reference/tokenizers/stories260K-spm/cases.jsonl"), false),
             "stories260K tok512.model vs stories260K-spm/cases.jsonl");
}

// With parse_special, <s> </s> <unk> in the text become tokens and each segment in between is
// encoded on its own: the same ids as HF's Llama-2 tokenizer.json on every case.
TEST(SentencePiece, Llama2WithSpecialParsingMatchesHf) {
  QEVAL_REQUIRE_SHARED("reference/tokenizers/llama2/tokenizer.model");
  QEVAL_REQUIRE_SHARED("reference/tokenizers/llama2/cases.jsonl");
  auto tok = load_sentencepiece_tokenizer(test::shared_path("reference/tokenizers/llama2/tokenizer.model").string());
  expect_all(check_cases(*tok, test::shared_path("reference/tokenizers/llama2/cases.jsonl"), true),
             "llama2 tokenizer.model (parse_special) vs HF llama2/cases.jsonl");
}

TEST(SentencePiece, Llama2Basics) {
  QEVAL_REQUIRE_SHARED("reference/tokenizers/llama2/tokenizer.model");
  auto tok = load_sentencepiece_tokenizer(test::shared_path("reference/tokenizers/llama2/tokenizer.model").string());
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->adds_bos());
  EXPECT_FALSE(tok->adds_eos());
  EXPECT_EQ(tok->encode("Hello world"), (Ids{1, 15043, 3186}));
  EXPECT_EQ(tok->encode("Hello <s> world"), (Ids{1, 15043, 29871, 1, 29871, 3186}));
  EXPECT_EQ(tok->encode("<s>", {.add_special = false, .parse_special = false}), (Ids{529, 29879, 29958}));
  EXPECT_EQ(tok->decode({1, 15043, 3186, 2}), "<s> Hello world</s>");
  EXPECT_EQ(tok->decode({15043, 0, 3186}), "Hello<unk> world");
  EXPECT_EQ(tok->token_string(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(tok->token_text(15043), " Hello");
  EXPECT_EQ(tok->token_text(13), "\n");  // <0x0A>
  EXPECT_EQ(tok->token_text(2), "</s>");
  EXPECT_THROW(tok->token_string(32000), Error);
  EXPECT_THROW(tok->decode({-5}), Error);

  auto eos = load_sentencepiece_tokenizer(test::shared_path("reference/tokenizers/llama2/tokenizer.model").string(),
                                          {.add_bos = false, .add_eos = true});
  EXPECT_FALSE(eos->adds_bos());
  EXPECT_TRUE(eos->adds_eos());
  EXPECT_EQ(eos->encode("Hello world"), (Ids{15043, 3186, 2}));
}

TEST(SentencePiece, LoadErrorsNameTheFile) {
  test::TempDir dir;
  const std::string missing = dir.file("missing.model");
  try {
    load_sentencepiece_tokenizer(missing);
    ADD_FAILURE() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  const std::string junk = dir.file("junk.model");
  test::write_bytes(junk, "this is not a protobuf \xff\xff\xff\xff");
  try {
    load_sentencepiece_tokenizer(junk);
    ADD_FAILURE() << "no error for a junk file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(junk), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qeval
