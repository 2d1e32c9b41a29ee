// Plan parsing and sweep expansion: grids, calibration sizes, ablations, seeds, defaults, and
// errors that name the plan file and line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "qeval/framework/plan.h"
#include "qeval/framework/runner.h"
#include "qeval/util/error.h"
#include "test_support.h"

using namespace qeval;
using namespace qeval::framework;

namespace {

std::vector<std::string> labels(const Plan& p) {
  std::vector<std::string> out;
  for (const auto& c : p.configurations) out.push_back(c.label());
  return out;
}

std::string error_of(const std::string& text) {
  try {
    parse_plan(text, "p.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* kHead = "models: [{name: m, path: /m.gguf}]\ncalibration: {file: /c.txt, samples: 128}\n";

}  // namespace

TEST(Plan, ExplicitSpecsAreCanonicalAndFullPrecisionComesFirst) {
  const Plan p = parse_plan(std::string(kHead) + "specs: [w4-sym-rtn, w4g32, w4g32, w8]\ntasks: [arc_easy]\n", "p.yaml");
  EXPECT_EQ(labels(p), (std::vector<std::string>{"fp32", "w4", "w4g32", "w8"}));
  EXPECT_EQ(p.configurations[0].origin, "reference");
  EXPECT_EQ(p.name, "p");
  EXPECT_EQ(p.sha256.size(), 64u);
}

TEST(Plan, GridSweepIsTheCartesianProduct) {
  const Plan p = parse_plan(std::string(kHead) +
                                "sweeps:\n  - grid: {bits: [3, 4], group: [0, 32], method: [rtn, gptq]}\n"
                                "  - grid: {bits: 4, group: 32, asym: true, scale: [0.95, 1, 1.05], zero: [1, 1.1]}\n"
                                "tasks: [arc_easy]\n",
                            "p.yaml");
  const auto l = labels(p);
  for (const char* want : {"w3", "w3-gptq@calib128", "w3g32", "w4-gptq@calib128", "w4g32-gptq@calib128", "w4g32-asym",
                           "w4g32-asym-scale0.95", "w4g32-asym-scale1.05-zero1.1", "w4g32-asym-zero1.1"})
    EXPECT_NE(std::find(l.begin(), l.end(), want), l.end()) << want;
  // fp32 + 2*2*2 + 3*2 (no duplicates: the unperturbed asym spec appears once)
  EXPECT_EQ(l.size(), 1u + 8u + 6u);
  EXPECT_EQ(std::count(l.begin(), l.end(), "w3@calib128"), 0);  // RTN needs no calibration
}

TEST(Plan, CalibrationSizesAblationsAndSeeds) {
  const Plan p = parse_plan(std::string(kHead) +
                                "sweeps:\n  - calibration: {spec: w4g32-gptq, samples: [32, 64, 128, 256]}\n"
                                "  - ablation: w4g128-awq-gptq-actorder-asym\n"
                                "tasks: [arc_easy]\n",
                            "p.yaml");
  const auto l = labels(p);
  for (const char* want : {"w4g32-gptq@calib32", "w4g32-gptq@calib64", "w4g32-gptq@calib128", "w4g32-gptq@calib256"})
    EXPECT_NE(std::find(l.begin(), l.end(), want), l.end()) << want;
  // Ablations: each component off in turn; "without gptq" leaves actorder alone (invalid) and is dropped.
  for (const char* want : {"w4g128-awq-gptq-actorder-asym@calib128", "w4g128-gptq-actorder-asym@calib128",
                           "w4g128-awq-gptq-asym@calib128", "w4g128-awq-gptq-actorder@calib128"})
    EXPECT_NE(std::find(l.begin(), l.end(), want), l.end()) << want;
  int ablations = 0;
  for (const auto& c : p.configurations) ablations += c.origin.rfind("ablation of", 0) == 0;
  EXPECT_EQ(ablations, 3);

  const Plan s = parse_plan(std::string(kHead) + "specs: [w4g32-gptq, w8]\nseeds: [1, 2]\ntasks: [arc_easy]\n", "p.yaml");
  EXPECT_EQ(labels(s), (std::vector<std::string>{"fp32", "w4g32-gptq@calib128@seed1", "w4g32-gptq@calib128@seed2",
                                                 "w8@seed1", "w8@seed2"}));
}

TEST(Plan, CellsAndDefaults) {
  ::setenv("QEVAL_PLAN_TEST_DIR", "/data", 1);
  const Plan p = parse_plan(
      "models: [{name: a, path: /a.gguf}, /x/b.gguf]\nspecs: [w8]\ndefaults: {limit: 50, num_fewshot: 0}\n"
      "tasks: [arc_easy, {name: piqa, limit: 10}]\n"
      "perplexity: [{file: \"${QEVAL_PLAN_TEST_DIR}/t.txt\", ctx: 64, method: rolling}]\n"
      "kld: [{file: /t.txt, chunks: 4}]\nefficiency: [{prompt: 32, gen: 8}]\n"
      "generations: {prompts: [hi, there], max_tokens: 5}\nrepetitions: 4\n",
      "p.yaml");
  ASSERT_EQ(p.models.size(), 2u);
  EXPECT_EQ(p.models[1].name, "b");
  EXPECT_EQ(p.tasks[0].limit, 50);
  EXPECT_EQ(p.tasks[1].limit, 10);
  EXPECT_EQ(p.tasks[0].num_fewshot, 0);
  EXPECT_EQ(p.perplexity[0].file, "/data/t.txt");
  EXPECT_EQ(p.perplexity[0].name, "t");
  EXPECT_EQ(p.efficiency[0].name, "pp32-tg8-b1");
  EXPECT_EQ(p.efficiency[0].reps, 4);
  ASSERT_TRUE(p.generations);
  EXPECT_EQ(p.generations->prompts.size(), 2u);

  const auto cells = plan_cells(p, {"h1", "h2"}, {{"arc_easy", "ta"}, {"piqa", "tp"}}, {{"/data/t.txt", "f"}, {"/t.txt", "g"}});
  // per model: fp32 (quantize, 2 tasks, ppl, generations, bench) + w8 (the same + kld)
  EXPECT_EQ(cells.size(), 2u * (6u + 7u));
  std::set<std::string> keys;
  for (const auto& c : cells) keys.insert(c.key);
  EXPECT_EQ(keys.size(), cells.size());
  // A changed task file or model makes new keys.
  const auto other = plan_cells(p, {"h1", "h2"}, {{"arc_easy", "tX"}, {"piqa", "tp"}}, {{"/data/t.txt", "f"}, {"/t.txt", "g"}});
  int changed = 0;
  for (size_t i = 0; i < cells.size(); ++i) changed += cells[i].key != other[i].key;
  EXPECT_EQ(changed, 4);
}

TEST(Plan, ErrorsNameTheFileAndLine) {
  EXPECT_NE(error_of("models: [/m]\nspecs: [w9]\ntasks: [a]\n").find("p.yaml:2:"), std::string::npos);
  EXPECT_NE(error_of("models: [/m]\nspecs: [w4-gptq]\ntasks: [a]\n").find("needs calibration data"), std::string::npos);
  EXPECT_NE(error_of("models: [/m]\nspecs: [w8]\nbogus: 1\n").find("unknown key 'bogus'"), std::string::npos);
  EXPECT_NE(error_of("models: [/m]\nspecs: [w8]\n").find("evaluates nothing"), std::string::npos);
  EXPECT_NE(error_of("models: []\n").find("non-empty"), std::string::npos);
  EXPECT_NE(error_of("models: [/m]\nspecs: [fp16]\ntasks: [a]\n").find("cannot be evaluated"), std::string::npos);
  EXPECT_NE(error_of("models: [/m]\ntasks: [a, a]\n").find("appears twice"), std::string::npos);
  EXPECT_NE(error_of("models: [\"${QEVAL_SURELY_UNSET_VAR}/m\"]\ntasks: [a]\n").find("QEVAL_SURELY_UNSET_VAR"),
            std::string::npos);
  EXPECT_NE(error_of("models: [/m]\ntasks: [a]\nperplexity: [{file: /t, method: nope}]\n").find("p.yaml:3:"),
            std::string::npos);
  EXPECT_NE(error_of("models: [/m\n").find("p.yaml:"), std::string::npos);
  try {
    load_plan("/nonexistent/plan.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/plan.yaml"), std::string::npos);
  }
}

TEST(Plan, ShippedPlansParse) {
  ::setenv("QEVAL_SHARED", test::shared_dir().c_str(), 1);
  for (const char* name : {"demo.yaml", "tiny.yaml", "sweeps.yaml"}) {
    const Plan p = load_plan(std::string(QEVAL_SOURCE_DIR) + "/plans/" + name);
    EXPECT_GE(p.configurations.size(), 7u) << name;
  }
}
