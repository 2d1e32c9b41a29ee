// Engine behaviour on tiny synthetic models: batching, threads, KV cache, hooks, weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "qeval/engine/engine.h"
#include "qeval/util/error.h"
#include "tiny_model.h"

namespace qeval {
namespace {

using test::make_tiny_model;
using test::tiny_config;

std::vector<TokenId> seq(int n, int salt, int vocab) {
  std::vector<TokenId> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<TokenId>((i * 7 + salt * 13 + 1) % vocab);
  return t;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

class EngineArch : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineArch, BatchedScoringEqualsScoringAlone) {
  Model m = make_tiny_model(tiny_config(GetParam()), 7);
  Engine e(m, {.threads = 2});
  const int V = static_cast<int>(m.config.vocab_size);
  std::vector<ScoreRequest> batch = {{seq(9, 1, V), 3}, {seq(20, 2, V), 1}, {seq(2, 3, V), 1}};
  auto together = e.score(batch);
  for (size_t i = 0; i < batch.size(); ++i) {
    auto alone = e.score({&batch[i], 1});
    ASSERT_EQ(alone[0].logprobs.size(), together[i].logprobs.size());
    for (size_t k = 0; k < alone[0].logprobs.size(); ++k) EXPECT_NEAR(alone[0].logprobs[k], together[i].logprobs[k], 1e-4);
  }
  // Full logits of one sequence alone vs in the batch (via evaluate).
  std::vector<SequenceView> views = {{batch[0].tokens, 0}, {batch[1].tokens, 0}, {batch[2].tokens, 0}};
  std::vector<float> in_batch(batch[1].tokens.size() * static_cast<size_t>(V));
  e.evaluate(views, [&](size_t s, int64_t pos, const float* l) {
    if (s == 1) std::copy_n(l, V, in_batch.data() + pos * V);
  });
  EXPECT_LT(max_diff(in_batch, e.logits(batch[1].tokens)), 1e-4);
}

TEST_P(EngineArch, SmallRoundBudgetSplitsSequencesWithoutChangingResults) {
  Model m = make_tiny_model(tiny_config(GetParam()), 8);
  const int V = static_cast<int>(m.config.vocab_size);
  Engine big(m, {.threads = 1});
  Engine small(m, {.threads = 1, .max_batch_tokens = 5});
  std::vector<ScoreRequest> batch = {{seq(12, 4, V), 1}, {seq(3, 5, V), 1}, {seq(17, 6, V), 2}};
  auto a = big.score(batch), b = small.score(batch);
  for (size_t i = 0; i < batch.size(); ++i)
    for (size_t k = 0; k < a[i].logprobs.size(); ++k) EXPECT_NEAR(a[i].logprobs[k], b[i].logprobs[k], 1e-4);
}

TEST_P(EngineArch, ThreadCountDoesNotChangeLogits) {
  Model m = make_tiny_model(tiny_config(GetParam()), 9);
  const int V = static_cast<int>(m.config.vocab_size);
  auto toks = seq(15, 7, V);
  Engine e1(m, {.threads = 1});
  auto l1 = e1.logits(toks);
  Engine e2(m, {.threads = 2});
  auto l2 = e2.logits(toks);
  Engine e3(m, {.threads = 3});
  auto l3 = e3.logits(toks);
  EXPECT_LT(max_diff(l1, l2), 1e-4);
  EXPECT_LT(max_diff(l1, l3), 1e-4);
}

TEST_P(EngineArch, IncrementalDecodeMatchesFullForward) {
  Model m = make_tiny_model(tiny_config(GetParam()), 10);
  const int V = static_cast<int>(m.config.vocab_size);
  Engine e(m, {.threads = 2});
  auto toks = seq(12, 8, V);
  auto full = e.logits(toks);
  KVCache cache = e.new_cache();
  e.append(cache, std::span<const TokenId>(toks.data(), 4));
  for (size_t i = 4; i < toks.size(); ++i) {
    auto l = e.append(cache, std::span<const TokenId>(&toks[i], 1));
    for (int v = 0; v < V; ++v) EXPECT_NEAR(l[static_cast<size_t>(v)], full[i * V + static_cast<size_t>(v)], 1e-4);
  }
  EXPECT_EQ(cache.size(), 12);
}

INSTANTIATE_TEST_SUITE_P(Archs, EngineArch, ::testing::Values("llama", "llama3", "mistral", "qwen2", "qwen3", "gpt2"));

TEST(Engine, ScoresAreLogSoftmaxOfLogits) {
  Model m = make_tiny_model(tiny_config("llama"), 3);
  Engine e(m, {.threads = 1});
  const int V = 37;
  auto toks = seq(6, 1, V);
  auto l = e.logits(toks);
  auto s = e.score(std::vector<ScoreRequest>{{toks, 2}});
  ASSERT_EQ(s[0].logprobs.size(), 4u);
  for (size_t p = 2; p < 6; ++p) {
    const float* row = l.data() + (p - 1) * V;
    double z = 0;
    for (int v = 0; v < V; ++v) z += std::exp(static_cast<double>(row[v]));
    EXPECT_NEAR(s[0].logprobs[p - 2], row[toks[p]] - std::log(z), 1e-5);
    const bool greedy = std::max_element(row, row + V) - row == toks[p];
    EXPECT_EQ(s[0].greedy[p - 2] != 0, greedy);
  }
}

struct Recorder : ForwardHooks {
  std::vector<std::string> calls;
  int kv_calls = 0;
  void linear_input(const LinearId& id, float*, int64_t rows, int64_t cols) override {
    calls.push_back("in:" + id.name() + ":" + std::to_string(rows) + "x" + std::to_string(cols));
  }
  void linear_output(const LinearId& id, float*, int64_t, int64_t) override { calls.push_back("out:" + id.name()); }
  void kv(int, float*, float*, int64_t, int64_t) override { ++kv_calls; }
};

TEST(Engine, HooksObserveEveryLinearWithoutChangingResults) {
  Model m = make_tiny_model(tiny_config("llama"), 4);
  Engine e(m, {.threads = 1});
  auto toks = seq(5, 2, 37);
  auto base = e.logits(toks);
  Recorder rec;
  e.set_hooks(&rec);
  auto hooked = e.logits(toks);
  e.set_hooks(nullptr);
  EXPECT_EQ(base, hooked);
  EXPECT_EQ(rec.kv_calls, 2);
  // 2 layers x 7 linears + output, input and output each.
  EXPECT_EQ(rec.calls.size(), (2u * 7 + 1) * 2);
  EXPECT_EQ(rec.calls[0], "in:blk.0.attn_q:5x16");
  EXPECT_EQ(rec.calls.back(), "out:output");
}

struct ZeroInput : ForwardHooks {
  LinearId target;
  void linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) override {
    if (id == target) std::fill(x, x + rows * cols, 0.0f);
  }
};

TEST(Engine, HookTransformsAffectOnlyTheirLayer) {
  // Zeroing the input of attn_v equals zeroing V's weights; attn_q/attn_k still see the real input.
  Model m = make_tiny_model(tiny_config("llama"), 5);
  auto toks = seq(6, 3, 37);
  Engine hooked(m, {.threads = 1});
  ZeroInput z;
  z.target = {1, LinearRole::AttnV};
  hooked.set_hooks(&z);
  auto a = hooked.logits(toks);
  Engine replaced(m, {.threads = 1});
  replaced.set_linear_weights({1, LinearRole::AttnV}, std::vector<float>(8 * 16, 0.0f));
  auto b = replaced.logits(toks);
  EXPECT_LT(max_diff(a, b), 1e-5);
  Engine plain(m, {.threads = 1});
  EXPECT_GT(max_diff(a, plain.logits(toks)), 1e-3);
}

TEST(Engine, SetLinearWeightsChecksShapeAndTakesEffect) {
  Model m = make_tiny_model(tiny_config("qwen2"), 6);
  Engine e(m, {.threads = 1});
  auto toks = seq(4, 1, 37);
  auto before = e.logits(toks);
  const LinearId id{0, LinearRole::FfnDown};
  auto w = e.linear(id).weights->to_f32();
  EXPECT_THROW(e.set_linear_weights(id, std::vector<float>(3)), Error);
  e.set_linear_weights(id, w);  // same values: same logits
  EXPECT_LT(max_diff(before, e.logits(toks)), 1e-6);
  for (auto& x : w) x *= 0.5f;
  e.set_linear_weights(id, Tensor::from_f32("x", {16, 24}, w));
  EXPECT_GT(max_diff(before, e.logits(toks)), 1e-4);
  EXPECT_EQ(e.linear_ids().size(), 2u * 7 + 1);
  EXPECT_EQ(LinearId::parse("blk.12.ffn_up.weight"), (LinearId{12, LinearRole::FfnUp}));
  EXPECT_EQ(LinearId::parse("output"), LinearId::output());
  EXPECT_FALSE(LinearId::parse("blk.x.ffn_up").has_value());
}

TEST(Engine, RejectsInvalidTokensAndFullCache) {
  Model m = make_tiny_model(tiny_config("llama"), 1);
  Engine e(m, {.threads = 1});
  std::vector<TokenId> bad = {1, 37};
  EXPECT_THROW(e.logits(bad), Error);
  std::vector<TokenId> neg = {-1};
  EXPECT_THROW(e.logits(neg), Error);
  KVCache c = e.new_cache(3);
  std::vector<TokenId> four = {1, 2, 3, 4};
  EXPECT_THROW(e.append(c, four), Error);
  Model g = make_tiny_model(tiny_config("gpt2"), 1);
  Engine eg(g, {.threads = 1});
  EXPECT_THROW(eg.logits(seq(33, 1, 37)), Error);  // 32 learned positions
}

}  // namespace
}  // namespace qeval
