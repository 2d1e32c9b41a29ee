// KV grids held by a stored cache (codes + scales + zeros, engine/kv_cache.h) give exactly the
// results of the simulated path (KvQuantHooks: quantize-dequantize into a float cache), for a
// prefill and for token-by-token decoding; the other grids stay simulated, visibly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/engine/perplexity.h"
#include "qeval/engine/synth.h"
#include "qeval/io/model.h"
#include "qeval/quant/in_memory.h"
#include "qeval/quant/kv_quant.h"
#include "qeval/quant/spec.h"
#include "qeval/tokenizer/tokenizer.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

constexpr const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
constexpr const char* kText = "data/tinystories/tinystories_eval.txt";

const QuantizerConfig& kv_of(const std::string& spec) {
  static std::vector<std::unique_ptr<QuantSpec>> keep;
  keep.push_back(std::make_unique<QuantSpec>(QuantSpec::parse(spec)));
  return *keep.back()->kv;
}

std::vector<float> randn(size_t n, uint32_t seed) { return test::random_normal(n, seed); }

TEST(KvStoredCache, WhichGridsAreStored) {
  const int64_t hd = 64;
  for (const char* s : {"kv8", "kv4", "kv4-sym", "kv8-sym", "kv4g32", "kv4g16-sym", "kv4g128", "kv4-floor", "kv4-clip0.9",
                        "w4a8kv4"}) {
    const auto f = stored_kv_format(kv_of(s), hd);
    ASSERT_TRUE(f.has_value()) << s;
    EXPECT_TRUE(f->quantized());
    EXPECT_EQ(f->head_dim, hd);
    EXPECT_NE(kv_storage_description(kv_of(s), hd).find("(stored: "), std::string::npos) << s;
  }
  EXPECT_EQ(kv_storage_description(kv_of("kv4"), hd), "kv4 (stored: q4 asym per token+head)");
  EXPECT_EQ(kv_storage_description(kv_of("kv8g32-sym"), hd), "kv8g32 (stored: q8 sym g32)");
  EXPECT_EQ(kv_storage_description(kv_of("kv4g128"), hd), "kv4 (stored: q4 asym per token+head)");  // group > head
  for (const char* s : {"kv3", "kv2", "kv6", "kv4-stochastic", "kv4-scale1.05", "kv4-zero0.9"}) {
    EXPECT_FALSE(stored_kv_format(kv_of(s), hd).has_value()) << s;
    EXPECT_NE(kv_storage_description(kv_of(s), hd).find("(simulated: float cache"), std::string::npos) << s;
  }
  EXPECT_EQ(kv_storage_description(kv_of("kv3"), hd), "kv3 (simulated: float cache)");
  EXPECT_EQ(kv_storage_description(kv_of("kv4-stochastic"), hd), "kv4 (simulated: float cache; stochastic rounding)");
}

// The stored codes dequantize to the values of fake_quantize_inplace (KvQuantHooks), bit for bit,
// including ties, clipping, all-zero and constant groups.
TEST(KvStoredCache, DequantizedCacheEqualsHookOutput) {
  const int64_t hd = 12, heads = 3, kvd = hd * heads, tokens = 9;
  auto k = randn(static_cast<size_t>(tokens * kvd), 1), v = randn(static_cast<size_t>(tokens * kvd), 2);
  for (int64_t i = 0; i < kvd; ++i) k[static_cast<size_t>(i)] = 0.0f;                    // an all-zero token
  for (int64_t i = kvd; i < 2 * kvd; ++i) k[static_cast<size_t>(i)] = 0.75f;             // a constant one
  for (int64_t i = 2 * kvd; i < 3 * kvd; ++i) k[static_cast<size_t>(i)] = static_cast<float>(i % 16) / 15.0f;  // ties
  v[5] = 40.0f;
  for (const char* s : {"kv8", "kv4", "kv4-sym", "kv8-sym", "kv4g5", "kv4g4-sym", "kv8g6", "kv4-clip0.8", "kv4-floor",
                        "kv8-ceil-sym"}) {
    const auto f = stored_kv_format(kv_of(s), hd);
    ASSERT_TRUE(f.has_value()) << s;
    KVCache c(1, kvd, tokens, *f);
    c.write(0, 0, k.data(), v.data(), tokens);
    c.set_size(tokens);
    auto kq = k, vq = v;
    KvQuantHooks hooks(kv_of(s), hd);
    hooks.kv(0, kq.data(), vq.data(), tokens, kvd);
    std::vector<float> got_k(static_cast<size_t>(tokens * hd)), got_v(got_k.size());
    for (int64_t h = 0; h < heads; ++h) {
      c.read_head(0, false, h, 0, tokens, got_k.data());
      c.read_head(0, true, h, 0, tokens, got_v.data());
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t i = 0; i < hd; ++i) {
          const auto src = static_cast<size_t>(t * kvd + h * hd + i), dst = static_cast<size_t>(t * hd + i);
          ASSERT_EQ(got_k[dst], kq[src]) << s << " K t" << t << " h" << h << " i" << i;
          ASSERT_EQ(got_v[dst], vq[src]) << s << " V t" << t << " h" << h << " i" << i;
        }
    }
  }
}

// Logits of the simulated path (hooks, float cache) and of the stored cache, for a prefill
// (logits(): the engine's scratch caches) and for token-by-token decoding (new_cache + append).
struct PathLogits {
  std::vector<float> prefill, decode;
};
PathLogits run_path(Engine& e, const std::vector<TokenId>& toks) {
  PathLogits r;
  r.prefill = e.logits(toks);
  KVCache c = e.new_cache(static_cast<int64_t>(toks.size()));
  for (TokenId t : toks) {
    auto l = e.append(c, {&t, 1});
    r.decode.insert(r.decode.end(), l.begin(), l.end());
  }
  return r;
}
double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

