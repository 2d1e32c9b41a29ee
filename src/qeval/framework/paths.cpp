#include "qeval/framework/paths.h"

#include <cstdlib>

namespace qeval::framework {
namespace fs = std::filesystem;

fs::path find_checkout_folder(const std::string& name, const std::string& marker) {
  std::error_code ec;
  if (fs::is_regular_file(fs::path(name) / marker, ec)) return name;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (fs::path p = exe.parent_path(); !p.empty(); p = p.parent_path()) {
      if (fs::is_regular_file(p / name / marker, ec)) return p / name;
      if (p == p.root_path()) break;
    }
  return name;
}

fs::path resolve_rules_file(const std::string& cli_value) {
  if (!cli_value.empty()) return cli_value;
  if (const char* env = std::getenv("QEVAL_LEVELS"); env != nullptr && *env != '\0') return env;
  return find_checkout_folder("levels", "coverage.yaml") / "coverage.yaml";
}

}  // namespace qeval::framework

namespace qeval::framework {
std::filesystem::path resolve_node_modules(const std::string& cli_value) {
  if (!cli_value.empty()) return cli_value;
  if (const char* env = std::getenv("QEVAL_NODE_MODULES"); env != nullptr && *env != '\0') return env;
  return find_checkout_folder("node_modules", "vega/build/vega.min.js");
}
}  // namespace qeval::framework
