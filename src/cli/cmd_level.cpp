// qeval level PLAN|DB [--json] [--rules FILE] [--tasks-dir DIR]
// The coverage level (Preliminary < Basic < Extended < Comprehensive, levels/coverage.yaml) that
// a plan would reach or a results database has reached, with what is covered per dimension and
// the additions needed for the next level.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/command.h"
#include "qeval/framework/evidence.h"
#include "qeval/framework/level.h"
#include "qeval/framework/paths.h"
#include "qeval/framework/plan.h"
#include "qeval/store/store.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct LevelArgs {
  std::string input, rules, tasks_dir;
  bool json = false;
};

bool is_sqlite(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(path + ": cannot read");
  char head[16] = {};
  const size_t n = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  return n == 16 && std::string(head, 15) == "SQLite format 3";
}

int run(const LevelArgs& a) {
  const auto rules = framework::load_coverage_rules(framework::resolve_rules_file(a.rules));
  framework::CoverageEvidence e;
  if (is_sqlite(a.input)) {
    auto st = store::Store::open_existing(a.input);
    e = framework::evidence_from_store(*st);
  } else {
    e = framework::evidence_from_plan(framework::load_plan(a.input), a.tasks_dir);
  }
  const auto r = framework::classify(e, rules);
  if (a.json)
    std::printf("%s\n", framework::to_json(r).dump(2).c_str());
  else
    std::printf("%s", framework::format_coverage(r, rules).c_str());
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<LevelArgs>();
  app.add_option("input", a->input, "plan file (YAML) or results database")->required();
  app.add_flag("--json", a->json, "machine-readable output");
  app.add_option("--rules", a->rules, "coverage rules (default: $QEVAL_LEVELS, else levels/coverage.yaml)");
  app.add_option("--tasks-dir", a->tasks_dir, "tasks folder, for a plan's task dimensions");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("level", "Coverage level of a plan or a results database, with the gaps to the next level", setup);

}  // namespace
}  // namespace qeval::cli
