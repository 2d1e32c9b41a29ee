#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/engine/perplexity.h"
#include "qeval/io/model.h"
#include "qeval/quant/act_quant.h"
#include "qeval/quant/kv_quant.h"
#include "qeval/quant/spec.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

constexpr const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
constexpr const char* kText = "data/tinystories/tinystories_eval.txt";

std::vector<float> randn(size_t n, uint32_t seed) { return test::random_normal(n, seed); }

TEST(KvQuant, GroupsStayInsideHeads) {
  const int64_t tokens = 5, hd = 16, heads = 3, kvd = hd * heads;
  auto k = randn(static_cast<size_t>(tokens * kvd), 1), v = randn(static_cast<size_t>(tokens * kvd), 2);
  k[2] = 100.0f;  // token 0, head 0
  for (int bits : {2, 3, 4, 8}) {
    for (const char* g : {"", "g8"}) {
      const auto spec = QuantSpec::parse("kv" + std::to_string(bits) + g);  // asymmetric by default
      KvQuantHooks hooks = KvQuantHooks::from_spec(spec, hd);
      EXPECT_FALSE(hooks.config().symmetric);
      auto kq = k, vq = v;
      hooks.kv(0, kq.data(), vq.data(), tokens, kvd);
      const int64_t gs = std::string(g).empty() ? hd : 8;
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t c0 = 0; c0 < kvd; c0 += gs) {
          float lo = 0, hi = 0;
          for (int64_t c = c0; c < c0 + gs; ++c) {
            lo = std::min(lo, k[static_cast<size_t>(t * kvd + c)]);
            hi = std::max(hi, k[static_cast<size_t>(t * kvd + c)]);
          }
          const float step = (hi - lo) / static_cast<float>((1 << bits) - 1);
          for (int64_t c = c0; c < c0 + gs; ++c) {
            const auto i = static_cast<size_t>(t * kvd + c);
            EXPECT_LE(std::fabs(kq[i] - k[i]), 0.5f * step * 1.001f + 1e-6f) << bits << g << " t" << t << " c" << c;
          }
        }
      // The outlier in head 0 does not coarsen head 1 of the same token.
      float err1 = 0;
      for (int64_t c = hd; c < 2 * hd; ++c) err1 = std::max(err1, std::fabs(kq[static_cast<size_t>(c)] - k[static_cast<size_t>(c)]));
      EXPECT_LT(err1, 10.0f / static_cast<float>((1 << bits) - 1));
      EXPECT_NE(vq, v);
    }
  }
  EXPECT_THROW(KvQuantHooks(QuantSpec::parse("kv4t").kv.value(), hd), Error);
  EXPECT_THROW(KvQuantHooks::from_spec(QuantSpec::parse("w4"), hd), Error);
  KvQuantHooks h4 = KvQuantHooks::from_spec(QuantSpec::parse("kv4"), 7);
  auto k7 = randn(10, 3), v7 = k7;
  EXPECT_THROW(h4.kv(0, k7.data(), v7.data(), 1, 10), Error);  // kv_dim not a multiple of head_dim
}

struct Stories {
  Model model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Engine> engine;
  std::vector<TokenId> tokens;
};
Stories load(size_t n = 96) {
  Stories s;
  s.model = load_model(test::shared_path(kModel).string());
  s.tok = load_tokenizer(s.model);
  s.engine = std::make_unique<Engine>(s.model, EngineOptions{.threads = 2});
  s.tokens = s.tok->encode(test::read_text(test::shared_path(kText)).substr(0, 3000));
  s.tokens.resize(std::min(s.tokens.size(), n));
  return s;
}
// Mean over positions of KL(p_ref || p_q), from two [n, vocab] logit matrices.
double mean_kl(const std::vector<float>& ref, const std::vector<float>& q, int64_t vocab) {
  const size_t n = ref.size() / static_cast<size_t>(vocab);
  double total = 0;
  for (size_t t = 0; t < n; ++t) {
    const float* a = ref.data() + t * static_cast<size_t>(vocab);
    const float* b = q.data() + t * static_cast<size_t>(vocab);
    double ma = a[0], mb = b[0];
    for (int64_t j = 0; j < vocab; ++j) ma = std::max(ma, static_cast<double>(a[j])), mb = std::max(mb, static_cast<double>(b[j]));
    double za = 0, zb = 0;
    for (int64_t j = 0; j < vocab; ++j) za += std::exp(a[j] - ma), zb += std::exp(b[j] - mb);
    double kl = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      const double la = a[j] - ma - std::log(za), lb = b[j] - mb - std::log(zb);
      kl += std::exp(la) * (la - lb);
    }
    total += kl;
  }
  return total / static_cast<double>(n);
}
double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

struct ZeroV : ForwardHooks {
  void kv(int layer, float*, float* v, int64_t tokens, int64_t kv_dim) override {
    if (layer == 0) std::fill(v, v + tokens * kv_dim, 0.0f);
  }
};
struct CaptureAttnOut : ForwardHooks {
  std::vector<float> in;  // input of blk.0.attn_output = the attention result
  void linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) override {
    if (id.layer == 0 && id.role == LinearRole::AttnOutput) in.assign(x, x + rows * cols);
  }
};

