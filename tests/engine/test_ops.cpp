#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "qeval/engine/linear.h"
#include "qeval/engine/ops.h"
#include "qeval/engine/thread_pool.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"

namespace qeval {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float s = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, s);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

TEST(Ops, DotAndAxpyMatchScalarForEveryLength) {
  for (int64_t n : {0, 1, 7, 8, 15, 16, 17, 31, 33, 64, 100, 257}) {
    auto a = randn(static_cast<size_t>(n), 1), b = randn(static_cast<size_t>(n), 2);
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) ref += static_cast<double>(a[i]) * b[i];
    EXPECT_NEAR(ops::dot(a.data(), b.data(), n), ref, 1e-5 * (1 + std::sqrt(static_cast<double>(n)))) << n;
    auto y = b;
    ops::axpy(0.5f, a.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_FLOAT_EQ(y[i], b[i] + 0.5f * a[i]);
  }
}

TEST(Ops, RmsNormAndLayerNorm) {
  auto x = randn(24, 3), w = randn(24, 4), b = randn(24, 5);
  std::vector<float> y(24);
  ops::rmsnorm(x.data(), w.data(), y.data(), 24, 1e-5f);
  double ss = 0;
  for (float v : x) ss += v * v;
  const double s = 1.0 / std::sqrt(ss / 24 + 1e-5);
  for (int i = 0; i < 24; ++i) EXPECT_NEAR(y[i], x[i] * s * w[i], 1e-5);
  ops::layernorm(x.data(), w.data(), b.data(), y.data(), 24, 1e-5f);
  double mean = 0, var = 0;
  for (float v : x) mean += v;
  mean /= 24;
  for (float v : x) var += (v - mean) * (v - mean);
  var /= 24;
  for (int i = 0; i < 24; ++i) EXPECT_NEAR(y[i], (x[i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i], 1e-5);
}

TEST(Ops, SoftmaxLogsumexpActivations) {
  std::vector<float> x = {1.0f, 2.0f, 3.0f, -100.0f};
  const double lse = ops::logsumexp(x.data(), 4);
  EXPECT_NEAR(lse, std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(-100.0)), 1e-6);
  ops::softmax(x.data(), 4);
  EXPECT_NEAR(x[2], std::exp(3.0 - lse), 1e-6);
  EXPECT_NEAR(ops::silu(1.5f), 1.5 / (1 + std::exp(-1.5)), 1e-6);
  const double g = 0.5 * 0.7 * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (0.7 + 0.044715 * 0.343)));
  EXPECT_NEAR(ops::gelu_tanh(0.7f), g, 1e-6);
}

// Direct formula: angle = pos * base^(-2i/d) / llama3_factor(i) / linear_factor.
void check_rope(const ModelConfig& c, double tol) {
  const auto table = ops::make_rope_table(c);
  const int64_t d = c.rope_dim, half = d / 2;
  std::vector<double> factors(static_cast<size_t>(half), 1.0);
  if (c.rope_scaling.kind == RopeScalingKind::Llama3) {
    const auto& s = c.rope_scaling;
    for (int64_t i = 0; i < half; ++i) {
      const double f = std::pow(c.rope_theta, -2.0 * i / d);
      const double wl = 2 * std::numbers::pi / f;
      const double lo = s.original_context / s.low_freq_factor, hi = s.original_context / s.high_freq_factor;
      double nf = f;
      if (wl > lo) nf = f / s.factor;
      else if (wl >= hi) {
        const double sm = (s.original_context / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        nf = (1 - sm) * f / s.factor + sm * f;
      }
      factors[static_cast<size_t>(i)] = f / nf;
    }
  }
  const double lin = c.rope_scaling.kind == RopeScalingKind::Linear ? c.rope_scaling.factor : 1.0;
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  auto x = randn(static_cast<size_t>(2 * c.head_dim), 9);
  for (int64_t pos : {0, 1, 5, 100, 511}) {
    table.cos_sin(pos, cs.data(), sn.data());
    auto y = x;
    ops::rope_apply(y.data(), 2, c.head_dim, d, cs.data(), sn.data());
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < c.head_dim; ++i) {
        const double* unused = nullptr;
        (void)unused;
        double expect = x[h * c.head_dim + i];
        if (i < d) {
          const int64_t p = i % half;
          const double ang = pos * std::pow(c.rope_theta, -2.0 * p / d) / factors[p] / lin;
          const double a = x[h * c.head_dim + p], b = x[h * c.head_dim + p + half];
          expect = i < half ? a * std::cos(ang) - b * std::sin(ang) : a * std::sin(ang) + b * std::cos(ang);
        }
        EXPECT_NEAR(y[h * c.head_dim + i], expect, tol) << "pos " << pos << " dim " << i;
      }
  }
}

TEST(Ops, RopeMatchesDirectFormula) {
  ModelConfig c;
  c.head_dim = 16;
  c.rope_dim = 16;
  c.rope_theta = 10000.0f;
  check_rope(c, 2e-4);
  c.rope_dim = 8;  // partial rotary: dims 8..15 untouched
  check_rope(c, 2e-4);
  c.rope_dim = 16;
  c.rope_scaling = {RopeScalingKind::Linear, 4.0f, 1, 4, 8192};
  check_rope(c, 2e-4);
  c.rope_theta = 500000.0f;
  c.rope_scaling = {RopeScalingKind::Llama3, 8.0f, 1.0f, 4.0f, 64};
  check_rope(c, 2e-4);
}

