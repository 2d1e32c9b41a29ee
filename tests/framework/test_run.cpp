// `qeval run` end to end on the shared tiny model: results, resume after SIGKILL at random
// moments (nothing lost, nothing duplicated, same values as an uninterrupted run), --force,
// `qeval results` exports, `qeval level` on a database, and `qeval report`.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "qeval/store/store.h"
#include "test_support.h"

using namespace qeval;
namespace fs = std::filesystem;

namespace {

const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";

// A plan small enough to run in a few seconds: 3 configurations, 2 tasks, perplexity, KLD and
// generations (17 cells).
std::string tiny_plan(const std::string& extra = "") {
  const std::string shared = test::shared_dir().string();
  return "name: resume\nmodels: [{name: s, path: " + shared + "/" + kModel + "}]\n" +
         "calibration: {file: " + shared + "/data/wikitext2/wiki.test.raw, samples: 4, seqlen: 32}\n" +
         "specs: [w8, w4g32-gptq]\n"
         "tasks: [{name: arc_easy, limit: 6}, {name: piqa, limit: 6}]\n"
         "perplexity: [{name: ts, file: " + shared + "/data/tinystories/tinystories_eval.txt, ctx: 64, chunks: 3}]\n"
         "kld: [{name: ts, file: " + shared + "/data/tinystories/tinystories_eval.txt, ctx: 64, chunks: 3}]\n"
         "generations: {prompts: [\"Once upon a time\"], max_tokens: 8}\nthreads: 1\n" + extra;
}

// Runs qeval with args; returns the exit status, or -1 when killed after `kill_after`.
int run_qeval(const std::vector<std::string>& args, std::optional<std::chrono::microseconds> kill_after = std::nullopt,
              std::string* output = nullptr, const std::string& log = "/dev/null") {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string out = output ? log : "/dev/null";
    if (FILE* f = std::freopen(out.c_str(), "w", stdout)) (void)f;
    dup2(fileno(stdout), 2);
    std::vector<char*> argv{const_cast<char*>(QEVAL_EXE)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(QEVAL_EXE, argv.data());
    _exit(127);
  }
  if (kill_after) {
    std::this_thread::sleep_for(*kill_after);
    kill(pid, SIGKILL);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (output) *output = test::read_text(log);
  if (WIFSIGNALED(status)) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

// key -> metric -> value, without wall-clock figures (they differ between runs by nature).
std::map<std::string, std::map<std::string, double>> results_of(const std::string& db) {
  auto st = store::Store::open_existing(db);
  std::map<std::string, std::map<std::string, double>> out;
  for (const auto& c : st->cells()) {
    auto& m = out[c.key];
    for (const auto& r : c.metrics)
      if (r.name != "quantize_seconds") m[r.name] = r.value;
    EXPECT_FALSE(c.started_at.empty());
    EXPECT_FALSE(c.ended_at.empty());
    EXPECT_EQ(c.model_hash.size(), 64u);
  }
  return out;
}

}  // namespace

TEST(Run, ResumesAfterSigkillWithIdenticalResults) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED("data/tinystories/tinystories_eval.txt");
  test::TempDir dir;
  test::write_bytes(dir.file("plan.yaml"), tiny_plan());
  const std::string data = "--data-dir=" + (test::shared_dir() / "data").string();
  const std::string tasks = "--tasks-dir=" + std::string(QEVAL_SOURCE_DIR) + "/tasks";

  const auto t0 = std::chrono::steady_clock::now();
  std::string log;
  ASSERT_EQ(run_qeval({"run", dir.file("plan.yaml"), "--db", dir.file("full.db"), data, tasks}, std::nullopt, &log,
                      dir.file("log.txt")), 0) << log;
  const auto full_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_NE(log.find("ETA"), std::string::npos) << log;
  const auto full = results_of(dir.file("full.db"));
  ASSERT_EQ(full.size(), 17u);

  // Startup cost (plan, hashes from the cache, nothing to run): a run on the finished database.
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_qeval({"run", dir.file("plan.yaml"), "--db", dir.file("full.db"), data, tasks}), 0);
  const auto startup_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t1);

  // Kill at random moments, each run resuming the previous one: the moment is uniform over the
  // expected length of the run (startup + the share of the full run's work still left), so
  // kills land in startup, in cells, in transactions and near the end alike.
  std::random_device rd;
  const unsigned seed = rd();
  std::mt19937 rng(seed);
  SCOPED_TRACE("kill-time seed " + std::to_string(seed));
  int killed = 0, finished = 0;
  for (int attempt = 0; attempt < 60 && killed < 12; ++attempt) {
    size_t done_cells = 0;
    if (fs::exists(dir.file("resumed.db"))) done_cells = store::Store::open_existing(dir.file("resumed.db"))->cell_keys().size();
    const double left = static_cast<double>(full.size() - std::min(done_cells, full.size())) / full.size();
    const auto span = startup_us.count() + static_cast<int64_t>(left * static_cast<double>(full_us.count()));
    const int rc = run_qeval({"run", dir.file("plan.yaml"), "--db", dir.file("resumed.db"), data, tasks},
                             std::chrono::microseconds(std::uniform_int_distribution<int64_t>(0, span)(rng)));
    ASSERT_TRUE(rc == -1 || rc == 0) << "exit " << rc;
    killed += rc == -1;
    finished += rc == 0;
  }
  EXPECT_GE(killed, 10);
  std::fprintf(stderr, "resume test: %d runs killed, %d finished before the kill\n", killed, finished);
  ASSERT_EQ(run_qeval({"run", dir.file("plan.yaml"), "--db", dir.file("resumed.db"), data, tasks}), 0);
  const auto resumed = results_of(dir.file("resumed.db"));
  EXPECT_EQ(resumed, full);

  // A finished plan does nothing; --force recomputes every cell in place.
  ASSERT_EQ(run_qeval({"run", dir.file("plan.yaml"), "--db", dir.file("resumed.db"), data, tasks}, std::nullopt, &log,
                      dir.file("log.txt")), 0);
  EXPECT_NE(log.find("17 already in"), std::string::npos) << log;
  ASSERT_EQ(run_qeval({"run", dir.file("plan.yaml"), "--db", dir.file("resumed.db"), data, tasks, "--force"}), 0);
  EXPECT_EQ(results_of(dir.file("resumed.db")), full);
}

