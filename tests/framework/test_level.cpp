// The coverage classifier on a table of example evaluations (levels/coverage.yaml), including
// the design document's use case, and the facts read from plans.
#include <gtest/gtest.h>

#include <cstdlib>

#include "qeval/framework/evidence.h"
#include "qeval/framework/level.h"
#include "qeval/framework/plan.h"
#include "qeval/util/error.h"
#include "test_support.h"

using namespace qeval::framework;

namespace {

const CoverageRules& rules() {
  static const CoverageRules r = load_coverage_rules(std::string(QEVAL_SOURCE_DIR) + "/levels/coverage.yaml");
  return r;
}

QualityMeasure task(const std::string& dim, const std::string& sub, int64_t items) {
  return {dim, sub, sub + " task", items, true, true};
}

struct Example {
  const char* name;
  CoverageEvidence evidence;
  const char* level;      // level id, "" for none
  const char* statement;
  std::vector<std::string> gaps;  // requirement ids still missing for the next level
};

CoverageEvidence extended_base() {
  CoverageEvidence e;
  e.quality = {task("quality", "reasoning", 1000), task("quality", "knowledge_qa", 500),
               task("quality", "language_modeling", 200)};
  e.efficiency = {"latency", "throughput", "memory", "cpu_load"};
  e.weight_bits = {4};
  e.architectures = {"llama"};
  return e;
}

std::vector<Example> examples() {
  std::vector<Example> t;
  {
    // The design document's use case: TinyLlama-1.1B, summarization judged by ROUGE on
    // CNN/DailyMail (11,490 test articles), latency, CPU and memory measured.
    CoverageEvidence e;
    e.quality = {{"quality", "summarization", "cnn_dailymail rouge", 11490, true, true}};
    e.efficiency = {"latency", "cpu_load", "memory"};
    e.weight_bits = {4};
    e.architectures = {"llama"};
    t.push_back({"TinyLlama summarization + latency/CPU/memory", e, "basic",
                 "Basic coverage with additional efficiency and deployment analyses",
                 {"several_quality_sub_dimensions"}});
  }
  t.push_back({"nothing measured", {}, "", "No coverage: nothing is measured", {"any_measurement"}});
  {
    CoverageEvidence e;  // perplexity on an ad-hoc text only
    e.quality = {{"quality", "language_modeling", "perplexity wiki", 4000, true, false}};
    t.push_back({"perplexity on a text", e, "preliminary", "Preliminary coverage",
                 {"valid_quality_benchmark", "efficiency_measure"}});
  }
  {
    CoverageEvidence e;  // a benchmark on too few items, with latency
    e.quality = {task("quality", "reasoning", 20)};
    e.efficiency = {"latency"};
    t.push_back({"20 items are not statistically valid", e, "preliminary",
                 "Preliminary coverage with additional efficiency analyses",
                 {"valid_quality_benchmark"}});
  }
  {
    CoverageEvidence e;  // no standard error
    e.quality = {{"quality", "reasoning", "arc", 1000, false, true}};
    e.efficiency = {"latency"};
    t.push_back({"no standard errors", e, "preliminary", "Preliminary coverage with additional efficiency analyses",
                 {"valid_quality_benchmark"}});
  }
  {
    CoverageEvidence e;
    e.quality = {task("quality", "reasoning", 1000)};
    e.efficiency = {"energy"};  // resources only, and energy is not CPU load
    t.push_back({"basic, energy only", e, "basic", "Basic coverage",
                 {"several_quality_sub_dimensions", "efficiency_sub_dimensions", "deployment_cpu_load"}});
  }
  {
    CoverageEvidence e;  // the whole data set (items unknown) counts as valid
    e.quality = {task("quality", "reasoning", -1), task("quality", "mathematics", -1), task("quality", "translation", -1)};
    e.efficiency = {"throughput"};
    t.push_back({"three sub-dimensions, one efficiency sub-dimension", e, "basic",
                 "Basic coverage with additional quality analyses", {"efficiency_sub_dimensions", "deployment_cpu_load"}});
  }
  t.push_back({"extended", extended_base(), "extended", "Extended coverage",
               {"alignment", "robustness", "several_bit_widths", "parameter_sensitivity", "architectures", "ablations"}});
  {
    CoverageEvidence e = extended_base();
    e.quality.push_back(task("alignment", "honesty", 817));
    e.weight_bits = {2, 3, 4, 8};
    e.perturbed = {"w4g32-scale1.05"};
    t.push_back({"extended + alignment + bit-widths + sensitivity", e, "extended",
                 "Extended coverage with additional alignment and systematic-variation analyses",
                 {"robustness", "architectures", "ablations"}});
  }
  {
    CoverageEvidence e = extended_base();
    e.quality.push_back(task("alignment", "harmlessness_bias", 300));
    e.quality.push_back(task("robustness", "adversarial", 150));
    e.weight_bits = {2, 3, 4};
    e.perturbed = {"w4-zero1.1"};
    e.architectures = {"llama", "qwen2"};
    e.ablations = {"w4g128-awq"};
    t.push_back({"comprehensive", e, "comprehensive", "Comprehensive coverage", {}});
  }
  {
    CoverageEvidence e = extended_base();  // alignment on too few items does not count
    e.quality.push_back(task("alignment", "honesty", 30));
    e.quality.push_back(task("robustness", "adversarial", 150));
    e.weight_bits = {2, 3, 4};
    e.perturbed = {"w4-zero1.1"};
    e.architectures = {"llama", "qwen2"};
    e.ablations = {"w4g128-awq"};
    t.push_back({"comprehensive but for alignment items", e, "extended",
                 "Extended coverage with additional robustness and systematic-variation analyses", {"alignment"}});
  }
  {
    CoverageEvidence e;  // Basic can't be skipped: Extended facts without an efficiency measure
    e.quality = {task("quality", "reasoning", 1000), task("quality", "knowledge_qa", 500), task("quality", "mathematics", 500)};
    t.push_back({"no efficiency measure", e, "preliminary", "Preliminary coverage with additional quality analyses",
                 {"efficiency_measure"}});
  }
  return t;
}

}  // namespace

