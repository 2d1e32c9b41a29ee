#pragma once
// What a report shows, computed by framework/analysis.h from a results store and rendered by
// html.h (self-contained HTML with Vega-Lite charts) and markdown.h. Every string here may come
// from a model, a plan or a data set: renderers escape all of it.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qeval::report {

// One (model, configuration) with its summary figures.
struct ConfigPoint {
  std::string model, config, spec;
  std::optional<double> model_bytes, bits_per_weight;
  std::optional<double> quality;       // mean over tasks and perplexity texts of the primary metric
                                       // relative to full precision, % (lower-is-better inverted)
  int64_t quality_tasks = 0;           // measures behind `quality`
  std::optional<double> latency_ms;    // time per output token (median), first efficiency scenario
  std::optional<double> decode_tps;
  std::optional<double> perplexity;    // first perplexity cell
  std::optional<double> kld;           // first KL-divergence cell
  bool frontier_bytes = false;         // on the Pareto frontier of quality vs model bytes
  bool frontier_latency = false;       // ... vs latency
};

// A quantized configuration against full precision on one task metric.
struct Degradation {
  std::string model, task, metric, dimension, sub_dimension, config;
  double full = 0, quantized = 0;
  double relative_change = 0;          // (quantized - full) / |full|, signed so that < 0 is worse
  std::optional<double> ci_low, ci_high;  // of relative_change
  std::optional<double> p_value;
  std::string test;                    // "McNemar", "paired bootstrap", "" (no per-item scores)
  bool within = false, significant = false, conclusive = false;
  int64_t n = 0;
};

struct Correlation {
  std::string model, task, metric, text;  // text: the perplexity cell's name
  int64_t n = 0;                          // configurations
  std::optional<double> pearson, spearman;
  struct Point {
    std::string config;
    double perplexity = 0, value = 0;
  };
  std::vector<Point> points;
};

struct LayerStat {
  std::string model, config, layer;
  std::optional<double> weight_rel_error, output_error;
  std::optional<double> weight_kurtosis, max_median_ratio;  // of the float weights
};

struct Generation {
  std::string model, prompt;
  struct Output {
    std::string config, text;
  };
  std::vector<Output> outputs;  // full precision first
};

struct Recommendation {
  std::string model, dimension;  // "quality/reasoning", "all quality tasks"
  std::string config;            // "" when none qualifies
  std::optional<double> model_bytes;
  std::string why;
};

struct ResultRow {
  std::string model, config, kind, task, metric;
  double value = 0;
  std::optional<double> stderr_value;
  int64_t n = 0;
};

struct CoverageSummary {
  std::string statement;
  std::string level_name, next_level_name;
  std::vector<std::string> gaps;       // the additions needed for the next level
  std::vector<std::pair<std::string, std::string>> covered;  // (dimension, what is covered)
};

struct ReportData {
  std::string title;
  std::string generated_at;
  std::string database;
  std::vector<std::pair<std::string, std::string>> runs;  // (run, summary)
  nlohmann::json machine;
  std::string tolerance_text;          // "within 2% of full precision"
  std::vector<ConfigPoint> configs;
  std::vector<Degradation> degradations;
  std::vector<Correlation> correlations;
  std::vector<LayerStat> layers;
  std::vector<Generation> generations;
  std::vector<Recommendation> recommendations;
  std::vector<ResultRow> results;
  CoverageSummary coverage;
};

}  // namespace qeval::report
