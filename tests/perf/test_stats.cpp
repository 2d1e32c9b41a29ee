#include <gtest/gtest.h>

#include <vector>

#include "qeval/perf/stats.h"

namespace qeval::perf {
namespace {

TEST(PerfStats, PercentilesInterpolateBetweenOrderStatistics) {
  const std::vector<double> v{5, 1, 4, 2, 3};  // sorted 1..5
  EXPECT_DOUBLE_EQ(percentile(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(percentile(v, 0.5), 3.0);
  EXPECT_DOUBLE_EQ(percentile(v, 1.0), 5.0);
  EXPECT_DOUBLE_EQ(percentile(v, 0.9), 4.6);    // position 3.6
  EXPECT_DOUBLE_EQ(percentile(v, 0.99), 4.96);  // position 3.96
  const std::vector<double> even{10, 20, 30, 40};
  EXPECT_DOUBLE_EQ(percentile(even, 0.5), 25.0);
  EXPECT_THROW(percentile(std::vector<double>{}, 0.5), std::invalid_argument);
  EXPECT_THROW(percentile(v, 1.5), std::invalid_argument);
}

TEST(PerfStats, SummaryOfKnownValues) {
  const std::vector<double> v{2, 4, 4, 4, 5, 5, 7, 9};
  const Summary s = summarize(v);
  EXPECT_EQ(s.n, 8);
  EXPECT_DOUBLE_EQ(s.mean, 5.0);
  EXPECT_DOUBLE_EQ(s.median, 4.5);
  EXPECT_DOUBLE_EQ(s.p50, 4.5);
  EXPECT_NEAR(s.stdev, 2.138089935, 1e-8);  // sample stdev: sqrt(32 / 7)
  EXPECT_DOUBLE_EQ(s.min, 2.0);
  EXPECT_DOUBLE_EQ(s.max, 9.0);
  EXPECT_NEAR(s.p90, 7.6, 1e-12);  // position 6.3: 7 + 0.3 * 2
  const auto j = s.to_json();
  EXPECT_EQ(j["n"], 8);
  EXPECT_DOUBLE_EQ(j["median"].get<double>(), 4.5);
}

TEST(PerfStats, SingleAndEmpty) {
  const Summary one = summarize(std::vector<double>{3.5});
  EXPECT_EQ(one.n, 1);
  EXPECT_DOUBLE_EQ(one.median, 3.5);
  EXPECT_DOUBLE_EQ(one.stdev, 0.0);
  EXPECT_DOUBLE_EQ(one.p99, 3.5);
  const Summary none = summarize(std::vector<double>{});
  EXPECT_EQ(none.n, 0);
  EXPECT_EQ(none.to_json(), nlohmann::json({{"n", 0}}));
}

}  // namespace
}  // namespace qeval::perf
