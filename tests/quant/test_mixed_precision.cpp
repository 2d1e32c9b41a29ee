#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "qeval/quant/mixed_precision.h"
#include "qeval/util/error.h"

namespace qeval::quant {
namespace {

std::vector<LayerCost> random_layers(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dim(1, 8);
  std::lognormal_distribution<double> sens(0.0, 2.0);
  std::vector<LayerCost> v;
  for (size_t i = 0; i < n; ++i) v.push_back({"l" + std::to_string(i), 64 * dim(rng), 64 * dim(rng), sens(rng)});
  return v;
}

MixedPrecisionOptions opts(double budget) {
  MixedPrecisionOptions o;
  o.budget_bpw = budget;
  o.base.granularity = Granularity::PerGroup;
  o.base.group_size = 64;
  return o;
}

TEST(MixedPrecision, BudgetRespectedAndOrderKept) {
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    const auto layers = random_layers(24, seed);
    double prev_err = 1e300;
    for (double budget : {2.3, 3.0, 3.6, 4.5, 6.0, 8.3}) {
      const auto p = assign_mixed_precision(layers, opts(budget));
      ASSERT_EQ(p.layers.size(), layers.size());
      EXPECT_LE(p.achieved_bpw, budget + 1e-9) << seed << " " << budget;
      double bits = 0, n = 0;
      for (size_t i = 0; i < layers.size(); ++i) {
        const double np = static_cast<double>(layers[i].rows * layers[i].cols);
        bits += np * p.layers[i].bpw;
        n += np;
        EXPECT_EQ(p.layers[i].config.bits, p.layers[i].bits);
        for (size_t j = 0; j < layers.size(); ++j) {
          if (layers[i].sensitivity > layers[j].sensitivity) {
            EXPECT_GE(p.layers[i].bits, p.layers[j].bits) << seed << " " << budget;
          }
        }
      }
      EXPECT_NEAR(bits / n, p.achieved_bpw, 1e-9);
      EXPECT_LE(p.predicted_error, prev_err * (1 + 1e-12));  // more budget never hurts
      prev_err = p.predicted_error;
    }
    // A generous budget gives every layer the largest candidate; a tight one the smallest.
    for (const auto& a : assign_mixed_precision(layers, opts(9.0)).layers) EXPECT_EQ(a.bits, 8);
    for (const auto& a : assign_mixed_precision(layers, opts(2.26)).layers) EXPECT_EQ(a.bits, 2);
  }
}

TEST(MixedPrecision, SensitiveLayerGetsTheBits) {
  std::vector<LayerCost> layers = {{"a", 128, 128, 1.0}, {"b", 128, 128, 100.0}, {"c", 128, 128, 1.0}};
  auto o = opts(3.0);
  o.candidates = {2, 4};
  const auto p = assign_mixed_precision(layers, o);
  EXPECT_EQ(p.layers[1].bits, 4);
  EXPECT_EQ(p.layers[0].bits, 2);
  EXPECT_EQ(p.layers[2].bits, 2);
  EXPECT_LE(p.achieved_bpw, 3.0);
  EXPECT_EQ(p.to_json()["layers"][1]["bits"], 4);
  EXPECT_THROW(assign_mixed_precision(layers, opts(2.0)), Error);  // below 2 bits + scales
  o.candidates = {1};
  EXPECT_THROW(assign_mixed_precision(layers, o), Error);
}

}  // namespace
}  // namespace qeval::quant
