// KL divergence (qeval kld): per-position definitions on hand-made distributions, the top-k
// file, the top-k approximation's bound, and parity with llama-perplexity's figures
// (shared/reference/perplexity.json, stories260K Q8_0 vs F32, c=128, 400 chunks).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <random>

#include "qeval/eval/kld.h"
#include "qeval/io/model.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval {
namespace {

std::vector<float> random_logits(std::mt19937& rng, int64_t n, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(KldToken, MatchesDirectFormula) {
  std::mt19937 rng(3);
  const int64_t V = 50;
  const auto a = random_logits(rng, V, 2.f), b = random_logits(rng, V, 2.f);
  std::vector<float> lp(static_cast<size_t>(V));
  log_softmax(a.data(), V, lp.data());
  double za = 0, zb = 0;
  for (int64_t i = 0; i < V; ++i) za += std::exp(double(a[i])), zb += std::exp(double(b[i]));
  double want = 0;
  for (int64_t i = 0; i < V; ++i) {
    const double p = std::exp(double(a[i])) / za, q = std::exp(double(b[i])) / zb;
    want += p * std::log(p / q);
  }
  const auto s = token_stats_full(lp.data(), b.data(), V, 7);
  EXPECT_NEAR(s.kld, want, 1e-6 * want + 1e-9);
  EXPECT_NEAR(s.p, std::exp(double(b[7])) / zb, 1e-9);
  EXPECT_NEAR(s.p_base, std::exp(double(a[7])) / za, 1e-7);
  // Same distribution: zero divergence, same top token.
  const auto self = token_stats_full(lp.data(), a.data(), V, 7);
  EXPECT_NEAR(self.kld, 0.0, 1e-7);
  EXPECT_TRUE(self.same_top);
}

TEST(KldToken, PercentilesInterpolate) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 0.9), 3.7);
}

TEST(KldToken, TopKApproximationIsLowerBoundWithinStatedGap) {
  std::mt19937 rng(11);
  const int64_t V = 300;
  for (int trial = 0; trial < 200; ++trial) {
    const float scale = 0.5f + static_cast<float>(trial % 7);
    const auto a = random_logits(rng, V, scale);
    auto b = a;
    const auto noise = random_logits(rng, V, 0.05f + 0.3f * static_cast<float>(trial % 5));
    for (int64_t i = 0; i < V; ++i) b[static_cast<size_t>(i)] += noise[static_cast<size_t>(i)];
    std::vector<float> lp(static_cast<size_t>(V));
    log_softmax(a.data(), V, lp.data());
    const TokenId target = static_cast<TokenId>(trial % V);
    const auto full = token_stats_full(lp.data(), b.data(), V, target);
    for (int64_t k : {int64_t{1}, int64_t{4}, int64_t{32}, V}) {
      const auto rec = make_topk_record(lp.data(), V, k, target);
      const auto approx = token_stats_topk(rec, b.data(), V);
      const double eps = 1e-6 * full.kld + 1e-9;
      EXPECT_LE(approx.kld, full.kld + eps) << "trial " << trial << " k " << k;
      EXPECT_LE(full.kld - approx.kld, approx.kld_bound + eps) << "trial " << trial << " k " << k;
      if (k == V) {
        EXPECT_NEAR(approx.kld, full.kld, eps);
      }
      EXPECT_EQ(approx.same_top, full.same_top);
      EXPECT_NEAR(approx.nll, full.nll, 1e-9);
      EXPECT_NEAR(approx.nll_base, full.nll_base, 1e-9);
    }
  }
}

