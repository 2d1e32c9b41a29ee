// `qeval eval --endpoint` against `qeval serve` on loopback gives the in-process evaluation's
// answers: the same accuracy and per-choice log-likelihoods (<= 1e-4) on a multiple-choice task,
// and the same greedy generations on a generate_until task.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "support/server_process.h"
#include "test_support.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

constexpr const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";

const char* kMcTask = R"Y(task: mc
output_type: multiple_choice
dataset:
  path: mc.jsonl
doc_to_text: "Once upon a time, {{ q }}"
doc_to_choice: "{{ choices }}"
doc_to_target: "{{ label }}"
)Y";

const char* kGenTask = R"Y(task: gen
output_type: generate_until
dataset:
  path: gen.jsonl
doc_to_text: "{{ q }}"
doc_to_target: "{{ a }}"
generation_kwargs:
  until: ["."]
  max_gen_toks: 12
metric_list:
  - metric: exact_match
)Y";

void write_tasks(const test::TempDir& dir) {
  fs::create_directories(dir.path() / "tasks");
  fs::create_directories(dir.path() / "data");
  test::write_bytes(dir.path() / "tasks" / "mc.yaml", kMcTask);
  test::write_bytes(dir.path() / "tasks" / "gen.yaml", kGenTask);
  test::write_bytes(dir.path() / "data" / "mc.jsonl",
                    "{\"q\": \"there was a little girl named\", \"choices\": [\"Lily\", \"table\", \"Tom\"], \"label\": 0}\n"
                    "{\"q\": \"the sun was\", \"choices\": [\"shining\", \"purple\"], \"label\": 0}\n"
                    "{\"q\": \"a boy went to the\", \"choices\": [\"park\", \"sky\", \"happy\"], \"label\": 0}\n");
  test::write_bytes(dir.path() / "data" / "gen.jsonl",
                    "{\"q\": \"Once upon a time, there was a little\", \"a\": \"girl\"}\n"
                    "{\"q\": \"One day, Tom went to the\", \"a\": \"park\"}\n");
}

// Runs `qeval eval TARGET --tasks mc,gen ...`; returns the JSON it wrote.
nlohmann::json run_eval(const test::TempDir& dir, const std::string& target, const std::string& out) {
  const std::string cmd = std::string("'") + QEVAL_EXE + "' eval " + target + " --tasks mc,gen --no-cache --tasks-dir '" +
                          (dir.path() / "tasks").string() + "' --data-dir '" + (dir.path() / "data").string() +
                          "' -o '" + dir.file(out) + "' > /dev/null 2> '" + dir.file(out + ".err") + "'";
  const int status = std::system(cmd.c_str());
  EXPECT_EQ(status, 0) << test::read_text(dir.file(out + ".err"));
  return nlohmann::json::parse(test::read_text(dir.file(out)));
}

TEST(EvalEndpoint, MatchesInProcessEvaluation) {
  QEVAL_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  write_tasks(dir);
  const std::string model = test::shared_path(kModel).string();
  test::ServerProcess server(model, {"--name", "stories", "--threads", "1", "-q"}, dir.file("serve.log"));
  ASSERT_GT(server.port(), 0) << server.error();

  const nlohmann::json local = run_eval(dir, "'" + model + "' --threads 1", "local.json");
  const nlohmann::json remote = run_eval(dir, "--endpoint " + server.url() + " --model stories", "remote.json");

  const auto& lm = local.at("results").at("mc");
  const auto& rm = remote.at("results").at("mc");
  EXPECT_EQ(lm.at("metrics").at("acc").at("value").get<double>(), rm.at("metrics").at("acc").at("value").get<double>());
  ASSERT_EQ(lm.at("docs").size(), 3u);
  ASSERT_EQ(rm.at("docs").size(), 3u);
  for (size_t d = 0; d < 3; ++d) {
    const auto& a = lm.at("docs")[d].at("logprobs");
    const auto& b = rm.at("docs")[d].at("logprobs");
    ASSERT_EQ(a.size(), b.size());
    for (size_t c = 0; c < a.size(); ++c)
      EXPECT_NEAR(a[c].get<double>(), b[c].get<double>(), 1e-4) << "doc " << d << " choice " << c;
  }
  const auto& lg = local.at("results").at("gen").at("docs");
  const auto& rg = remote.at("results").at("gen").at("docs");
  ASSERT_EQ(lg.size(), rg.size());
  for (size_t d = 0; d < lg.size(); ++d) EXPECT_EQ(lg[d].at("generations"), rg[d].at("generations")) << "doc " << d;
}

TEST(EvalEndpoint, RejectsModelAndEndpointTogetherAndMissingModelName) {
  QEVAL_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  write_tasks(dir);
  const std::string base = std::string("'") + QEVAL_EXE + "' eval ";
  const std::string tail = " --tasks mc --tasks-dir '" + (dir.path() / "tasks").string() + "' --data-dir '" +
                           (dir.path() / "data").string() + "' > /dev/null 2> '" + dir.file("err.txt") + "'";
  EXPECT_NE(std::system((base + "'" + test::shared_path(kModel).string() + "' --endpoint http://127.0.0.1:9/v1" + tail).c_str()), 0);
  EXPECT_NE(test::read_text(dir.file("err.txt")).find("exactly one"), std::string::npos) << test::read_text(dir.file("err.txt"));
  EXPECT_NE(std::system((base + "--endpoint http://127.0.0.1:9/v1" + tail).c_str()), 0);
  EXPECT_NE(test::read_text(dir.file("err.txt")).find("--model"), std::string::npos) << test::read_text(dir.file("err.txt"));
}

}  // namespace
}  // namespace qeval
