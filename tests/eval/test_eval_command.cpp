// `qeval eval` end to end: malformed rows with and without --skip-bad, --reference comparisons,
// and the request cache (--cache / --no-cache), on the tiny shared model.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "test_support.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

constexpr const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";

struct CliRun {
  int status = 0;
  std::string out, err;
};

// Runs `qeval eval MODEL ARGS` with the given tasks and data folders.
CliRun eval(const test::TempDir& dir, const std::string& args) {
  const std::string cmd = std::string("'") + QEVAL_EXE + "' eval '" + test::shared_path(kModel).string() +
                          "' --threads 1 --tasks-dir '" + (dir.path() / "tasks").string() + "' --data-dir '" +
                          (dir.path() / "data").string() + "' " + args + " > '" + dir.file("stdout.txt") + "' 2> '" +
                          dir.file("stderr.txt") + "'";
  CliRun r;
  r.status = std::system(cmd.c_str());
  r.out = test::read_text(dir.file("stdout.txt"));
  r.err = test::read_text(dir.file("stderr.txt"));
  return r;
}

const char* kMcTask = R"Y(task: mc
output_type: multiple_choice
dataset:
  path: mc.jsonl
doc_to_text: "Question: {{ q }}\nAnswer:"
doc_to_choice: "{{ choices }}"
doc_to_target: "{{ label }}"
)Y";

std::string good_rows() {
  return "{\"q\": \"Is the sky blue?\", \"choices\": [\"yes\", \"no\"], \"label\": 0}\n"
         "{\"q\": \"Do cats bark?\", \"choices\": [\"yes\", \"no\"], \"label\": 1}\n"
         "{\"q\": \"Is fire cold?\", \"choices\": [\"yes\", \"no\", \"maybe\"], \"label\": 1}\n";
}

void write_task(const test::TempDir& dir, const std::string& rows) {
  fs::create_directories(dir.path() / "tasks");
  fs::create_directories(dir.path() / "data");
  test::write_bytes(dir.path() / "tasks" / "mc.yaml", kMcTask);
  test::write_bytes(dir.path() / "data" / "mc.jsonl", rows);
}

struct Malformed {
  const char* kind;
  std::string row;      // inserted as line 3
  const char* problem;  // in the message
};

TEST(EvalCommand, MalformedRowsStopTheRunOrAreSkippedAndCounted) {
  QEVAL_REQUIRE_SHARED(kModel);
  const Malformed cases[] = {
      {"missing field", "{\"choices\": [\"yes\", \"no\"], \"label\": 0}", "missing field 'q'"},
      {"label out of range", "{\"q\": \"Is ice hot?\", \"choices\": [\"yes\", \"no\"], \"label\": 5}",
       "label 5 out of range (2 choices)"},
      {"empty choices", "{\"q\": \"Is ice hot?\", \"choices\": [], \"label\": 0}", "no choices"},
      {"bad UTF-8", "{\"q\": \"Is ice h\xff" "t?\", \"choices\": [\"yes\", \"no\"], \"label\": 0}", "invalid UTF-8"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.kind);
    test::TempDir dir;
    const std::string rows = good_rows();
    const size_t second_line_end = rows.find('\n', rows.find('\n') + 1) + 1;
    write_task(dir, rows.substr(0, second_line_end) + c.row + "\n" + rows.substr(second_line_end));
    const std::string data_file = (dir.path() / "data" / "mc.jsonl").string();

    // Without --skip-bad: a non-zero exit naming the file and row 3, and no output file.
    const CliRun stop = eval(dir, "--tasks mc --no-cache -o '" + dir.file("r.json") + "'");
    EXPECT_NE(stop.status, 0);
    EXPECT_NE(stop.err.find(data_file + ":3: "), std::string::npos) << stop.err;
    EXPECT_NE(stop.err.find(c.problem), std::string::npos) << stop.err;
    EXPECT_FALSE(fs::exists(dir.file("r.json")));

    // With --skip-bad: the other four docs are scored; the skipped row is printed and in the JSON.
    const CliRun skip = eval(dir, "--tasks mc --no-cache --skip-bad -o '" + dir.file("r.json") + "'");
    ASSERT_EQ(skip.status, 0) << skip.err;
    EXPECT_NE(skip.out.find("mc: skipped 1 malformed records or docs (--skip-bad)"), std::string::npos) << skip.out;
    EXPECT_NE(skip.out.find(data_file + ":3: "), std::string::npos) << skip.out;
    const auto j = nlohmann::json::parse(test::read_text(dir.file("r.json")));
    EXPECT_TRUE(j.at("skip_bad").get<bool>());
    const auto& t = j.at("results").at("mc");
    EXPECT_EQ(t.at("n_docs").get<int>(), 3);
    EXPECT_EQ(t.at("skipped").get<int>(), 1);
    ASSERT_EQ(t.at("problems").size(), 1u);
    EXPECT_NE(t.at("problems")[0].get<std::string>().find(c.problem), std::string::npos);
  }
}

