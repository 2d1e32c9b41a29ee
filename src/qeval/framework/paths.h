#pragma once
// Where the checkout's data folders are (tasks/, levels/, plans/) when the caller names none:
// ./<name>, else <name>/ beside one of the executable's ancestors (the checkout the build
// directory lives in).
#include <filesystem>
#include <string>

namespace qeval::framework {

// `marker` is a file inside the folder that proves it is the right one ("coverage.yaml").
std::filesystem::path find_checkout_folder(const std::string& name, const std::string& marker);

// The coverage rules: `cli_value`, else $QEVAL_LEVELS, else levels/coverage.yaml of the checkout.
std::filesystem::path resolve_rules_file(const std::string& cli_value);

}  // namespace qeval::framework

namespace qeval::framework {
// The npm packages for reports: `cli_value`, else $QEVAL_NODE_MODULES, else node_modules/ of the
// checkout (found like tasks/).
std::filesystem::path resolve_node_modules(const std::string& cli_value);
}  // namespace qeval::framework
