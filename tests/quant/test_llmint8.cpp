#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/io/model.h"
#include "qeval/quant/act_quant.h"
#include "qeval/quant/llmint8.h"
#include "qeval/quant/rtn.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Activations [tokens, in] with a few systematic outlier features (as in the paper's analysis).
std::vector<float> activations(int64_t tokens, int64_t in, const std::vector<int64_t>& hot, uint32_t seed) {
  auto x = randn(static_cast<size_t>(tokens * in), seed);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t c : hot) x[static_cast<size_t>(t * in + c)] *= 20.0f;
  return x;
}

TEST(LlmInt8, DetectsOutlierFeaturesFromCalibration) {
  const int64_t in = 64;
  const std::vector<int64_t> hot = {3, 17, 40};
  auto x = activations(200, in, hot, 1);
  ActivationRangeObserver obs;
  const LinearId id{0, LinearRole::FfnUp};
  obs.linear_input(id, x.data(), 200, in);
  const auto out = llmint8_outliers(obs.ranges(), 6.0f);
  EXPECT_EQ(out.at(id), hot);  // N(0,1) over 200 tokens stays below 6; x20 features exceed it
  auto w = randn(static_cast<size_t>(32 * in), 2, 0.05f);
  const auto r = llmint8_quantize(w.data(), 32, in, obs.ranges().at(id).feature_absmax);
  EXPECT_EQ(r.outlier_columns, hot);
  for (int64_t o = 0; o < 32; ++o)
    for (int64_t c : hot) EXPECT_EQ(r.weights[static_cast<size_t>(o * in + c)], w[static_cast<size_t>(o * in + c)]);
  // bits: (32*61*8 + 32*16 + 32*3*16 + 3*32) / (32*64)
  EXPECT_NEAR(r.effective_bits, (32.0 * 61 * 8 + 32 * 16 + 32 * 3 * 16 + 3 * 32) / (32.0 * 64), 1e-12);
  EXPECT_THROW(llmint8_quantize(w.data(), 32, in, std::vector<float>(10, 1.0f)), Error);
}

TEST(LlmInt8, ErrorBoundPerRowOverRegularColumns) {
  const int64_t out = 24, in = 48;
  auto w = randn(static_cast<size_t>(out * in), 5);
  std::vector<float> amax(static_cast<size_t>(in), 1.0f);
  amax[7] = 9.0f;
  w[7] = 50.0f;  // a huge weight in an outlier column must not inflate row 0's scale
  const auto r = llmint8_quantize(w.data(), out, in, amax, 6.0f);
  ASSERT_EQ(r.outlier_columns, std::vector<int64_t>{7});
  for (int64_t o = 0; o < out; ++o) {
    float a = 0;
    for (int64_t c = 0; c < in; ++c)
      if (c != 7) a = std::max(a, std::fabs(w[static_cast<size_t>(o * in + c)]));
    for (int64_t c = 0; c < in; ++c) {
      const auto i = static_cast<size_t>(o * in + c);
      EXPECT_LE(std::fabs(r.weights[i] - w[i]), 0.5f * a / 127.0f * 1.0001f) << o << "," << c;
    }
  }
}

TEST(LlmInt8, InfiniteThresholdIsPlainInt8Absmax) {
  const int64_t out = 16, in = 40;
  auto w = randn(static_cast<size_t>(out * in), 8);
  std::vector<float> amax(static_cast<size_t>(in), 100.0f);
  const auto r = llmint8_quantize(w.data(), out, in, amax, std::numeric_limits<float>::infinity());
  EXPECT_TRUE(r.outlier_columns.empty());
  QuantizerConfig cfg;  // w8: per channel, symmetric (absmax)
  const auto ref = rtn_quantize(cfg, w, out, in).dequantize();
  EXPECT_EQ(r.weights, ref);
  EXPECT_NEAR(r.effective_bits, 8.0 + 16.0 / in, 1e-12);
}

TEST(LlmInt8, HookQuantizesOnlyRegularFeaturesPerToken) {
  const int64_t tokens = 6, in = 32;
  const LinearId id{2, LinearRole::AttnQ};
  LlmInt8Hooks hooks(std::map<LinearId, std::vector<int64_t>>{{id, {5}}});
  auto x = activations(tokens, in, {5}, 3);
  auto q = x;
  hooks.linear_input(id, q.data(), tokens, in);
  for (int64_t t = 0; t < tokens; ++t) {
    float a = 0;
    for (int64_t c = 0; c < in; ++c)
      if (c != 5) a = std::max(a, std::fabs(x[static_cast<size_t>(t * in + c)]));
    EXPECT_EQ(q[static_cast<size_t>(t * in + 5)], x[static_cast<size_t>(t * in + 5)]);
    for (int64_t c = 0; c < in; ++c)
      EXPECT_LE(std::fabs(q[static_cast<size_t>(t * in + c)] - x[static_cast<size_t>(t * in + c)]), 0.5f * a / 127.0f * 1.0001f);
  }
  EXPECT_NE(q, x);
  auto y = x;
  hooks.linear_input({3, LinearRole::AttnQ}, y.data(), tokens, in);  // not listed: untouched
  EXPECT_EQ(y, x);
}

TEST(LlmInt8, Stories260KEndToEnd) {
  constexpr const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
  constexpr const char* kText = "data/tinystories/tinystories_eval.txt";
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  const Model model = load_model(test::shared_path(kModel).string());
  auto tok = load_tokenizer(model);
  Engine engine(model, EngineOptions{.threads = 2});
  auto toks = tok->encode(test::read_text(test::shared_path(kText)).substr(0, 3000));
  toks.resize(std::min<size_t>(toks.size(), 128));
  const auto ref = engine.logits(toks);
  ActivationRangeObserver obs;
  run_calibration(engine, obs, {toks});
  auto outliers = llmint8_outliers(obs.ranges(), 6.0f);
  int64_t total_out = 0;
  for (const LinearId& id : engine.linear_ids()) {
    const auto w = engine.linear(id).weights->to_f32();
    const int64_t o = engine.linear(id).out_features(), i = engine.linear(id).in_features();
    auto r = llmint8_quantize(w.data(), o, i, obs.ranges().at(id).feature_absmax);
    total_out += static_cast<int64_t>(r.outlier_columns.size());
    engine.set_linear_weights(id, std::move(r.weights));
  }
  LlmInt8Hooks hooks(outliers);
  engine.set_hooks(&hooks);
  const auto q = engine.logits(toks);
  engine.set_hooks(nullptr);
  double m = 0;
  for (size_t i = 0; i < q.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(q[i]) - ref[i]));
  std::printf("[ llmint8 ] outlier columns %lld, logits max|diff| %.4g\n", static_cast<long long>(total_out), m);
  EXPECT_GT(m, 0.0);
  EXPECT_LT(m, 2.0);  // a8 alone moves logits of this tiny model by ~0.5
}

}  // namespace
}  // namespace qeval::quant
