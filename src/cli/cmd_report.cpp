// qeval report DB -o report.html [--markdown report.md] [--node-modules DIR] [--rules FILE]
// A self-contained HTML report (offline; Vega-Lite charts inlined) and a Markdown report of a
// results database.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/command.h"
#include "qeval/framework/analysis.h"
#include "qeval/framework/level.h"
#include "qeval/framework/paths.h"
#include "qeval/report/render.h"
#include "qeval/store/store.h"
#include "qeval/util/atomic_file.h"

namespace qeval::cli {
namespace {

struct ReportArgs {
  std::string db, output = "report.html", markdown, node_modules, rules;
};

int run(const ReportArgs& a) {
  // The chart libraries first: a missing node_modules is the likeliest problem and costs nothing to find.
  const report::ChartLibraries libs = report::load_chart_libraries(framework::resolve_node_modules(a.node_modules));
  const auto rules = framework::load_coverage_rules(framework::resolve_rules_file(a.rules));
  auto st = store::Store::open_existing(a.db);
  const report::ReportData data = framework::analyze(*st, rules);
  write_file_atomic(a.output, report::render_html(data, libs));
  std::string md = a.markdown;
  if (md.empty()) md = std::filesystem::path(a.output).replace_extension(".md").string();
  write_file_atomic(md, report::render_markdown(data));
  std::fprintf(stderr, "wrote %s and %s (%zu configurations, %zu comparisons; %s)\n", a.output.c_str(), md.c_str(),
               data.configs.size(), data.degradations.size(), data.coverage.statement.c_str());
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  app.add_option("db", a->db, "results database")->required();
  app.add_option("-o,--output", a->output, "HTML report (default report.html)");
  app.add_option("--markdown", a->markdown, "Markdown report (default: the HTML path with .md)");
  app.add_option("--node-modules", a->node_modules,
                 "folder with vega, vega-lite, vega-embed (default: $QEVAL_NODE_MODULES, else the checkout's node_modules)");
  app.add_option("--rules", a->rules, "coverage rules (default: levels/coverage.yaml)");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("report", "Write an HTML (offline, interactive charts) and a Markdown report of a results database", setup);

}  // namespace
}  // namespace qeval::cli
