#pragma once
// Summary statistics of repeated measurements: median and spread (sample standard deviation,
// min, max) and percentiles by linear interpolation between order statistics (numpy's default,
// "type 7"), so p50 of an even count is the mean of the two middle values.
#include <cstdint>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

namespace qeval::perf {

struct Summary {
  int64_t n = 0;
  double mean = 0, median = 0, stdev = 0, min = 0, max = 0;
  double p50 = 0, p90 = 0, p99 = 0;
  std::vector<double> values;  // the measurements, in their order (so runs can be pooled later)
  nlohmann::json to_json() const;  // {"n":..., "median":..., ..., "values": [...]}; n == 0 gives {"n": 0}
};

// q in [0, 1]; values need not be sorted. Throws std::invalid_argument for an empty input.
double percentile(std::span<const double> values, double q);
// All fields zero (n = 0) for an empty input; stdev is 0 for a single value.
Summary summarize(std::span<const double> values);

}  // namespace qeval::perf
