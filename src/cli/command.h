#pragma once
// Subcommand registry: each cmd_*.cpp registers itself with QEVAL_COMMAND, so adding a
// subcommand is adding one file.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace qeval::cli {

// setup() adds options to the subcommand and returns the action to run when it is chosen.
using CommandSetup = std::function<std::function<int()>(CLI::App&)>;

struct CommandSpec {
  std::string name;
  std::string description;
  CommandSetup setup;
};

std::vector<CommandSpec>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(std::string name, std::string description, CommandSetup setup) {
    command_registry().push_back({std::move(name), std::move(description), std::move(setup)});
  }
};

}  // namespace qeval::cli

#define QEVAL_CONCAT_INNER(a, b) a##b
#define QEVAL_CONCAT(a, b) QEVAL_CONCAT_INNER(a, b)
#define QEVAL_COMMAND(name, description, setup_fn) \
  static ::qeval::cli::CommandRegistrar QEVAL_CONCAT(qeval_command_, __LINE__)(name, description, setup_fn)
