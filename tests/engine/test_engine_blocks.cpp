// Engine::embed + forward_block (block-wise evaluation for sequential calibration) against the
// full forward: every linear input, every K/V row and the final hidden state must agree.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "qeval/engine/engine.h"
#include "qeval/engine/ops.h"
#include "qeval/util/error.h"
#include "tiny_model.h"

namespace qeval {
namespace {

// Records everything the hooks see, concatenated per linear / per layer.
struct Recorder final : ForwardHooks {
  std::map<LinearId, std::vector<float>> inputs;
  std::map<int, std::vector<float>> keys;
  void linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) override {
    auto& v = inputs[id];
    v.insert(v.end(), x, x + rows * cols);
  }
  void kv(int layer, float* k, float*, int64_t tokens, int64_t kv_dim) override {
    auto& v = keys[layer];
    v.insert(v.end(), k, k + tokens * kv_dim);
  }
};

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

class EngineBlocks : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineBlocks, BlockByBlockEqualsFullForward) {
  const Model m = test::make_tiny_model(test::tiny_config(GetParam()), 11);
  const int64_t V = m.config.vocab_size, L = 12, n_seqs = 3;
  std::vector<TokenId> tokens(static_cast<size_t>(n_seqs * L));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<TokenId>((i * 5 + 3) % static_cast<size_t>(V));

  // Full forward of the three sequences in one batch, logits everywhere (the output head's
  // input is output_norm(final hidden)).
  Engine full(m, {.threads = 2});
  Recorder a;
  full.set_hooks(&a);
  std::vector<SequenceView> views;
  for (int64_t s = 0; s < n_seqs; ++s) views.push_back({std::span<const TokenId>(tokens).subspan(static_cast<size_t>(s * L), L), 0});
  full.evaluate(views, [](size_t, int64_t, const float*) {});

  // Block by block. max_batch_tokens 2 * L: two rounds (2 sequences, then 1).
  Engine blocks(m, {.threads = 2, .max_batch_tokens = 2 * L});
  Recorder b;
  blocks.set_hooks(&b);
  std::vector<float> hidden = blocks.embed(tokens, L);
  for (int l = 0; l < static_cast<int>(m.config.n_layers); ++l) blocks.forward_block(l, hidden, L);

  ASSERT_EQ(b.inputs.size() + 1, a.inputs.size());  // all but the output head
  for (const auto& [id, x] : b.inputs) EXPECT_LE(max_diff(a.inputs.at(id), x), 1e-5) << id.name();
  for (const auto& [layer, k] : b.keys) EXPECT_LE(max_diff(a.keys.at(layer), k), 1e-5) << "layer " << layer;

  const int64_t H = m.config.hidden_size;
  const auto& nw = m.tensors.at("output_norm.weight").to_f32();
  std::vector<float> nb;
  if (m.tensors.count("output_norm.bias")) nb = m.tensors.at("output_norm.bias").to_f32();
  std::vector<float> normed(hidden.size());
  for (int64_t r = 0; r < n_seqs * L; ++r) {
    if (m.config.norm == NormKind::LayerNorm)
      ops::layernorm(hidden.data() + r * H, nw.data(), nb.empty() ? nullptr : nb.data(), normed.data() + r * H, H, m.config.norm_eps);
    else
      ops::rmsnorm(hidden.data() + r * H, nw.data(), normed.data() + r * H, H, m.config.norm_eps);
  }
  EXPECT_LE(max_diff(a.inputs.at(LinearId::output()), normed), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Archs, EngineBlocks, ::testing::Values("llama", "mistral", "qwen2", "qwen3", "gpt2"));

TEST(EngineBlocks, RejectsBadArguments) {
  const Model m = test::make_tiny_model(test::tiny_config("llama"), 3);
  Engine e(m, {.threads = 1});
  const std::vector<TokenId> t(8, 1);
  std::vector<float> h = e.embed(t, 4);
  EXPECT_THROW(e.embed(t, 3), Error);  // 8 tokens are not whole sequences of 3
  EXPECT_THROW(e.forward_block(-1, h, 4), Error);
  EXPECT_THROW(e.forward_block(static_cast<int>(m.config.n_layers), h, 4), Error);
  EXPECT_THROW(e.forward_block(0, h, 3), Error);
  EXPECT_THROW(e.embed(std::vector<TokenId>(4, static_cast<TokenId>(m.config.vocab_size)), 4), Error);
}

}  // namespace
}  // namespace qeval
