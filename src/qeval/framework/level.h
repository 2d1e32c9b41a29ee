#pragma once
// Coverage levels (Preliminary < Basic < Extended < Comprehensive): rules from one data file
// (levels/coverage.yaml, documented there and in docs/FRAMEWORK.md), facts from a plan or a
// results database, and the classification with its gap list and partial credit.
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qeval::framework {

// One quality / alignment / robustness measurement.
struct QualityMeasure {
  std::string dimension;      // quality | alignment | robustness
  std::string sub_dimension;  // without the "knowledge_capacity/" prefix
  std::string source;         // task or cell name, for the listing
  int64_t items = 0;          // items behind the figure; -1: unknown (the whole data set)
  bool has_stderr = false;
  bool standardized = false;  // a benchmark task file (not an ad-hoc text)
};

// What an evaluation measures, whatever it was read from.
struct CoverageEvidence {
  std::vector<QualityMeasure> quality;
  std::set<std::string> efficiency;     // latency, throughput, memory, energy, cpu_load
  std::set<int> weight_bits;            // of the quantized configurations
  std::set<std::string> perturbed;      // configurations with a scale / zero-point perturbation
  std::set<std::string> architectures;
  std::set<std::string> ablations;      // configurations that switch a component off
  std::set<int64_t> calibration_sizes;
};

struct Requirement {
  std::string id, area, fact, need;
  int64_t at_least = -1;                // -1: not used
  std::vector<std::string> includes;
};

struct LevelRule {
  std::string id, name, summary;
  std::vector<Requirement> requirements;
};

struct CoverageRules {
  std::string file;
  int64_t min_items = 100;
  std::map<std::string, std::string> area_labels;
  std::vector<std::string> area_order;
  std::vector<LevelRule> levels;  // in increasing order
  std::map<std::string, std::vector<std::string>> efficiency_groups;  // performance -> [latency, throughput]
  std::map<std::string, std::string> dimension_labels;
  std::map<std::string, std::vector<std::string>> dimension_sub_dimensions;
};

// Throws qeval::Error "<file>:<line>: <problem>".
CoverageRules load_coverage_rules(const std::filesystem::path& file);

// Facts (name -> set of values) from the evidence, as the rules file describes them.
std::map<std::string, std::set<std::string>> coverage_facts(const CoverageEvidence& e, const CoverageRules& rules);

struct RequirementStatus {
  const Requirement* req = nullptr;
  std::string level;           // level id it belongs to
  bool met = false;
  std::vector<std::string> have;  // current values of its fact
};

struct CoverageResult {
  std::string level;           // id of the level reached, "" when none
  std::string level_name;      // "Basic", or "None"
  std::string next_level;      // id of the next level, "" at the top
  std::string next_level_name;
  std::vector<std::string> credit_areas;   // areas of higher-level requirements already met
  std::string statement;       // "Basic coverage with additional efficiency and deployment analyses"
  std::vector<RequirementStatus> gaps;     // unmet requirements of the next level
  std::vector<RequirementStatus> all;      // every requirement, in rule order
  std::map<std::string, std::set<std::string>> facts;
};

CoverageResult classify(const CoverageEvidence& e, const CoverageRules& rules);

nlohmann::ordered_json to_json(const CoverageResult& r);
// Human-readable report: level, coverage per dimension, additions for the next level.
std::string format_coverage(const CoverageResult& r, const CoverageRules& rules);

// Sub-dimension without the "knowledge_capacity/" prefix.
std::string short_sub_dimension(const std::string& s);

}  // namespace qeval::framework