TEST(Ops, Llama3FactorsHaveThreeRegimes) {
  RopeScaling s{RopeScalingKind::Llama3, 8.0f, 1.0f, 4.0f, 8192};
  auto f = ops::rope_llama3_factors(s, 500000.0f, 128);
  EXPECT_FLOAT_EQ(f.front(), 1.0f);   // high frequency: unscaled
  EXPECT_FLOAT_EQ(f.back(), 8.0f);    // low frequency: divided by factor
  bool mid = false;
  for (float v : f) mid |= (v > 1.01f && v < 7.99f);
  EXPECT_TRUE(mid);
}

void check_attention(int64_t heads, int64_t kv_heads, int64_t window, int threads) {
  ops::AttentionShape s{heads, kv_heads, 8, window, 0.0f};
  const int64_t pos0 = 3, n_q = 6, total = pos0 + n_q;
  auto q = randn(static_cast<size_t>(n_q * heads * 8), 11);
  auto k = randn(static_cast<size_t>(total * kv_heads * 8), 12);
  auto v = randn(static_cast<size_t>(total * kv_heads * 8), 13);
  std::vector<float> out(q.size()), ref(q.size());
  std::vector<float> scores(static_cast<size_t>(total * threads));
  ThreadPool pool(threads);
  ops::attention(s, q.data(), heads * 8, n_q, pos0, k.data(), v.data(), kv_heads * 8, out.data(), heads * 8,
                 scores.data(), total, &pool);
  ops::attention_reference(s, q.data(), n_q, pos0, k.data(), v.data(), ref.data());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], ref[i], 1e-5) << i;
}

TEST(Ops, AttentionMatchesNaiveReference) {
  check_attention(4, 4, 0, 1);  // MHA
  check_attention(4, 2, 0, 2);  // GQA
  check_attention(4, 1, 0, 3);  // MQA
  check_attention(4, 2, 3, 2);  // sliding window
}

TEST(Ops, GqaSharesKvHeadsAcrossGroup) {
  // With 4 query heads on 2 KV heads, identical queries in heads 0 and 1 give identical outputs,
  // and heads 0 and 2 (different KV heads) differ.
  ops::AttentionShape s{4, 2, 8, 0, 0.0f};
  auto q = randn(32, 5);
  for (int i = 0; i < 8; ++i) q[8 + i] = q[i], q[16 + i] = q[i];
  auto k = randn(3 * 16, 6), v = randn(3 * 16, 7);
  std::vector<float> out(32), scores(3);
  ops::attention(s, q.data(), 32, 1, 2, k.data(), v.data(), 16, out.data(), 32, scores.data(), 3, nullptr);
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(out[i], out[8 + i]);
  bool differ = false;
  for (int i = 0; i < 8; ++i) differ |= out[i] != out[16 + i];
  EXPECT_TRUE(differ);
}

TEST(Ops, SlidingWindowIgnoresOldKeys) {
  ops::AttentionShape s{1, 1, 4, 2, 0.0f};
  auto q = randn(4, 1);
  auto k = randn(5 * 4, 2), v = randn(5 * 4, 3);
  std::vector<float> a(4), b(4), sc(5);
  ops::attention(s, q.data(), 4, 1, 4, k.data(), v.data(), 4, a.data(), 4, sc.data(), 5, nullptr);
  for (int i = 0; i < 12; ++i) k[i] += 5.0f, v[i] -= 3.0f;  // positions 0..2 are outside the window
  ops::attention(s, q.data(), 4, 1, 4, k.data(), v.data(), 4, b.data(), 4, sc.data(), 5, nullptr);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(a[i], b[i]);
}

TEST(Ops, ThreadPoolCoversRangeOnce) {
  ThreadPool pool(3);
  std::vector<int> hits(1000, 0);
  for (int rep = 0; rep < 50; ++rep)
    pool.parallel_for(1000, 7, [&](int64_t b, int64_t e, int t) {
      ASSERT_LT(t, 3);
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
  for (int h : hits) EXPECT_EQ(h, 50);
}

TEST(Linear, Q8RoundingMatchesGgmlRule) {
  // One block: values become F16(amax/127) * round_half_even(x * 127 / amax).
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[i] = (i - 16) * 0.1587f;
  x[0] = -2.54f;
  auto y = x;
  round_activation(ActRounding::Q8_0, y.data(), 32);
  const float amax = 2.54f, d16 = fp16_to_f32(f32_to_fp16(amax / 127.f));
  for (int i = 0; i < 32; ++i) EXPECT_FLOAT_EQ(y[i], d16 * std::nearbyint(x[i] * (127.f / amax)));
  // Q8_K: scale from the signed extreme, codes clamped to 127.
  std::vector<float> k(256);
  for (int i = 0; i < 256; ++i) k[i] = std::sin(i * 0.37f);
  k[5] = -3.0f;
  auto kk = k;
  round_activation(ActRounding::Q8_K, kk.data(), 256);
  for (int i = 0; i < 256; ++i) EXPECT_NEAR(kk[i], k[i], 3.0 / 127 / 2 + 1e-6);
  EXPECT_FLOAT_EQ(kk[5], -3.0f);
  // F16 rounding changes values that are not halves and keeps those that are.
  std::vector<float> z = {0.1f, 1.0f};
  round_activation(ActRounding::F16, z.data(), 2);
  EXPECT_NE(z[0], 0.1f);
  EXPECT_EQ(z[1], 1.0f);
  std::vector<float> bad(20);
  EXPECT_THROW(round_activation(ActRounding::Q8_0, bad.data(), 20), Error);
}

}  // namespace
}  // namespace qeval
