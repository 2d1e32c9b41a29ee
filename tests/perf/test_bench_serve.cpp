// `qeval bench --endpoint` against QEval's own `qeval serve` on loopback.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "support/server_process.h"
#include "test_support.h"

namespace qeval::perf {
namespace {

const char* const kStoriesF32 = "models/stories260K-gguf/stories260K-F32.gguf";

TEST(PerfBenchServe, EndpointBenchAgainstQevalServe) {
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  if (std::system((std::string(QEVAL_EXE) + " serve --help >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "this build has no `qeval serve`";
  test::TempDir dir;
  test::ServerProcess serve(test::shared_path(kStoriesF32).string(), {"--name", "stories", "--threads", "1"},
                            dir.file("serve.log"));
  ASSERT_NE(serve.port(), 0) << "qeval serve did not start: " << serve.error() << "\n" << serve.log();
  const std::string json_path = dir.file("endpoint.json");
  const std::string cmd = std::string(QEVAL_EXE) + " bench --endpoint " + serve.url() + " --model stories --pid " +
                          std::to_string(serve.pid()) + " --concurrency 1,2 --requests 3 --duration 60 --prompt 8 --gen 6 --json " +
                          json_path + " > " + dir.file("out.txt") + " 2>&1";
  const int status = std::system(cmd.c_str());
  ASSERT_EQ(status, 0) << test::read_text(dir.file("out.txt"));
  const nlohmann::json j = nlohmann::json::parse(test::read_text(json_path));
  ASSERT_EQ(j["levels"].size(), 2u);
  for (const auto& l : j["levels"]) {
    EXPECT_EQ(l["requests_succeeded"], 3) << l.dump(2);
    EXPECT_EQ(l["requests_failed"], 0) << l.dump(2);
    EXPECT_GT(l["ttft_seconds"]["median"].get<double>(), 0.0);
    EXPECT_GT(l["completion_tokens"].get<int64_t>(), 0);
    EXPECT_GT(l["aggregate_tokens_per_second"].get<double>(), 0.0);
    EXPECT_GT(l["server"]["rss_peak_bytes"].get<int64_t>(), 0);
  }
  EXPECT_NE(test::read_text(dir.file("out.txt")).find("| 2 | 3 / 0 |"), std::string::npos) << test::read_text(dir.file("out.txt"));
}

}  // namespace
}  // namespace qeval::perf
