#pragma once
// Loads a metrics reference file (shared/reference/metrics/<name>.jsonl) as JSON records.
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace qeval::test {

inline std::vector<nlohmann::json> load_metric_records(const std::string& file) {
  std::ifstream in(shared_path("reference/metrics/" + file));
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// |a - b| <= 1e-9, the README's tolerance for every float field.
inline constexpr double kMetricTol = 1e-9;

}  // namespace qeval::test

#define QEVAL_METRIC_RECORDS(var, file)                   \
  QEVAL_REQUIRE_SHARED("reference/metrics/" file);        \
  const auto var = ::qeval::test::load_metric_records(file); \
  ASSERT_FALSE(var.empty()) << file << " has no records"
