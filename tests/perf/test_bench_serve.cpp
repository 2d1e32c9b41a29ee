// `qeval bench --endpoint` against QEval's own `qeval serve` on loopback.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "test_support.h"

extern char** environ;

namespace qeval::perf {
namespace {

const char* const kStoriesF32 = "models/stories260K-gguf/stories260K-F32.gguf";

// A child `qeval serve` on 127.0.0.1 with a free port; stopped with SIGTERM at the end.
class ServeProcess {
 public:
  ServeProcess(const std::string& model, const std::string& log) {
    const std::string exe = QEVAL_EXE;
    std::vector<std::string> args{exe, "serve", model, "--port", "0", "--name", "stories", "--threads", "1"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid_, exe.c_str(), &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    const std::regex listening("listening on (http://[0-9.]+:[0-9]+)");
    for (int i = 0; i < 600 && pid_ > 0; ++i) {  // up to 60 s on a loaded machine
      std::smatch m;
      const std::string text = test::read_text(log);
      if (std::regex_search(text, m, listening)) {
        url_ = m[1];
        break;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  int pid() const { return pid_; }
  const std::string& url() const { return url_; }

 private:
  pid_t pid_ = -1;
  std::string url_;
};

TEST(PerfBenchServe, EndpointBenchAgainstQevalServe) {
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  if (std::system((std::string(QEVAL_EXE) + " serve --help >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "this build has no `qeval serve`";
  test::TempDir dir;
  ServeProcess serve(test::shared_path(kStoriesF32).string(), dir.file("serve.log"));
  ASSERT_FALSE(serve.url().empty()) << "qeval serve did not start: " << test::read_text(dir.file("serve.log"));
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