TEST(Level, ExampleTable) {
  for (const auto& ex : examples()) {
    SCOPED_TRACE(ex.name);
    const CoverageResult r = classify(ex.evidence, rules());
    EXPECT_EQ(r.level, ex.level);
    EXPECT_EQ(r.statement, ex.statement);
    std::vector<std::string> gaps;
    for (const auto& g : r.gaps) gaps.push_back(g.req->id);
    EXPECT_EQ(gaps, ex.gaps);
  }
}

TEST(Level, ReportListsCoverageAndAdditions) {
  const auto ex = examples().front();
  const CoverageResult r = classify(ex.evidence, rules());
  const std::string text = format_coverage(r, rules());
  EXPECT_NE(text.find("Basic coverage with additional efficiency and deployment analyses"), std::string::npos) << text;
  EXPECT_NE(text.find("To reach Extended, add:"), std::string::npos) << text;
  EXPECT_NE(text.find("at least 3 distinct sub-dimensions"), std::string::npos) << text;
  EXPECT_NE(text.find("summarization"), std::string::npos) << text;
  const auto j = to_json(r);
  EXPECT_EQ(j["level"], "basic");
  EXPECT_EQ(j["additional_areas"], nlohmann::json({"efficiency", "deployment"}));
  EXPECT_EQ(j["gaps"].size(), 1u);
}

TEST(Level, RulesFileErrorsNameTheFile) {
  qeval::test::TempDir dir;
  qeval::test::write_bytes(dir.file("r.yaml"), "areas: {quality: quality}\ndimensions: {quality: {sub_dimensions: [a]}}\n"
                                               "levels:\n  - {id: x, name: X, summary: s, requirements: [{id: r, area: nope, fact: f, at_least: 1, need: n}]}\n");
  try {
    load_coverage_rules(dir.file("r.yaml"));
    FAIL();
  } catch (const qeval::Error& e) {
    EXPECT_NE(std::string(e.what()).find("r.yaml:4"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unknown area 'nope'"), std::string::npos) << e.what();
  }
}

TEST(Level, ShippedPlans) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  ::setenv("QEVAL_SHARED", qeval::test::shared_dir().c_str(), 1);
  const std::string tasks = std::string(QEVAL_SOURCE_DIR) + "/tasks";
  const auto demo = classify(evidence_from_plan(load_plan(std::string(QEVAL_SOURCE_DIR) + "/plans/demo.yaml"), tasks), rules());
  EXPECT_EQ(demo.level, "extended") << demo.statement;
  const auto sweeps = classify(evidence_from_plan(load_plan(std::string(QEVAL_SOURCE_DIR) + "/plans/sweeps.yaml"), tasks), rules());
  // Both shared models are llama: one architecture short of Comprehensive.
  EXPECT_EQ(sweeps.level, "extended") << sweeps.statement;
  EXPECT_EQ(sweeps.statement, "Extended coverage with additional alignment, robustness and systematic-variation analyses");
  ASSERT_EQ(sweeps.gaps.size(), 1u);
  EXPECT_EQ(sweeps.gaps[0].req->id, "architectures");
}
