// qeval demo [--out DIR] [--shared DIR] [--force]
// Runs plans/demo.yaml (the shared TinyStories model under six specs: perplexity, KL divergence,
// four tasks, generations, a short benchmark) into DIR/demo.db and writes DIR/demo.html and
// DIR/demo.md. A second run reuses the finished cells.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/command.h"
#include "qeval/framework/analysis.h"
#include "qeval/framework/evidence.h"
#include "qeval/framework/level.h"
#include "qeval/framework/paths.h"
#include "qeval/framework/plan.h"
#include "qeval/framework/runner.h"
#include "qeval/report/render.h"
#include "qeval/store/store.h"
#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {
namespace fs = std::filesystem;

struct DemoArgs {
  std::string out = "qeval-demo", shared, plan, node_modules;
  bool force = false;
};

int run(const DemoArgs& a) {
  if (!a.shared.empty()) ::setenv("QEVAL_SHARED", a.shared.c_str(), 1);
  const fs::path plan_file = a.plan.empty() ? framework::find_checkout_folder("plans", "demo.yaml") / "demo.yaml" : fs::path(a.plan);
  // Check the report's prerequisites before spending minutes on the run.
  const report::ChartLibraries libs = report::load_chart_libraries(framework::resolve_node_modules(a.node_modules));
  const auto rules = framework::load_coverage_rules(framework::resolve_rules_file(""));
  const framework::Plan plan = framework::load_plan(plan_file);
  std::error_code ec;
  fs::create_directories(a.out, ec);
  if (ec) throw Error(a.out + ": cannot create: " + ec.message());
  const fs::path db = fs::path(a.out) / "demo.db";
  auto st = store::Store::open(db);
  framework::RunOptions o;
  o.force = a.force;
  o.command = "qeval demo --out " + a.out;
  o.log = [](const std::string& s) {
    std::fprintf(stderr, "%s\n", s.c_str());
    std::fflush(stderr);
  };
  const auto sum = framework::run_plan(plan, *st, o);
  const report::ReportData data = framework::analyze(*st, rules);
  const fs::path html = fs::path(a.out) / "demo.html", md = fs::path(a.out) / "demo.md";
  write_file_atomic(html.string(), report::render_html(data, libs));
  write_file_atomic(md.string(), report::render_markdown(data));
  std::printf("demo: %lld cells (%lld computed, %lld reused) in %.1f s\n", static_cast<long long>(sum.total),
              static_cast<long long>(sum.computed), static_cast<long long>(sum.skipped), sum.seconds);
  std::printf("%s\n", data.coverage.statement.c_str());
  for (const auto& r : data.recommendations)
    std::printf("recommended for %s: %s\n", r.dimension.c_str(), r.config.empty() ? "full precision" : r.config.c_str());
  std::printf("report: %s (offline, interactive) and %s\nresults: %s (qeval results %s)\n", html.c_str(), md.c_str(),
              db.c_str(), db.c_str());
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<DemoArgs>();
  app.add_option("--out", a->out, "output folder (default qeval-demo)");
  app.add_option("--shared", a->shared, "the shared assets folder (default: $QEVAL_SHARED, else ../shared)");
  app.add_option("--plan", a->plan, "plan to run instead of plans/demo.yaml");
  app.add_option("--node-modules", a->node_modules, "folder with vega, vega-lite, vega-embed");
  app.add_flag("--force", a->force, "recompute every cell");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("demo", "Evaluate the shared TinyStories model under several specs and write a report (a few minutes)", setup);

}  // namespace
}  // namespace qeval::cli