TEST(KvQuant, PrefillAttentionReadsHookedValues) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  auto s = load(32);
  CaptureAttnOut plain;
  s.engine->set_hooks(&plain);
  s.engine->logits(s.tokens);  // one prefill pass
  ZeroV zero;
  CaptureAttnOut cap;
  CompositeHooks chain({&zero, &cap});
  s.engine->set_hooks(&chain);
  s.engine->logits(s.tokens);
  s.engine->set_hooks(nullptr);
  ASSERT_EQ(cap.in.size(), plain.in.size());
  ASSERT_FALSE(cap.in.empty());
  double plain_abs = 0;
  for (float x : plain.in) plain_abs += std::fabs(x);
  EXPECT_GT(plain_abs, 0.0);
  // Attention over an all-zero V is exactly zero at every prefill position: the prefill read the
  // hooked cache, not the un-hooked V.
  for (float x : cap.in) ASSERT_EQ(x, 0.0f);
}

TEST(KvQuant, Kv8BarelyMovesLogitsKv2MovesThemALot) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  auto s = load();
  const auto ref = s.engine->logits(s.tokens);
  const int64_t hd = s.engine->config().head_dim;
  std::vector<double> d;  // mean KL(fp32 || kv) per position
  for (const char* spec : {"kv8", "kv4", "kv3", "kv2"}) {
    auto hooks = KvQuantHooks::from_spec(QuantSpec::parse(spec), hd);
    s.engine->set_hooks(&hooks);
    const auto q = s.engine->logits(s.tokens);
    s.engine->set_hooks(nullptr);
    d.push_back(mean_kl(ref, q, s.engine->vocab_size()));
    std::printf("[ kv ] %s logits max|diff| = %.4g, mean KL = %.4g\n", spec, max_diff(ref, q), d.back());
  }
  {
    Engine f16(s.model, EngineOptions{.threads = 2, .kv_f16 = true});
    std::printf("[ kv ] reference: F16 cache (engine kv_f16) mean KL = %.4g\n", mean_kl(ref, f16.logits(s.tokens), s.engine->vocab_size()));
  }
  EXPECT_GT(d[0], 0.0);
  EXPECT_LT(d[0], 5e-3);
  EXPECT_GT(d[3], 0.1);
  EXPECT_GT(d[3], 100 * d[0]);
  EXPECT_GT(d[1], d[0]);
  EXPECT_GT(d[3], d[2]);
}

TEST(KvQuant, PrefillEqualsTokenByTokenDecodeWithHook) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  auto s = load(48);
  const int64_t V = s.engine->vocab_size();
  for (const char* spec : {"kv3", "kv4g4-sym"}) {
    auto hooks = KvQuantHooks::from_spec(QuantSpec::parse(spec), s.engine->config().head_dim);
    s.engine->set_hooks(&hooks);
    const auto prefill = s.engine->logits(s.tokens);
    KVCache cache = s.engine->new_cache(static_cast<int64_t>(s.tokens.size()));
    double m = 0;
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      auto last = s.engine->append(cache, std::span<const TokenId>(&s.tokens[i], 1));
      for (int64_t j = 0; j < V; ++j)
        m = std::max(m, std::fabs(static_cast<double>(last[static_cast<size_t>(j)]) -
                                  prefill[i * static_cast<size_t>(V) + static_cast<size_t>(j)]));
    }
    s.engine->set_hooks(nullptr);
    const auto ref = s.engine->logits(s.tokens);
    std::printf("[ kv ] %s prefill vs decode max|diff| = %.3g (vs fp32 %.3g)\n", spec, m, max_diff(ref, prefill));
    EXPECT_LE(m, 1e-4) << spec;
    EXPECT_GT(max_diff(ref, prefill), 100 * 1e-4) << spec;  // the hook did change the logits
  }
}

// Perplexity (gptq convention, 20 windows of 128 tokens) under activation and KV quantization.
TEST(KvQuant, PerplexityEffectsOnStories260K) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  auto s = load(8);
  const std::string text = test::read_text(test::shared_path(kText));
  PerplexityOptions po;
  po.method = PerplexityMethod::GPTQ;
  po.n_ctx = 128;
  po.max_chunks = 20;
  const double base = perplexity(*s.engine, *s.tok, text, po).ppl;
  std::printf("[ ppl ] fp32 %.4f\n", base);
  const int64_t hd = s.engine->config().head_dim;
  std::vector<double> kv;
  for (const char* spec : {"kv8", "kv4", "kv3", "kv2", "kv8-sym", "kv4-sym", "kv3-sym", "kv2-sym"}) {
    auto hooks = KvQuantHooks::from_spec(QuantSpec::parse(spec), hd);
    s.engine->set_hooks(&hooks);
    kv.push_back(perplexity(*s.engine, *s.tok, text, po).ppl);
    s.engine->set_hooks(nullptr);
    std::printf("[ ppl ] %s %.4f\n", spec, kv.back());
  }
  for (const char* spec : {"a8", "a6", "a4", "a8-static"}) {
    auto hooks = ActivationQuantHooks::from_spec(QuantSpec::parse(spec));
    if (hooks.is_static()) {
      auto toks = s.tok->encode(text.substr(text.size() / 2, 4000));
      toks.resize(std::min<size_t>(toks.size(), 512));
      calibrate_static(*s.engine, hooks, {toks});
    }
    s.engine->set_hooks(&hooks);
    const double p = perplexity(*s.engine, *s.tok, text, po).ppl;
    s.engine->set_hooks(nullptr);
    std::printf("[ ppl ] %s %.4f\n", spec, p);
    EXPECT_GT(p, base * 0.99);
  }
  EXPECT_LT(std::fabs(kv[0] / base - 1.0), 0.01);  // kv8: within 1%
  EXPECT_GT(kv[3], kv[0] * 1.05);                   // kv2: clearly worse
  EXPECT_GT(kv[3], kv[1]);
}

}  // namespace
}  // namespace qeval::quant
