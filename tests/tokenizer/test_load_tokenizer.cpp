// load_tokenizer(): which implementation each kind of path gets, HF config flags, errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "qeval/io/gguf.h"
#include "qeval/io/model.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval {
namespace {

using Ids = std::vector<TokenId>;
namespace fs = std::filesystem;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// The lily sequence as llama-tokenize gave it for the stories260K GGUF (BOS first).
std::pair<std::string, Ids> lily() {
  const auto j = nlohmann::json::parse(test::read_text(test::shared_path("reference/logits/stories260K-F32.logits.json")));
  for (const auto& s : j["sequences"])
    if (s["name"] == "lily") return {s["text"].get<std::string>(), s["tokens"].get<Ids>()};
  ADD_FAILURE() << "no lily sequence";
  return {};
}

TEST(LoadTokenizer, SentencePieceModelFile) {
  QEVAL_REQUIRE_SHARED("models/stories260K/tok512.model");
  QEVAL_REQUIRE_SHARED("reference/logits/stories260K-F32.logits.json");
  auto tok = load_tokenizer(test::shared_path("models/stories260K/tok512.model").string());
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_TRUE(tok->adds_bos());
  EXPECT_FALSE(tok->adds_eos());
  const auto [text, ids] = lily();
  EXPECT_EQ(tok->encode(text), ids);
}

TEST(LoadTokenizer, HfDirectoryWithTokenizerModel) {
  QEVAL_REQUIRE_SHARED("models/stories260K-hf/tokenizer.model");
  QEVAL_REQUIRE_SHARED("reference/logits/stories260K-F32.logits.json");
  auto tok = load_tokenizer(test::shared_path("models/stories260K-hf").string());
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_TRUE(tok->adds_bos());  // tokenizer_config.json: add_bos_token true
  EXPECT_FALSE(tok->adds_eos());
  const auto [text, ids] = lily();
  EXPECT_EQ(tok->encode(text), ids);
  EXPECT_EQ(tok->vocab_size(), 512);
}

TEST(LoadTokenizer, HfDirectoryConfigFlagsApply) {
  QEVAL_REQUIRE_SHARED("models/stories260K/tok512.model");
  test::TempDir dir;
  fs::copy_file(test::shared_path("models/stories260K/tok512.model"), dir.path() / "tokenizer.model");
  test::write_bytes(dir.path() / "tokenizer_config.json", R"({"add_bos_token": false, "add_eos_token": true})");
  auto tok = load_tokenizer(dir.path().string());
  EXPECT_FALSE(tok->adds_bos());
  EXPECT_TRUE(tok->adds_eos());
  const Ids ids = tok->encode("Hello");
  ASSERT_FALSE(ids.empty());
  EXPECT_NE(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(tok->encode("Hello", {.add_special = false}).size() + 1, ids.size());

  test::write_bytes(dir.path() / "tokenizer_config.json", R"({"add_bos_token": "yes"})");
  EXPECT_NE(error_of([&] { load_tokenizer(dir.path().string()); }).find("add_bos_token"), std::string::npos);
  test::write_bytes(dir.path() / "tokenizer_config.json", "{not json");
  EXPECT_NE(error_of([&] { load_tokenizer(dir.path().string()); }).find("tokenizer_config.json"), std::string::npos);
}

TEST(LoadTokenizer, HfDirectoryWithoutTokenizerIsAClearError) {
  QEVAL_REQUIRE_SHARED("models/aidreams260K-hf/config.json");
  const std::string dir = test::shared_path("models/aidreams260K-hf").string();
  EXPECT_EQ(error_of([&] { load_tokenizer(dir); }), dir + ": no tokenizer (tokenizer.json or tokenizer.model)");
  Model m;
  m.path = dir;
  m.format = ModelFormat::HFDirectory;
  EXPECT_EQ(error_of([&] { load_tokenizer(m); }), dir + ": no tokenizer (tokenizer.json or tokenizer.model)");
}

TEST(LoadTokenizer, HfDirectoryPrefersTokenizerJson) {
  QEVAL_REQUIRE_SHARED("reference/tokenizers/llama2/tokenizer.json");
  auto tok = load_tokenizer(test::shared_path("reference/tokenizers/llama2").string());
  EXPECT_NE(tok->kind(), "sentencepiece");  // tokenizer.json wins over tokenizer.model
  EXPECT_EQ(tok->encode("Hello world"), (Ids{1, 15043, 3186}));
  auto direct = load_tokenizer(test::shared_path("reference/tokenizers/llama2/tokenizer.json").string());
  EXPECT_EQ(direct->kind(), tok->kind());
}

TEST(LoadTokenizer, GgufByTokenizerModel) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-Q8_0.gguf");
  QEVAL_REQUIRE_SHARED("reference/tokenizers/gguf-vocab/ggml-vocab-gpt-2.gguf");
  QEVAL_REQUIRE_SHARED("reference/logits/stories260K-F32.logits.json");
  auto spm = load_tokenizer(test::shared_path("models/stories260K-gguf/stories260K-Q8_0.gguf").string());
  EXPECT_EQ(spm->kind(), "spm-gguf");
  const auto [text, ids] = lily();
  EXPECT_EQ(spm->encode(text), ids);
  auto bpe = load_tokenizer(test::shared_path("reference/tokenizers/gguf-vocab/ggml-vocab-gpt-2.gguf").string());
  EXPECT_NE(bpe->kind(), "spm-gguf");
  EXPECT_EQ(bpe->vocab_size(), 50257);
  EXPECT_EQ(bpe->encode("Hello world", {.add_special = false}), (Ids{15496, 995}));
}

TEST(LoadTokenizer, ModelOverloadUsesTheLoadedMetadata) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  QEVAL_REQUIRE_SHARED("reference/logits/stories260K-F32.logits.json");
  Model m;
  m.format = ModelFormat::GGUF;
  m.metadata = GGUFFile::open(test::shared_path("models/stories260K-gguf/stories260K-F32.gguf").string()).metadata;
  m.path = "/nonexistent/moved-away.gguf";  // the file is not opened again
  auto tok = load_tokenizer(m);
  EXPECT_EQ(tok->kind(), "spm-gguf");
  const auto [text, ids] = lily();
  EXPECT_EQ(tok->encode(text), ids);

