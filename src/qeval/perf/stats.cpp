#include "qeval/perf/stats.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace qeval::perf {
namespace {

double sorted_percentile(const std::vector<double>& s, double q) {
  const double pos = q * static_cast<double>(s.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, s.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return s[lo] + (s[hi] - s[lo]) * frac;
}

}  // namespace

double percentile(std::span<const double> values, double q) {
  if (values.empty()) throw std::invalid_argument("percentile of no values");
  if (!(q >= 0.0 && q <= 1.0)) throw std::invalid_argument("percentile: q must be in [0, 1]");
  std::vector<double> s(values.begin(), values.end());
  std::sort(s.begin(), s.end());
  return sorted_percentile(s, q);
}

Summary summarize(std::span<const double> values) {
  Summary r;
  if (values.empty()) return r;
  std::vector<double> s(values.begin(), values.end());
  std::sort(s.begin(), s.end());
  r.n = static_cast<int64_t>(s.size());
  r.values.assign(values.begin(), values.end());
  double sum = 0;
  for (double v : s) sum += v;
  r.mean = sum / static_cast<double>(s.size());
  double ss = 0;
  for (double v : s) ss += (v - r.mean) * (v - r.mean);
  // Sample standard deviation (n - 1), as llama-bench reports it.
  r.stdev = s.size() > 1 ? std::sqrt(ss / static_cast<double>(s.size() - 1)) : 0.0;
  r.min = s.front();
  r.max = s.back();
  r.median = r.p50 = sorted_percentile(s, 0.5);
  r.p90 = sorted_percentile(s, 0.9);
  r.p99 = sorted_percentile(s, 0.99);
  return r;
}

nlohmann::json Summary::to_json() const {
  if (n == 0) return {{"n", 0}};
  return {{"n", n},     {"median", median}, {"mean", mean}, {"stdev", stdev}, {"min", min},
          {"max", max}, {"p50", p50},       {"p90", p90},   {"p99", p99},   {"values", values}};
}

}  // namespace qeval::perf
