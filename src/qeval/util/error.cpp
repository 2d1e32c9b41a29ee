#include "qeval/util/error.h"

namespace qeval {

void fail_file(std::string_view path, std::string_view problem) {
  std::string msg;
  msg.reserve(path.size() + problem.size() + 2);
  msg.append(path).append(": ").append(problem);
  throw Error(msg);
}

void fail(std::string_view problem) { throw Error(std::string(problem)); }

}  // namespace qeval
