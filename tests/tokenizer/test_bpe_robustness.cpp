// Arbitrary bytes (invalid UTF-8 included) and concurrent use of the real BPE tokenizers.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "qeval/tokenizer/bpe_tokenizer.h"
#include "test_support.h"

namespace qeval {
namespace {

std::vector<std::string> random_texts(size_t n, uint32_t seed, bool avoid_e2) {
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  const std::string pieces[] = {" ", "  ", "\n", "a", "Hello", "'s", "12345", "\xC3\xA9", "\xE4\xBD\xA0", "\xF0\x9F\xA6\x99",
                                "<|endoftext|>", "<s>", "\t", "!!", "\xC2\xA0"};
  for (size_t i = 0; i < n; ++i) {
    std::string s;
    const size_t len = rng() % 40;
    for (size_t k = 0; k < len; ++k) {
      if (rng() % 3 == 0) {
        unsigned char b = static_cast<unsigned char>(rng());
        if (avoid_e2 && b == 0xE2) b = 0xE3;
        s.push_back(static_cast<char>(b));  // often invalid UTF-8
      } else {
        s += pieces[rng() % std::size(pieces)];
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

TEST(BpeRobustness, ByteLevelIsLosslessOnArbitraryBytes) {
  for (const char* f : {"gpt2", "llama3"}) {
    const std::string rel = std::string("reference/tokenizers/") + f + "/tokenizer.json";
    QEVAL_REQUIRE_SHARED(rel);
    auto tok = load_tokenizer_json(test::shared_path(rel).string());
    for (const auto& s : random_texts(500, 7, false)) {
      const auto ids = tok->encode(s, {.add_special = false, .parse_special = false});
      ASSERT_EQ(tok->decode(ids), s) << f;
      std::string streamed;
      for (TokenId id : ids) streamed += tok->token_text(id);
      ASSERT_EQ(streamed, s) << f;
    }
  }
}

TEST(BpeRobustness, ByteFallbackIsLosslessOnArbitraryBytes) {
  const std::string rel = "reference/tokenizers/llama2/tokenizer.json";
  QEVAL_REQUIRE_SHARED(rel);
  auto tok = load_tokenizer_json(test::shared_path(rel).string());
  // No 0xE2 bytes: a literal U+2581 would decode as a space (documented, as in HF).
  for (const auto& s : random_texts(500, 11, true)) {
    const auto ids = tok->encode(s, {.add_special = false, .parse_special = false});
    ASSERT_EQ(tok->decode(ids), s);
  }
}

TEST(BpeRobustness, NfcTokenizerNeverFails) {
  const std::string rel = "reference/tokenizers/qwen3/tokenizer.json";
  QEVAL_REQUIRE_SHARED(rel);
  auto tok = load_tokenizer_json(test::shared_path(rel).string());
  for (const auto& s : random_texts(300, 13, false)) {
    const auto ids = tok->encode(s);
    for (TokenId id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocab_size());
  }
}

TEST(BpeRobustness, ConcurrentEncodeGivesTheSameIds) {
  const std::string rel = "reference/tokenizers/qwen3/tokenizer.json";
  QEVAL_REQUIRE_SHARED(rel);
  auto tok = load_tokenizer_json(test::shared_path(rel).string());
  const auto texts = random_texts(200, 17, false);
  std::vector<std::vector<TokenId>> want;
  for (const auto& s : texts) want.push_back(tok->encode(s));
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = 0; i < texts.size(); ++i) bad[static_cast<size_t>(t)] += tok->encode(texts[i]) != want[i];
    });
  }
  for (auto& th : threads) th.join();
  for (int b : bad) EXPECT_EQ(b, 0);
}

}  // namespace
}  // namespace qeval
