#pragma once
// From a results store to what a report shows (report/report_data.h): configurations with their
// size, quality and latency and the Pareto frontiers; paired comparisons of every quantized
// configuration with full precision (McNemar for 0/1 per-item scores, paired bootstrap for other
// per-item scores, the point estimate where a metric has no per-item scores) and the "within 2%"
// verdict; perplexity-vs-benchmark correlations; per-layer statistics; generations side by side;
// the recommendation per dimension; the coverage level.
#include <string>

#include "qeval/framework/level.h"
#include "qeval/report/report_data.h"
#include "qeval/store/store.h"

namespace qeval::framework {

struct AnalysisOptions {
  double tolerance = 0.02;
  int bootstrap_samples = 1000;
  uint64_t seed = 0;
};

report::ReportData analyze(const store::Store& store, const CoverageRules& rules, const AnalysisOptions& options = {});

// Pearson and Spearman (average ranks for ties) correlation; NaN when undefined (n < 3 or a
// constant series).
double pearson(const std::vector<double>& x, const std::vector<double>& y);
double spearman(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace qeval::framework
