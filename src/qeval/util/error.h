#pragma once
// QEval's one error type: every failure a user can cause (bad file, bad option) is an Error
// whose message names the file or option and the problem on one line. The CLI prints it and
// exits with code 2.
#include <stdexcept>
#include <string>
#include <string_view>

namespace qeval {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// "<path>: <problem>" - the form every file error takes.
[[noreturn]] void fail_file(std::string_view path, std::string_view problem);
[[noreturn]] void fail(std::string_view problem);

}  // namespace qeval
