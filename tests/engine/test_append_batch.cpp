// Engine::append_batch: several KV caches advanced in one forward pass per round give each
// sequence the logits of its own append() calls (up to float summation order in sgemm).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/util/error.h"
#include "tiny_model.h"

namespace qeval {
namespace {

using test::make_tiny_model;
using test::tiny_config;

std::vector<TokenId> tokens_of(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<TokenId> t(static_cast<size_t>(n));
  uint64_t s = seed;
  for (auto& v : t) v = static_cast<TokenId>(test::splitmix64(s) % static_cast<uint64_t>(vocab));
  return t;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
  float d = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

// Prefill three prompts of different lengths together, then decode greedily in lock-step;
// compare with each sequence run alone through append().
void check_batch_matches_single(const std::string& arch, int64_t max_batch_tokens) {
  const Model m = make_tiny_model(tiny_config(arch), 21);
  EngineOptions opts;
  opts.threads = 2;
  opts.max_batch_tokens = max_batch_tokens;
  Engine batched(m, opts), single(m, opts);
  const int64_t V = batched.vocab_size();
  const std::vector<std::vector<TokenId>> prompts = {tokens_of(7, V, 1), tokens_of(1, V, 2), tokens_of(12, V, 3)};
  const size_t B = prompts.size();

  std::vector<KVCache> bc, sc;
  for (size_t i = 0; i < B; ++i) {
    bc.push_back(batched.new_cache(40));
    sc.push_back(single.new_cache(40));
  }
  std::vector<KVCache*> ptrs;
  for (auto& c : bc) ptrs.push_back(&c);
  std::vector<std::span<const TokenId>> step(prompts.begin(), prompts.end());
  std::vector<TokenId> next(B);
  for (int s = 0; s < 6; ++s) {
    const std::span<const float> all = batched.append_batch(ptrs, step);
    ASSERT_EQ(all.size(), B * static_cast<size_t>(V));
    for (size_t i = 0; i < B; ++i) {
      const std::span<const float> alone = single.append(sc[i], step[i]);
      const std::span<const float> mine = all.subspan(i * static_cast<size_t>(V), static_cast<size_t>(V));
      EXPECT_LE(max_abs_diff(mine, alone), 1e-4f) << arch << " step " << s << " sequence " << i;
      EXPECT_EQ(bc[i].size(), sc[i].size());
      next[i] = static_cast<TokenId>(std::max_element(mine.begin(), mine.end()) - mine.begin());
    }
    for (size_t i = 0; i < B; ++i) step[i] = {&next[i], 1};
  }
}

TEST(AppendBatch, MatchesSingleSequenceAppends) {
  for (const char* arch : {"llama", "qwen2", "gpt2"}) check_batch_matches_single(arch, 2048);
}

TEST(AppendBatch, RoundsSplitAtMaxBatchTokens) {
  // 3-row rounds: the 12-token prompt continues over several rounds from its cache.
  check_batch_matches_single("llama", 3);
}

TEST(AppendBatch, RejectsBadInputBeforeTouchingAnyCache) {
  const Model m = make_tiny_model(tiny_config("llama"), 5);
  Engine e(m, EngineOptions{.threads = 1});
  KVCache a = e.new_cache(8), b = e.new_cache(8);
  const std::vector<TokenId> ok = {1, 2}, bad = {1, static_cast<TokenId>(e.vocab_size())}, none;
  auto run = [&](std::vector<KVCache*> caches, std::vector<std::span<const TokenId>> toks) {
    e.append_batch(caches, toks);
  };
  EXPECT_THROW(run({&a, &b}, {ok}), Error);              // sizes differ
  EXPECT_THROW(run({&a, &a}, {ok, ok}), Error);          // one cache twice
  EXPECT_THROW(run({&a, &b}, {ok, none}), Error);        // empty token list
  EXPECT_THROW(run({&a, &b}, {ok, bad}), Error);         // invalid id
  EXPECT_EQ(a.size(), 0);                                // nothing appended by the failed calls
  const std::vector<TokenId> nine(9, 1);
  EXPECT_THROW(run({&a, &b}, {ok, nine}), Error);        // does not fit b's 8 positions
  EXPECT_EQ(a.size(), 0);
  run({&a, &b}, {ok, ok});
  EXPECT_EQ(a.size(), 2);
  EXPECT_EQ(b.size(), 2);
}

}  // namespace
}  // namespace qeval
