#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/io/model.h"
#include "qeval/quant/act_quant.h"
#include "qeval/quant/layer_stats.h"
#include "qeval/tokenizer/tokenizer.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

TEST(LayerStats, GaussianVersusHeavyTailed) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::student_t_distribution<float> td(5.0f);  // excess kurtosis 6
  const size_t n = 400000;
  std::vector<float> g(n), t(n);
  for (auto& v : g) v = nd(rng);
  for (auto& v : t) v = td(rng);
  const auto sg = tensor_stats(g), st = tensor_stats(t);
  EXPECT_NEAR(sg.std, 2.0, 0.02);
  EXPECT_NEAR(sg.mean, 0.0, 0.02);
  EXPECT_NEAR(sg.excess_kurtosis, 0.0, 0.1);
  EXPECT_NEAR(sg.median_abs, 2.0 * 0.6745, 0.02);  // median of |N(0, s)| = 0.6745 s
  EXPECT_GT(st.excess_kurtosis, 3.0);
  EXPECT_GT(st.max_median_ratio, 2 * sg.max_median_ratio);
  EXPECT_LT(sg.max_median_ratio, 9.0);

  // The streaming observer agrees with the exact statistics (median from its sample).
  ActivationStatsObserver obs;
  const LinearId a{0, LinearRole::AttnQ}, b{0, LinearRole::FfnDown};
  for (size_t off = 0; off < n; off += 1000 * 40) {
    obs.linear_input(a, g.data() + off, 1000, 40);
    obs.linear_input(b, t.data() + off, 1000, 40);
  }
  const auto og = obs.stats(a).value(), ot = obs.stats(b).value();
  EXPECT_EQ(og.count, static_cast<int64_t>(n));
  EXPECT_NEAR(og.std, sg.std, 1e-6);
  EXPECT_NEAR(og.excess_kurtosis, sg.excess_kurtosis, 1e-4);
  EXPECT_NEAR(ot.excess_kurtosis, st.excess_kurtosis, 1e-3);
  EXPECT_NEAR(og.median_abs, sg.median_abs, 0.02);
  EXPECT_EQ(og.max_abs, sg.max_abs);
  EXPECT_FALSE(obs.stats({5, LinearRole::AttnQ}).has_value());
}

TEST(LayerStats, ReportOnStories260K) {
  constexpr const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
  constexpr const char* kText = "data/tinystories/tinystories_eval.txt";
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  const Model model = load_model(test::shared_path(kModel).string());
  auto tok = load_tokenizer(model);
  Engine engine(model, EngineOptions{.threads = 2});
  auto toks = tok->encode(test::read_text(test::shared_path(kText)).substr(0, 4000));
  toks.resize(std::min<size_t>(toks.size(), 256));
  ActivationStatsObserver obs;
  run_calibration(engine, obs, {toks});
  const auto rep = collect_layer_stats(engine, &obs);
  ASSERT_EQ(rep.layers.size(), engine.linear_ids().size());
  for (const auto& l : rep.layers) {
    ASSERT_TRUE(l.activation.has_value()) << l.id.name();
    EXPECT_EQ(l.activation->count, static_cast<int64_t>(toks.size()) * l.in_features) << l.id.name();
    EXPECT_GT(l.weight.std, 0.0);
    EXPECT_GT(l.sensitivity, 0.0);
    EXPECT_GE(l.weight.max_median_ratio, 1.0);
  }
  const auto j = rep.to_json();
  ASSERT_EQ(j["layers"].size(), rep.layers.size());
  EXPECT_EQ(j["layers"][0]["name"], "blk.0.attn_q");
  EXPECT_TRUE(j["layers"][0]["activation"].contains("excess_kurtosis"));
  double kmax = 0;
  std::string kname;
  for (const auto& l : rep.layers)
    if (l.activation->excess_kurtosis > kmax) kmax = l.activation->excess_kurtosis, kname = l.id.name();
  std::printf("[ stats ] most heavy-tailed input: %s (excess kurtosis %.2f)\n", kname.c_str(), kmax);
}

}  // namespace
}  // namespace qeval::quant
