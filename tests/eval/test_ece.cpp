// ECE parity with reference/metrics/ece.jsonl.
#include <gtest/gtest.h>

#include "qeval/eval/metrics/ece.h"
#include "reference_records.h"

namespace qeval::eval {
namespace {

using test::kMetricTol;

TEST(EceReference, EveryRecordMatches) {
  QEVAL_METRIC_RECORDS(records, "ece.jsonl");
  int matched = 0;
  for (const auto& r : records) {
    const std::string id = r.at("id");
    int failures = 0;
    auto near = [&](const std::string& what, double got, const nlohmann::json& want) {
      if (std::abs(got - want.get<double>()) > kMetricTol) {
        ADD_FAILURE() << id << "." << what << ": got " << got << ", want " << want;
        ++failures;
      }
    };
    const EceResult e = expected_calibration_error(r.at("confidences").get<std::vector<double>>(),
                                                   r.at("correct").get<std::vector<int>>(), r.at("n_bins").get<int>());
    if (e.bin_indices != r.at("bin_indices").get<std::vector<int>>()) {
      ADD_FAILURE() << id << ": bin indices differ";
      ++failures;
    }
    near("ece", e.ece, r.at("ece"));
    near("mce", e.mce, r.at("mce"));
    near("accuracy", e.accuracy, r.at("accuracy"));
    near("mean_confidence", e.mean_confidence, r.at("mean_confidence"));
    const auto& bins = r.at("bins");
    if (bins.size() != e.bins.size()) {
      ADD_FAILURE() << id << ": bin count";
      ++failures;
    } else {
      for (size_t b = 0; b < bins.size(); ++b) {
        const auto& w = bins[b];
        const EceBin& g = e.bins[b];
        const std::string where = "bins[" + std::to_string(b) + "]";
        if (g.index != w.at("index").get<int>() || g.count != w.at("count").get<int64_t>() ||
            g.correct != w.at("correct").get<int64_t>()) {
          ADD_FAILURE() << id << "." << where << ": index/count/correct";
          ++failures;
        }
        near(where + ".lower", g.lower, w.at("lower"));
        near(where + ".upper", g.upper, w.at("upper"));
        if (w.at("accuracy").is_null() != !g.accuracy.has_value()) {
          ADD_FAILURE() << id << "." << where << ": empty-bin fields";
          ++failures;
        } else if (g.accuracy) {
          near(where + ".accuracy", *g.accuracy, w.at("accuracy"));
          near(where + ".mean_confidence", *g.mean_confidence, w.at("mean_confidence"));
          near(where + ".abs_gap", *g.abs_gap, w.at("abs_gap"));
        }
      }
    }
    if (failures == 0) ++matched;
  }
  std::printf("ece.jsonl: %d/%zu records match\n", matched, records.size());
  EXPECT_EQ(matched, static_cast<int>(records.size()));
}

TEST(Ece, BinRuleAtEdges) {
  EXPECT_EQ(ece_bin_index(0.0, 10), 0);
  EXPECT_EQ(ece_bin_index(0.3, 10), 3);  // 0.3 * 10 rounds up to 3.0000000000000004
  EXPECT_EQ(ece_bin_index(0.7, 10), 7);
  EXPECT_EQ(ece_bin_index(0.29999999, 10), 2);
  EXPECT_EQ(ece_bin_index(1.0, 10), 9);
}

TEST(Ece, HandComputed) {
  // Two bins used: {0.25 wrong, 0.25 right} -> gap |0.5 - 0.25|; {0.95 right} -> gap 0.05.
  const EceResult e = expected_calibration_error({0.25, 0.25, 0.95}, {0, 1, 1});
  EXPECT_NEAR(e.ece, (2.0 / 3) * 0.25 + (1.0 / 3) * 0.05, 1e-15);
  EXPECT_NEAR(e.mce, 0.25, 1e-15);
  EXPECT_THROW(expected_calibration_error({1.5}, {1}), std::invalid_argument);
  EXPECT_THROW(expected_calibration_error({}, {}), std::invalid_argument);
}

}  // namespace
}  // namespace qeval::eval
