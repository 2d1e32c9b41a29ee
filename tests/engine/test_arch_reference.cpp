// Architectures without llama.cpp references (mistral sliding window, qwen2 QKV bias, qwen3
// QK-norm, gpt2, llama3 rope scaling) against the float64 pure-Python forward in
// tests/engine/reference/tiny_ref.py (expected logits in tests/engine/data/tiny_ref.json).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "qeval/engine/engine.h"
#include "tiny_model.h"

namespace qeval {
namespace {

const nlohmann::json& reference() {
  static const nlohmann::json j = [] {
    std::ifstream in(std::string(QEVAL_SOURCE_DIR) + "/tests/engine/data/tiny_ref.json");
    return nlohmann::json::parse(in);
  }();
  return j;
}

const nlohmann::json& entry(const std::string& name) {
  for (const auto& m : reference().at("models"))
    if (m.at("name") == name) return m;
  throw std::runtime_error("no reference for " + name);
}

double max_diff_to_reference(const Model& m, const nlohmann::json& e, int threads) {
  Engine engine(m, {.threads = threads});
  const auto tokens = reference().at("tokens").get<std::vector<TokenId>>();
  const auto logits = engine.logits(tokens);
  const auto& ref = e.at("logits");
  double d = 0;
  const size_t V = static_cast<size_t>(engine.vocab_size());
  for (size_t p = 0; p < tokens.size(); ++p)
    for (size_t v = 0; v < V; ++v) d = std::max(d, std::fabs(ref[p][v].get<double>() - logits[p * V + v]));
  return d;
}

class ArchReference : public ::testing::TestWithParam<std::string> {};

TEST_P(ArchReference, MatchesFloat64Reference) {
  const auto& e = entry(GetParam());
  const ModelConfig c = test::tiny_config(GetParam());
  // The Python side must describe the same model as tiny_config().
  const auto& jc = e.at("config");
  ASSERT_EQ(jc.at("n_heads").get<int64_t>(), c.n_heads);
  ASSERT_EQ(jc.at("n_kv_heads").get<int64_t>(), c.n_kv_heads);
  ASSERT_EQ(jc.at("head_dim").get<int64_t>(), c.head_dim);
  ASSERT_EQ(jc.at("sliding_window").get<int64_t>(), c.sliding_window);
  ASSERT_EQ(jc.at("qk_norm").get<bool>(), c.qk_norm);
  ASSERT_EQ(jc.at("qkv_bias").get<bool>(), c.qkv_bias);
  ASSERT_EQ(jc.at("tied_embeddings").get<bool>(), c.tied_embeddings);
  ASSERT_FLOAT_EQ(jc.at("rope_theta").get<float>(), c.rope_theta);
  const Model m = test::make_tiny_model(c, reference().at("seed").get<uint64_t>());
  const double d1 = max_diff_to_reference(m, e, 1), d2 = max_diff_to_reference(m, e, 2);
  std::printf("  %s: max |diff| vs float64 reference %.3g (1 thread), %.3g (2 threads)\n", GetParam().c_str(), d1, d2);
  EXPECT_LT(d1, 1e-4);
  EXPECT_LT(d2, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Tiny, ArchReference, ::testing::Values("llama", "llama3", "mistral", "qwen2", "qwen3", "gpt2"));

// Each architectural feature must matter for its reference: switching it off breaks parity.
TEST(ArchReference, FeaturesAreObservable) {
  auto off = [](const std::string& name, auto mutate) {
    ModelConfig c = test::tiny_config(name);
    const Model ok = test::make_tiny_model(c, reference().at("seed").get<uint64_t>());
    Model m = ok;
    mutate(m.config);
    return max_diff_to_reference(m, entry(name), 1);
  };
  EXPECT_GT(off("mistral", [](ModelConfig& c) { c.sliding_window = 0; }), 1e-3);
  EXPECT_GT(off("llama3", [](ModelConfig& c) { c.rope_scaling.kind = RopeScalingKind::None; }), 1e-3);
  EXPECT_GT(off("qwen3", [](ModelConfig& c) { c.rope_theta = 10000.0f; }), 1e-3);
  EXPECT_GT(off("qwen3", [](ModelConfig& c) { c.qk_norm = false; }), 1e-3);
  EXPECT_GT(off("qwen2", [](ModelConfig& c) { c.qkv_bias = false; }), 1e-3);
  EXPECT_GT(off("gpt2", [](ModelConfig& c) { c.activation = ActivationKind::SiLU; }), 1e-3);
  EXPECT_GT(off("qwen2", [](ModelConfig& c) { c.norm_eps = 0.5f; }), 1e-3);
}

}  // namespace
}  // namespace qeval