void expect_stored_equals_simulated(Engine& e, const std::vector<TokenId>& toks, const std::vector<std::string>& specs) {
  const int64_t hd = e.config().head_dim;
  e.set_hooks(nullptr);
  e.set_kv_format({});
  const auto fp32 = e.logits(toks);
  for (const std::string& s : specs) {
    KvQuantHooks hooks(kv_of(s), hd);
    e.set_hooks(&hooks);
    const PathLogits sim = run_path(e, toks);
    e.set_hooks(nullptr);
    const auto f = stored_kv_format(kv_of(s), hd);
    ASSERT_TRUE(f.has_value()) << s;
    e.set_kv_format(*f);
    const PathLogits stored = run_path(e, toks);
    e.set_kv_format({});
    std::printf("[ kv stored ] %-10s %s: prefill max|diff| %.3g, decode max|diff| %.3g (vs fp32 %.3g)\n", s.c_str(),
                f->name().c_str(), max_diff(stored.prefill, sim.prefill), max_diff(stored.decode, sim.decode),
                max_diff(stored.prefill, fp32));
    ASSERT_EQ(stored.prefill.size(), sim.prefill.size());
    EXPECT_EQ(max_diff(stored.prefill, sim.prefill), 0.0) << s;
    EXPECT_EQ(max_diff(stored.decode, sim.decode), 0.0) << s;
    EXPECT_GT(max_diff(stored.prefill, fp32), 0.0) << s << ": the grid changes the logits";
  }
}

TEST(KvStoredCache, Stories260KLogitsEqualSimulatedPath) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  Model m = load_model(test::shared_path(kModel).string());
  auto tok = load_tokenizer(m);
  Engine e(m, EngineOptions{.threads = 2});
  auto toks = tok->encode(test::read_text(test::shared_path(kText)).substr(0, 2000));
  toks.resize(std::min<size_t>(toks.size(), 64));
  ASSERT_EQ(e.config().head_dim, 8);
  expect_stored_equals_simulated(e, toks, {"kv8", "kv4", "kv4-sym", "kv4g4", "kv8g4-sym"});
}

// head_dim 64 (the vector attention kernels), grouped-query attention, and a sliding window.
TEST(KvStoredCache, SyntheticHeadDim64LogitsEqualSimulatedPath) {
  for (int64_t window : {0, 9}) {
    ModelConfig c = synth_preset("stories260k");
    c.hidden_size = 256;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 64;
    c.rope_dim = 64;
    c.n_layers = 2;
    c.ffn_size = 128;
    c.vocab_size = 300;
    c.context_length = 64;
    c.sliding_window = window;
    Model m = synth_model(c, 5, synth_spm_vocab(c.vocab_size), 1);
    Engine e(m, EngineOptions{.threads = 3});
    std::vector<TokenId> toks;
    for (int i = 0; i < 24; ++i) toks.push_back(static_cast<TokenId>((i * 37 + 11) % 300));
    expect_stored_equals_simulated(e, toks, {"kv8", "kv4", "kv4-sym", "kv4g32", "kv4g16-sym"});
  }
}

TEST(KvStoredCache, QuantizeInMemoryStoresSupportedGridsAndSimulatesTheRest) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  Model m = load_model(test::shared_path(kModel).string());
  auto tok = load_tokenizer(m);
  const std::string text = test::read_text(test::shared_path(kText));
  PerplexityOptions po;
  po.method = PerplexityMethod::GPTQ;
  po.n_ctx = 128;
  po.max_chunks = 4;
  double stored_ppl = 0, simulated_ppl = 0;
  {
    Engine e(m, EngineOptions{.threads = 2});
    auto q = quantize_in_memory(e, QuantSpec::parse("kv4"), {}, "test");
    EXPECT_EQ(q->kv, nullptr);
    EXPECT_EQ(q->kv_storage, "kv4 (stored: q4 asym per token+head)");
    EXPECT_EQ(e.kv_format().name(), "q4 asym per token+head");
    EXPECT_TRUE(e.new_cache(8).format().quantized());
    stored_ppl = perplexity(e, *tok, text, po).ppl;
  }
  {
    Engine e(m, EngineOptions{.threads = 2});
    KvQuantHooks hooks(kv_of("kv4"), e.config().head_dim);
    e.set_hooks(&hooks);
    simulated_ppl = perplexity(e, *tok, text, po).ppl;
  }
  std::printf("[ kv stored ] kv4 perplexity stored %.6f simulated %.6f\n", stored_ppl, simulated_ppl);
  EXPECT_EQ(stored_ppl, simulated_ppl);
  {
    Engine e(m, EngineOptions{.threads = 2});
    auto q = quantize_in_memory(e, QuantSpec::parse("kv3"), {}, "test");
    EXPECT_NE(q->kv, nullptr);
    EXPECT_EQ(q->kv_storage, "kv3 (simulated: float cache)");
    EXPECT_FALSE(e.kv_format().quantized());
    EXPECT_EQ(e.hooks(), &q->hooks);
  }
  {
    Engine e(m, EngineOptions{.threads = 2});
    auto q = quantize_in_memory(e, QuantSpec::parse("w8"), {}, "test");
    EXPECT_EQ(q->kv_storage, "f32");
    EXPECT_FALSE(e.kv_format().quantized());
  }
}

}  // namespace
}  // namespace qeval::quant
