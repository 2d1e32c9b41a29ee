// qeval: quantize LLMs after training and evaluate them. Subcommands live in cmd_*.cpp.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>

#include "cli/command.h"
#include "qeval/build_info.h"
#include "qeval/util/error.h"

namespace qeval::cli {
std::vector<CommandSpec>& command_registry() {
  static std::vector<CommandSpec> registry;
  return registry;
}
}  // namespace qeval::cli

int main(int argc, char** argv) {
  using namespace qeval;
  CLI::App app{"QEval: post-training quantization and systematic evaluation of LLMs"};
  app.name("qeval");
  app.set_version_flag("--version", std::string("qeval ") + build::kVersion + " (" + build::git_commit() + ")");
  app.require_subcommand(1);

  auto& registry = cli::command_registry();
  std::sort(registry.begin(), registry.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::function<int()> action;
  for (auto& spec : registry) {
    CLI::App* sub = app.add_subcommand(spec.name, spec.description);
    auto run = spec.setup(*sub);
    sub->callback([&action, run]() { action = run; });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    return action ? action() : 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "qeval: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qeval: internal error: %s\n", e.what());
    return 3;
  }
}