  Model hf;
  hf.format = ModelFormat::HFDirectory;
  hf.path = test::shared_path("models/stories260K-hf").string();
  EXPECT_EQ(load_tokenizer(hf)->encode(text), ids);
}

TEST(LoadTokenizer, GgufErrorsNameFileAndKind) {
  test::TempDir dir;
  GGUFMetadata md;
  md.set("general.architecture", GGUFValue::str("bert"));
  md.set("tokenizer.ggml.model", GGUFValue::str("bert"));
  md.set("tokenizer.ggml.tokens", GGUFValue::string_array({"[PAD]", "a"}));
  const std::string bert = dir.file("bert.gguf");
  write_gguf(bert, md, {});
  const std::string e = error_of([&] { load_tokenizer(bert); });
  EXPECT_EQ(e.rfind(bert + ": ", 0), 0u) << e;
  EXPECT_NE(e.find("'bert'"), std::string::npos) << e;

  GGUFMetadata none;
  none.set("general.architecture", GGUFValue::str("llama"));
  const std::string bare = dir.file("bare.gguf");
  write_gguf(bare, none, {});
  const std::string e2 = error_of([&] { load_tokenizer(bare); });
  EXPECT_EQ(e2.rfind(bare + ": ", 0), 0u) << e2;
  EXPECT_NE(e2.find("tokenizer.ggml.model"), std::string::npos) << e2;

  // A GGUF file is recognised by its magic whatever its name.
  GGUFMetadata spm;
  spm.set("tokenizer.ggml.model", GGUFValue::str("llama"));
  spm.set("tokenizer.ggml.tokens", GGUFValue::string_array({"<unk>", "<s>", "</s>", "a"}));
  const std::string odd = dir.file("vocab.bin");
  write_gguf(odd, spm, {});
  EXPECT_EQ(load_tokenizer(odd)->kind(), "spm-gguf");
}

TEST(LoadTokenizer, OtherPathsAreErrors) {
  test::TempDir dir;
  const std::string missing = dir.file("nothing-here");
  EXPECT_EQ(error_of([&] { load_tokenizer(missing); }).rfind(missing + ": ", 0), 0u);
  const std::string txt = dir.file("notes.txt");
  test::write_bytes(txt, "hello");
  const std::string e = error_of([&] { load_tokenizer(txt); });
  EXPECT_EQ(e.rfind(txt + ": ", 0), 0u) << e;
  EXPECT_NE(e.find("not a tokenizer"), std::string::npos) << e;
}

}  // namespace
}  // namespace qeval
