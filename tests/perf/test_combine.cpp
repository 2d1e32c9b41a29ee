#include "qeval/perf/combine.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "qeval/perf/bench.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::perf {
namespace {

// A result as run_bench would write it, with the given per-repetition decode and prefill speeds.
nlohmann::json result(const std::vector<double>& decode, const std::vector<double>& prefill, double util, int64_t rss,
                      int64_t gen = 128) {
  BenchResult r;
  r.model_name = "tiny";
  r.spec = "fp32";
  r.threads = 2;
  r.kernel_summary = "dense-f32 x1";
  r.config.prompt_lengths = {128};
  r.config.gen_tokens = gen;
  r.config.batch_sizes = {1};
  r.config.reps = static_cast<int>(decode.size());
  BenchCase c;
  c.prompt_tokens = 128;
  c.gen_tokens = gen;
  c.batch = 1;
  c.reps = static_cast<int>(decode.size());
  c.decode_tokens_per_second = summarize(decode);
  c.prefill_tokens_per_second = summarize(prefill);
  std::vector<double> tpot;
  for (double d : decode) tpot.push_back(1.0 / d);
  c.tpot_seconds = summarize(tpot);
  c.itl_seconds = summarize(tpot);
  c.ttft_seconds = c.prefill_seconds = c.decode_seconds = c.total_seconds = c.total_tokens_per_second = summarize(prefill);
  c.resources.cpu_utilization = util;
  c.resources.rss_peak_bytes = rss;
  c.energy = {{"available", false}, {"reason", "no RAPL"}};
  r.cases.push_back(c);
  r.peak_rss_bytes = rss;
  return r.to_json();
}

TEST(PerfCombine, PoolsTheRepetitionsOfEveryRun) {
  const std::vector<double> a = {30.0, 31.0, 29.5}, b = {40.0, 41.5};
  const nlohmann::json j = combine_bench_runs({{"a.json", result(a, {70, 71, 72}, 0.9, 100)},
                                               {"b.json", result(b, {60, 61}, 0.7, 300)}});
  const nlohmann::json& c = j["cases"][0];
  const Summary pooled = summarize(std::vector<double>{30.0, 31.0, 29.5, 40.0, 41.5});
  EXPECT_EQ(c["reps"], 5);
  EXPECT_EQ(c["decode_tokens_per_second"]["n"], 5);
  EXPECT_DOUBLE_EQ(c["decode_tokens_per_second"]["median"].get<double>(), pooled.median);
  EXPECT_DOUBLE_EQ(c["decode_tokens_per_second"]["stdev"].get<double>(), pooled.stdev);
  EXPECT_DOUBLE_EQ(c["prefill_tokens_per_second"]["median"].get<double>(), 70.0);
  EXPECT_DOUBLE_EQ(c["resources"]["cpu_utilization"].get<double>(), 0.8);
  EXPECT_EQ(c["resources"]["rss_peak_bytes"], 300);
  EXPECT_EQ(j["peak_rss_bytes"], 300);
  EXPECT_EQ(j["combined_from"], nlohmann::json::array({"a.json", "b.json"}));
  EXPECT_EQ(j["tests"][1]["test"], "tg128");
  EXPECT_DOUBLE_EQ(j["tests"][1]["tokens_per_second"].get<double>(), pooled.median);
  EXPECT_FALSE(c["energy"]["available"].get<bool>());

  const std::string table = format_bench_table_json(j);
  EXPECT_NE(table.find(fmt::format("| tg128 | {:.2f} ± {:.2f} |", pooled.median, pooled.stdev)), std::string::npos) << table;
  EXPECT_NE(table.find("pooled over 2 runs: a.json, b.json"), std::string::npos) << table;
}

TEST(PerfCombine, RefusesDifferentBenchmarksAndOldResults) {
  const nlohmann::json a = result({30.0, 31.0}, {70, 71}, 0.9, 100);
  try {
    combine_bench_runs({{"a.json", a}, {"b.json", result({30.0}, {70}, 0.9, 100, 64)}});
    FAIL() << "different generation lengths were pooled";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("b.json"), std::string::npos) << m;
    EXPECT_NE(m.find("gen_tokens"), std::string::npos) << m;
  }
  nlohmann::json old = a;
  old["cases"][0]["decode_tokens_per_second"].erase("values");
  EXPECT_THROW(combine_bench_runs({{"a.json", a}, {"old.json", old}}), Error);
  EXPECT_THROW(combine_bench_runs({{"a.json", a}}), Error);
  EXPECT_THROW(combine_bench_runs({{"a.json", a}, {"x.json", nlohmann::json{{"model_name", "tiny"}}}}), Error);
}

TEST(PerfCombineCli, PoolsTwoRunsOfTheModel) {
  const char* const model = "models/stories260K-gguf/stories260K-F32.gguf";
  QEVAL_REQUIRE_SHARED(model);
  test::TempDir dir;
  auto run = [&](const std::string& args, int* status) {
    FILE* p = popen((std::string(QEVAL_EXE) + " " + args).c_str(), "r");
    std::string out;
    char buf[4096];
    while (p && fgets(buf, sizeof buf, p)) out += buf;
    *status = p ? pclose(p) : -1;
    return out;
  };
  int status = 0;
  for (const char* name : {"r1.json", "r2.json"}) {
    run("bench " + test::shared_path(model).string() + " --prompt 16 --gen 8 --reps 1 --warmup 0 --threads 1 --json " +
            dir.file(name) + " 2>/dev/null",
        &status);
    ASSERT_EQ(status, 0);
  }
  const std::string out =
      run("bench --combine " + dir.file("r1.json") + " " + dir.file("r2.json") + " --json " + dir.file("all.json") + " 2>&1", &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("| tg8 |"), std::string::npos) << out;
  EXPECT_NE(out.find("pooled over 2 runs"), std::string::npos) << out;
  const nlohmann::json j = nlohmann::json::parse(test::read_text(dir.file("all.json")));
  EXPECT_EQ(j["cases"][0]["decode_tokens_per_second"]["n"], 2);

  std::FILE* f = std::fopen(dir.file("bad.json").c_str(), "w");
  std::fputs("{not json", f);
  std::fclose(f);
  const std::string bad = run("bench --combine " + dir.file("r1.json") + " " + dir.file("bad.json") + " --json " +
                                  dir.file("none.json") + " 2>&1",
                              &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(bad.find("bad.json"), std::string::npos) << bad;
  EXPECT_FALSE(std::filesystem::exists(dir.file("none.json")));
}

}  // namespace
}  // namespace qeval::perf
