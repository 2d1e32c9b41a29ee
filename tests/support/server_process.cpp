#include "support/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <thread>

#include "qeval/serve/http_client.h"
#include "test_support.h"

namespace qeval::test {

ServerProcess::ServerProcess(const std::string& model, const std::vector<std::string>& args,
                             const std::filesystem::path& log_path,
                             const std::vector<std::pair<std::string, std::string>>& env)
    : log_path_(log_path) {
  std::vector<std::string> argv_s = {QEVAL_EXE, "serve", model, "--port", "0"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) {
    error_ = "fork failed";
    return;
  }
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 2);
      dup2(fd, 1);
      close(fd);
    }
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  const std::regex listening(R"(listening on http://127\.0\.0\.1:(\d+)/v1)");
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = "qeval serve exited early: " + log();
      return;
    }
    std::smatch m;
    const std::string text = log();
    if (std::regex_search(text, m, listening)) {
      const int port = std::stoi(m[1].str());
      serve::HttpClient probe("http://127.0.0.1:" + std::to_string(port), 5);
      if (probe.get("/health").ok()) {
        port_ = port;
        return;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  error_ = "qeval serve did not come up within 60 s: " + log();
}

std::string ServerProcess::log() const { return read_text(log_path_); }

int ServerProcess::stop(double seconds) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return -1;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) stop(5);
}

}  // namespace qeval::test