TEST(EvalCommand, ReferenceComparisonIsPrintedAndWritten) {
  QEVAL_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  write_task(dir, good_rows() + good_rows() + good_rows());
  // The same model against itself: every metric identical, every verdict "within".
  const CliRun same = eval(dir, "--tasks mc --no-cache --reference '" + test::shared_path(kModel).string() + "' -o '" +
                                 dir.file("same.json") + "'");
  ASSERT_EQ(same.status, 0) << same.err;
  EXPECT_NE(same.out.find("Paired comparison with the reference"), std::string::npos) << same.out;
  EXPECT_NE(same.out.find("Agreement of the answers"), std::string::npos) << same.out;
  const auto j = nlohmann::json::parse(test::read_text(dir.file("same.json")));
  const auto& cmp = j.at("comparison").at("tasks").at("mc");
  EXPECT_EQ(cmp.at("n_docs").get<int>(), 9);
  const auto& acc = cmp.at("metrics").at("acc");
  EXPECT_EQ(acc.at("test").get<std::string>(), "mcnemar");
  EXPECT_EQ(acc.at("delta").get<double>(), 0.0);
  EXPECT_EQ(acc.at("p_value").get<double>(), 1.0);
  EXPECT_TRUE(acc.at("verdict").at("within").get<bool>());
  EXPECT_EQ(cmp.at("agreement").at("predicted_choice").at("identical_rate").get<double>(), 1.0);
  EXPECT_EQ(j.at("reference_results").at("mc").at("metrics").at("acc").at("value").get<double>(),
            j.at("results").at("mc").at("metrics").at("acc").at("value").get<double>());

  // A 2-bit candidate against the F32 reference: same docs, the per-doc log-likelihoods differ.
  const CliRun q = eval(dir, "--tasks mc --no-cache --spec w2g32 --reference '" + test::shared_path(kModel).string() +
                              "' -o '" + dir.file("q.json") + "'");
  ASSERT_EQ(q.status, 0) << q.err;
  const auto jq = nlohmann::json::parse(test::read_text(dir.file("q.json")));
  const auto& cq = jq.at("comparison").at("tasks").at("mc");
  EXPECT_GT(cq.at("choice_kl").at("mean").get<double>(), 0.0);
  const auto lp_ref = jq.at("reference_results").at("mc").at("docs")[0].at("logprobs");
  const auto lp_q = jq.at("results").at("mc").at("docs")[0].at("logprobs");
  EXPECT_NE(lp_ref, lp_q);
  for (const auto& [name, m] : cq.at("metrics").items()) {
    EXPECT_TRUE(m.contains("ci_low")) << name;
    EXPECT_TRUE(m.at("verdict").contains("within")) << name;
  }

  // --reference-spec without --reference is refused.
  EXPECT_NE(eval(dir, "--tasks mc --no-cache --reference-spec w4g32").status, 0);
}

TEST(EvalCommand, SecondRunComesFromTheCache) {
  QEVAL_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  write_task(dir, good_rows());
  const std::string cache = dir.file("cache");
  const CliRun first = eval(dir, "--tasks mc --cache '" + cache + "' -o '" + dir.file("a.json") + "'");
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_NE(first.err.find("mc: 0 requests from the cache, 7 computed"), std::string::npos) << first.err;
  const CliRun second = eval(dir, "--tasks mc --cache '" + cache + "' -o '" + dir.file("b.json") + "'");
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_NE(second.err.find("mc: 7 requests from the cache, 0 computed"), std::string::npos) << second.err;
  const auto a = nlohmann::json::parse(test::read_text(dir.file("a.json")));
  const auto b = nlohmann::json::parse(test::read_text(dir.file("b.json")));
  EXPECT_EQ(a.at("results"), b.at("results"));
  // --no-cache computes again.
  const CliRun third = eval(dir, "--tasks mc --no-cache");
  ASSERT_EQ(third.status, 0) << third.err;
  EXPECT_EQ(third.err.find("from the cache"), std::string::npos);
}

}  // namespace
}  // namespace qeval