TEST(KldTopKFile, RoundTripAndValidation) {
  test::TempDir dir;
  const std::string path = dir.file("ref.topk");
  std::mt19937 rng(5);
  const int64_t V = 40, k = 6;
  TopKHeader h;
  h.k = k, h.n_vocab = V, h.n_ctx = 16, h.n_chunks = 2, h.n_positions = 5, h.tokens_hash = 0x0123456789abcdefull;
  std::vector<TopKRecord> recs;
  {
    TopKWriter w(path, h);
    for (int i = 0; i < 5; ++i) {
      const auto a = random_logits(rng, V, 3.f);
      std::vector<float> lp(static_cast<size_t>(V));
      log_softmax(a.data(), V, lp.data());
      recs.push_back(make_topk_record(lp.data(), V, k, static_cast<TokenId>(i * 3)));
      w.add(recs.back());
    }
    EXPECT_FALSE(std::filesystem::exists(path)) << "visible before commit";
    w.commit();
  }
  TopKReader r(path);
  EXPECT_EQ(r.header().k, static_cast<uint32_t>(k));
  EXPECT_EQ(r.header().n_vocab, V);
  EXPECT_EQ(r.header().n_ctx, 16);
  EXPECT_EQ(r.header().n_chunks, 2);
  EXPECT_EQ(r.header().n_positions, 5);
  EXPECT_EQ(r.header().tokens_hash, 0x0123456789abcdefull);
  for (const auto& want : recs) {
    const auto got = r.next();
    EXPECT_EQ(got.target, want.target);
    EXPECT_EQ(got.logprob_target, want.logprob_target);
    EXPECT_EQ(got.tail, want.tail);
    EXPECT_EQ(got.ids, want.ids);
    EXPECT_EQ(got.logprobs, want.logprobs);
    for (size_t j = 1; j < got.logprobs.size(); ++j) EXPECT_GE(got.logprobs[j - 1], got.logprobs[j]);
  }
  EXPECT_THROW(r.next(), Error);
  EXPECT_EQ(std::filesystem::file_size(path), 64u + 5u * (12u + 8u * k));

  // A writer that does not commit leaves nothing; a truncated file is refused.
  { TopKWriter w(dir.file("partial.topk"), h); }
  EXPECT_FALSE(std::filesystem::exists(dir.file("partial.topk")));
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 1);
  EXPECT_THROW(TopKReader{path}, Error);
  test::write_bytes(dir.file("junk.topk"), std::string(100, 'x'));
  EXPECT_THROW(TopKReader{dir.file("junk.topk")}, Error);
}

std::string stories(const std::string& type) { return "models/stories260K-gguf/stories260K-" + type + ".gguf"; }
const char* kText = "data/tinystories/tinystories_eval.txt";

TEST(KldModel, SelfDivergenceIsZero) {
  QEVAL_REQUIRE_SHARED(stories("F32"));
  QEVAL_REQUIRE_SHARED(kText);
  const Model m = load_model(test::shared_path(stories("F32")).string());
  auto tok = load_tokenizer(m);
  Engine ref(m, {.threads = 2}), eng(m, {.threads = 2});
  KldOptions o;
  o.n_ctx = 128;
  o.max_chunks = 20;
  const auto r = kl_divergence(&ref, eng, *tok, test::read_text(test::shared_path(kText)), o);
  EXPECT_EQ(r.scored_tokens, 20 * 63);
  EXPECT_NEAR(r.kld, 0.0, 1e-7);
  EXPECT_NEAR(r.kld_percentiles.front().second, 0.0, 1e-6);  // max
  EXPECT_DOUBLE_EQ(r.same_top, 1.0);
  EXPECT_NEAR(r.ln_ratio, 0.0, 1e-6);
  EXPECT_NEAR(r.dp_rms, 0.0, 1e-6);
  EXPECT_NEAR(r.ppl_q / r.ppl_base, 1.0, 1e-6);
}

