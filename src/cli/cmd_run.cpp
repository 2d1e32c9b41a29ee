// qeval run PLAN --db results.db [--force] [--data-dir DIR] [--tasks-dir DIR] [--threads N]
// Runs every cell of an evaluation plan (docs/FRAMEWORK.md) into a results database; cells
// already there are skipped (resume) unless --force.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/command.h"
#include "qeval/framework/plan.h"
#include "qeval/framework/runner.h"
#include "qeval/store/store.h"

namespace qeval::cli {
namespace {

struct RunArgs {
  std::string plan, db, data_dir, tasks_dir;
  bool force = false;
  int threads = -1;
  std::string command;
};

int run(const RunArgs& a) {
  const framework::Plan plan = framework::load_plan(a.plan);
  auto store = store::Store::open(a.db);
  framework::RunOptions o;
  o.force = a.force;
  o.command = a.command;
  o.data_dir = a.data_dir;
  o.tasks_dir = a.tasks_dir;
  o.threads = a.threads;
  o.log = [](const std::string& s) {
    std::fprintf(stderr, "%s\n", s.c_str());
    std::fflush(stderr);
  };
  const framework::RunSummary s = framework::run_plan(plan, *store, o);
  std::printf("%lld cells: %lld computed, %lld already in %s%s (%.1f s)\n", static_cast<long long>(s.total),
              static_cast<long long>(s.computed), static_cast<long long>(s.skipped), a.db.c_str(),
              s.kept_other > 0 ? (", " + std::to_string(s.kept_other) + " written first by another run").c_str() : "",
              s.seconds);
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  app.add_option("plan", a->plan, "plan file (YAML; docs/FRAMEWORK.md)")->required();
  app.add_option("--db", a->db, "results database (SQLite; created when absent)")->required();
  app.add_flag("--force", a->force, "recompute cells that are already in the database");
  app.add_option("--data-dir", a->data_dir, "data root (default: the plan's, else $QEVAL_DATA, else ../shared/data)");
  app.add_option("--tasks-dir", a->tasks_dir, "tasks folder (default: the plan's, else $QEVAL_TASKS, else tasks/)");
  app.add_option("--threads,-t", a->threads, "threads (default: the plan's, else hardware concurrency)");
  return [a] {
    a->command = "qeval run " + a->plan + " --db " + a->db + (a->force ? " --force" : "");
    return run(*a);
  };
}

QEVAL_COMMAND("run", "Run an evaluation plan into a results database (resumable)", setup);

}  // namespace
}  // namespace qeval::cli
