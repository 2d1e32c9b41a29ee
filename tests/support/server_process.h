#pragma once
// Runs `qeval serve` as a child process for the integration tests: picks its own free port
// (--port 0, read back from the startup line), waits for /health, and always ends the process
// (SIGTERM, then SIGKILL) in the destructor; the child also dies with the test process
// (PR_SET_PDEATHSIG).
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace qeval::test {

class ServerProcess {
 public:
  // Starts `qeval serve MODEL ARGS... --port 0`, stderr to `log_path`; waits up to 60 s for it.
  // On failure `error()` says why and `port()` is 0.
  ServerProcess(const std::string& model, const std::vector<std::string>& args, const std::filesystem::path& log_path,
                const std::vector<std::pair<std::string, std::string>>& env = {});
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& error() const { return error_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  std::string log() const;
  // Sends SIGTERM and waits up to `seconds`; returns the exit status, or -1 when it had to be killed.
  int stop(double seconds = 10);

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string error_;
  std::filesystem::path log_path_;
};

}  // namespace qeval::test