// stories260K Q8_0 vs F32 against llama-perplexity --kl-divergence (c=128, 400 chunks), with
// llama.cpp's activation rounding and F16 KV cache, as the reference ran.
TEST(KldModel, Q8_0MatchesLlamaPerplexity) {
  QEVAL_REQUIRE_SHARED("reference/perplexity.json");
  QEVAL_REQUIRE_SHARED(stories("Q8_0"));
  QEVAL_REQUIRE_SHARED(kText);
  std::ifstream in(test::shared_path("reference/perplexity.json"));
  const auto ref = nlohmann::json::parse(in);
  const nlohmann::json* rec = nullptr;
  for (const auto& r : ref.at("runs"))
    if (r.at("kind") == "kld" && r.at("model") == "stories260K" && r.at("type") == "Q8_0" &&
        r.at("text") == "tinystories_shared" && r.at("n_ctx") == 128)
      rec = &r;
  ASSERT_NE(rec, nullptr);
  const Model base = load_model(test::shared_path(stories("F32")).string());
  const Model q = load_model(test::shared_path(stories("Q8_0")).string());
  auto tok = load_tokenizer(base);
  const EngineOptions eo{.threads = 2, .ggml_compat = true, .kv_f16 = true};
  Engine eb(base, eo), eq(q, eo);
  KldOptions o;
  o.n_ctx = 128;
  o.max_chunks = rec->at("n_chunks").get<int64_t>();
  const auto r = kl_divergence(&eb, eq, *tok, test::read_text(test::shared_path(kText)), o);
  const double want_kld = rec->at("mean_kld").get<double>();
  const double want_same = rec->at("same_top_p_pct").get<double>();
  std::printf("  KLD %.6f ± %.6f (ref %.6f), same top %.3f%% (ref %.3f%%), RMS Δp %.3f%% (ref %.3f%%), "
              "ln ratio %.6f (ref %.6f), PPL(Q) %.4f (ref %.4f)\n",
              r.kld, r.kld_err, want_kld, 100 * r.same_top, want_same, 100 * r.dp_rms,
              rec->at("rms_delta_p_pct").get<double>(), r.ln_ratio, rec->at("mean_ln_ppl_ratio").get<double>(), r.ppl_q,
              rec->at("mean_ppl_q").get<double>());
  EXPECT_EQ(r.scored_tokens, rec->at("scored_tokens").get<int64_t>());
  // Tolerances: the reference's own statistical error is ~1% on the mean KLD, and llama.cpp stores the base log-probabilities
  // as 16-bit codes; 5% relative covers both with margin while still catching a wrong
  // definition (e.g. reversed KL, natural vs base-2 log, or missing activation rounding,
  // which changes the Q8_0 KLD severalfold).
  EXPECT_NEAR(r.kld / want_kld, 1.0, 0.05);
  // Same-top: binomial stderr 0.079 points; near-ties flip under 1e-4 logit differences.
  EXPECT_NEAR(100 * r.same_top, want_same, 0.5);
  EXPECT_NEAR(100 * r.dp_rms / rec->at("rms_delta_p_pct").get<double>(), 1.0, 0.05);
  EXPECT_NEAR(r.ppl_q / rec->at("mean_ppl_q").get<double>(), 1.0, 1e-3);
  EXPECT_NEAR(r.ppl_base / rec->at("mean_ppl_base").get<double>(), 1.0, 1e-3);
}

// The top-k file path end to end: same PPL / same-top as the full run; KLD a lower bound within
// the reported gap at every position.
TEST(KldModel, TopKReferenceFileWithinBound) {
  QEVAL_REQUIRE_SHARED(stories("Q4_0"));
  QEVAL_REQUIRE_SHARED(kText);
  const Model base = load_model(test::shared_path(stories("F32")).string());
  const Model q = load_model(test::shared_path(stories("Q4_0")).string());
  auto tok = load_tokenizer(base);
  Engine eb(base, {.threads = 2}), eq(q, {.threads = 2});
  const std::string text = test::read_text(test::shared_path(kText));
  test::TempDir dir;
  KldOptions o;
  o.n_ctx = 128;
  o.max_chunks = 24;
  o.save_topk = 16;
  o.save_topk_path = dir.file("ref.topk");
  const auto full = kl_divergence(&eb, eq, *tok, text, o, true);
  ASSERT_TRUE(std::filesystem::exists(o.save_topk_path));
  KldOptions o2;
  o2.n_ctx = 128;
  o2.max_chunks = 24;
  o2.reference_topk_path = o.save_topk_path;
  const auto approx = kl_divergence(nullptr, eq, *tok, text, o2, true);
  ASSERT_EQ(approx.per_token.size(), full.per_token.size());
  EXPECT_TRUE(approx.topk_reference);
  EXPECT_EQ(approx.topk, 16);
  for (size_t i = 0; i < full.per_token.size(); ++i) {
    const auto& f = full.per_token[i];
    const auto& a = approx.per_token[i];
    const double eps = 1e-5 * f.kld + 1e-8;
    ASSERT_LE(a.kld, f.kld + eps) << i;
    ASSERT_LE(f.kld - a.kld, a.kld_bound + eps) << i;
  }
  EXPECT_LE(approx.kld, full.kld + 1e-9);
  EXPECT_LE(full.kld - approx.kld, approx.kld_bound_mean + 1e-9);
  EXPECT_DOUBLE_EQ(approx.same_top, full.same_top);
  EXPECT_NEAR(approx.ppl_q, full.ppl_q, 1e-9 * full.ppl_q);
  EXPECT_NEAR(approx.ppl_base, full.ppl_base, 1e-6 * full.ppl_base);
  std::printf("  Q4_0 24 chunks: full KLD %.6f, top-16 KLD %.6f, mean gap bound %.6f\n", full.kld, approx.kld,
              approx.kld_bound_mean);

  // A file made for other chunks is refused.
  o2.max_chunks = 23;
  EXPECT_THROW(kl_divergence(nullptr, eq, *tok, text, o2), Error);
}

}  // namespace
}  // namespace qeval