TEST(Run, ResultsExportLevelAndReport) {
  QEVAL_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  // A dataset-like string with markup: it must come out of the report as text.
  test::write_bytes(dir.file("plan.yaml"),
                    tiny_plan("efficiency: [{name: short, prompt: 16, gen: 4, reps: 2, warmup: 0}]\n") +
                        "# generations prompt below overrides nothing; markup is checked in report tests\n");
  std::string plan = test::read_text(dir.file("plan.yaml"));
  const std::string from = "prompts: [\"Once upon a time\"]";
  plan.replace(plan.find(from), from.size(), "prompts: [\"Once upon a time <script>alert(1)</script>\"]");
  test::write_bytes(dir.file("plan.yaml"), plan);
  const std::string data = "--data-dir=" + (test::shared_dir() / "data").string();
  const std::string tasks = "--tasks-dir=" + std::string(QEVAL_SOURCE_DIR) + "/tasks";
  std::string log;
  ASSERT_EQ(run_qeval({"run", dir.file("plan.yaml"), "--db", dir.file("r.db"), data, tasks}, std::nullopt, &log,
                      dir.file("log.txt")), 0) << log;

  ASSERT_EQ(run_qeval({"results", dir.file("r.db"), "--json", dir.file("r.json"), "--csv", dir.file("r.csv"), "--items"}), 0);
  const auto j = nlohmann::json::parse(test::read_text(dir.file("r.json")));
  EXPECT_EQ(j["cells"].size(), 20u);  // 17 + one bench cell per configuration
  EXPECT_EQ(j["runs"].size(), 1u);
  bool saw_bench = false;
  for (const auto& c : j["cells"]) {
    if (c["kind"] == "bench") {
      saw_bench = true;
      EXPECT_TRUE(c["metrics"].contains("latency.tpot_ms")) << c.dump();
      EXPECT_TRUE(c["metrics"].contains("cpu_load.utilization")) << c.dump();
    }
    if (c["kind"] == "task") {
      EXPECT_EQ(c["items"]["acc"].size(), 6u);
      EXPECT_EQ(c["dataset_sha256"].get<std::string>().size(), 64u);
      EXPECT_EQ(c["task_sha256"].get<std::string>().size(), 64u);
    }
  }
  EXPECT_TRUE(saw_bench);
  const std::string csv = test::read_text(dir.file("r.csv"));
  EXPECT_EQ(csv.rfind("model,spec,", 0), 0u);
  EXPECT_NE(csv.find("s,w8,0,-1,task,arc_easy,quality,reasoning,acc,"), std::string::npos) << csv;
  ASSERT_EQ(run_qeval({"results", dir.file("r.db"), "--spec", "w8", "--kind", "task", "--csv", dir.file("w8.csv")}), 0);
  const std::string w8 = test::read_text(dir.file("w8.csv"));
  EXPECT_EQ(std::count(w8.begin(), w8.end(), '\n'), 1 + 4);  // header + acc, acc_norm for 2 tasks

  ASSERT_EQ(run_qeval({"level", dir.file("r.db"), "--json"}, std::nullopt, &log, dir.file("log.txt")), 0) << log;
  const auto level = nlohmann::json::parse(log);
  EXPECT_EQ(level["level"], "preliminary");  // 6 items per task: not statistically valid
  EXPECT_EQ(level["gaps"][0]["id"], "valid_quality_benchmark");

  const fs::path nm = fs::path(QEVAL_SOURCE_DIR) / "node_modules";
  if (!fs::exists(nm / "vega" / "build" / "vega.min.js")) GTEST_SKIP() << "node_modules absent: run scripts/install-deps.sh";
  ASSERT_EQ(run_qeval({"report", dir.file("r.db"), "-o", dir.file("r.html"), "--node-modules", nm.string()}, std::nullopt,
                      &log, dir.file("log.txt")), 0) << log;
  const std::string html = test::read_text(dir.file("r.html"));
  EXPECT_EQ(html.find("<script>alert(1)"), std::string::npos);
  EXPECT_NE(html.find("Once upon a time &lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("id=\"chart-pareto-bytes\""), std::string::npos);
  EXPECT_NE(html.find("id=\"chart-pareto-latency\""), std::string::npos);
  EXPECT_NE(html.find("id=\"chart-degradation\""), std::string::npos);
  EXPECT_NE(html.find("id=\"chart-layers\""), std::string::npos);
  const std::string md = test::read_text(dir.file("r.md"));
  EXPECT_NE(md.find("## Per-task degradation"), std::string::npos);
  EXPECT_EQ(md.find("<script>"), std::string::npos);

  // Missing node_modules: a clear error, nothing written.
  ASSERT_EQ(run_qeval({"report", dir.file("r.db"), "-o", dir.file("x.html"), "--node-modules", dir.file("none")},
                      std::nullopt, &log, dir.file("log.txt")), 2);
  EXPECT_NE(log.find("install-deps.sh"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir.file("x.html")));
}

TEST(Run, BadInputsFailClearly) {
  test::TempDir dir;
  std::string log;
  test::write_bytes(dir.file("bad.yaml"), "models: [/nonexistent.gguf]\nspecs: [w8]\ntasks: [arc_easy]\n");
  ASSERT_EQ(run_qeval({"run", dir.file("bad.yaml"), "--db", dir.file("r.db")}, std::nullopt, &log, dir.file("log.txt")), 2);
  EXPECT_NE(log.find("/nonexistent.gguf does not exist"), std::string::npos) << log;
  ASSERT_EQ(run_qeval({"results", dir.file("absent.db")}, std::nullopt, &log, dir.file("log.txt")), 2);
  EXPECT_NE(log.find("absent.db"), std::string::npos) << log;
  ASSERT_EQ(run_qeval({"level", dir.file("absent.yaml")}, std::nullopt, &log, dir.file("log.txt")), 2);
  EXPECT_NE(log.find("absent.yaml: cannot read"), std::string::npos) << log;
}
