// Report rendering: escaping of every text that comes from models, plans or data sets (a
// dataset string containing <script> shows as text), the charts, the Markdown twin, and, where
// Debian's chromium is installed, a headless render without console errors.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <regex>

#include "qeval/report/escape.h"
#include "qeval/report/render.h"
#include "qeval/util/error.h"
#include "test_support.h"

using namespace qeval;
using namespace qeval::report;
namespace fs = std::filesystem;

namespace {

const std::string kEvil = "<script>alert('x')</script><!-- & \"q\" \xE2\x80\xA8";

ReportData sample() {
  ReportData d;
  d.title = "t " + kEvil;
  d.generated_at = "2026-11-22T20:00:00.000Z";
  d.database = "r.db";
  d.tolerance_text = "within 2% of full precision";
  d.machine = {{"cpu_model", kEvil}, {"logical_cores", 2}};
  d.runs = {{"run 1", "plan " + kEvil}};
  for (int i = 0; i < 4; ++i) {
    ConfigPoint p;
    p.model = "m" + kEvil;
    p.config = i == 0 ? "fp32" : "w" + std::to_string(8 - 2 * i) + kEvil;
    p.spec = p.config;
    p.model_bytes = 1e6 / (i + 1);
    p.quality = 100 - 3 * i * i;
    p.latency_ms = 2.0 - 0.1 * i;
    p.perplexity = 5 + i;
    p.frontier_bytes = true;
    d.configs.push_back(p);
    if (i > 0) {
      Degradation g;
      g.model = p.model;
      g.task = "task" + kEvil;
      g.metric = "acc";
      g.config = p.config;
      g.full = 0.5;
      g.quantized = 0.5 - 0.01 * i;
      g.relative_change = -0.02 * i;
      g.ci_low = g.relative_change - 0.05;
      g.ci_high = g.relative_change + 0.05;
      g.p_value = 0.3;
      g.test = "McNemar";
      g.within = i == 1;
      d.degradations.push_back(g);
      d.layers.push_back({p.model, p.config, "blk.0.attn_q" + kEvil, 1e-3 * i, std::nullopt, 0.5, 4.0});
    }
  }
  Correlation c;
  c.model = "m";
  c.task = "task" + kEvil;
  c.metric = "acc";
  c.text = "ts";
  c.n = 3;
  c.pearson = -0.9;
  c.spearman = -1;
  c.points = {{"fp32", 5, 0.5}, {"w6", 6, 0.49}, {"w4", 7, 0.47}};
  d.correlations.push_back(c);
  d.generations.push_back({"m", "prompt " + kEvil, {{"fp32", "out " + kEvil}, {"w4", "other | pipe\nnewline"}}});
  d.recommendations.push_back({"m", "quality/reasoning", "w6" + kEvil, 5e5, "1 comparison within 2%"});
  d.results.push_back({"m", "fp32", "task", "task" + kEvil, "acc", 0.5, 0.05, 100});
  d.coverage.statement = "Basic coverage with additional efficiency analyses";
  d.coverage.next_level_name = "Extended";
  d.coverage.gaps = {"more " + kEvil};
  d.coverage.covered = {{"quality", "reasoning"}};
  return d;
}

fs::path node_modules() { return fs::path(QEVAL_SOURCE_DIR) / "node_modules"; }

bool have_libraries() { return fs::exists(node_modules() / "vega" / "build" / "vega.min.js"); }

}  // namespace

TEST(Escape, Html) {
  EXPECT_EQ(html_escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
}

TEST(Escape, JsonInsideScriptCannotCloseIt) {
  const nlohmann::json j = {{"s", kEvil}};
  const std::string s = json_for_script(j);
  EXPECT_EQ(s.find('<'), std::string::npos);
  EXPECT_EQ(s.find('>'), std::string::npos);
  EXPECT_EQ(s.find("\xE2\x80\xA8"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(s), j);  // still the same JSON
  // Invalid UTF-8 does not throw.
  EXPECT_NO_THROW(json_for_script(nlohmann::json("bad \xFF byte")));
}

TEST(Escape, InlinedLibraries) {
  EXPECT_EQ(js_for_script("var a = \"</SCRIPT>\"; var b = '<!--';"), "var a = \"<\\/SCRIPT>\"; var b = '<\\!--';");
  EXPECT_EQ(js_for_script("a < b"), "a < b");
}

TEST(Escape, Markdown) { EXPECT_EQ(markdown_cell("a|b\n<c>&"), "a\\|b &lt;c&gt;&amp;"); }

TEST(Render, HtmlEscapesEveryTextAndHasTheCharts) {
  ChartLibraries libs{"/*vega*/", "/*vega-lite*/", "/*vega-embed*/", "test"};
  const std::string html = render_html(sample(), libs);
  // The only <script elements are the four of the page itself (three libraries, one loader) and the JSON data.
  std::regex open_script("<script");
  EXPECT_EQ(std::distance(std::sregex_iterator(html.begin(), html.end(), open_script), std::sregex_iterator()), 5);
  EXPECT_EQ(html.find("alert('x')</script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), std::string::npos);
  for (const char* id : {"chart-pareto-bytes", "chart-pareto-latency", "chart-degradation", "chart-correlation", "chart-layers"})
    EXPECT_NE(html.find(std::string("<div class=\"chart\" id=\"") + id + "\">"), std::string::npos) << id;
  // The specs are valid JSON with the data in them.
  const size_t a = html.find("id=\"qeval-chart-specs\">") + std::string("id=\"qeval-chart-specs\">").size();
  const size_t b = html.find("</script>", a);
  const auto specs = nlohmann::json::parse(html.substr(a, b - a));
  EXPECT_EQ(specs.size(), 5u);
  EXPECT_EQ(specs["chart-pareto-bytes"]["data"]["values"].size(), 4u);
  EXPECT_EQ(specs["chart-degradation"]["data"]["values"].size(), 3u);
  const auto& pts = specs["chart-pareto-bytes"]["data"]["values"];
  EXPECT_EQ(pts[1]["config"], "w6" + kEvil);  // data keeps the raw text; Vega draws it as text
}

TEST(Render, ChartsAreLeftOutWithoutData) {
  ReportData d;
  d.title = "empty";
  const auto specs = chart_specs(d);
  EXPECT_TRUE(specs.empty());
  ChartLibraries libs{"", "", "", ""};
  const std::string html = render_html(d, libs);
  EXPECT_NE(html.find("No efficiency scenario"), std::string::npos);
}

TEST(Render, Markdown) {
  const std::string md = render_markdown(sample());
  EXPECT_EQ(md.find("<script>"), std::string::npos);
  EXPECT_NE(md.find("other \\| pipe newline"), std::string::npos);
  EXPECT_NE(md.find("| m | quality/reasoning |"), std::string::npos) << md;
}

TEST(Render, MissingLibrariesNameTheSetupScript) {
  try {
    load_chart_libraries("/nonexistent/node_modules");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/node_modules/vega/build/vega.min.js"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("scripts/install-deps.sh"), std::string::npos);
  }
}

// Renders the report in Debian's headless chromium: the charts become SVG, no console errors,
// and the <script> text is shown as text (it is in the DOM as a text node, not as an element).
TEST(Render, HeadlessChromium) {
  if (!have_libraries()) GTEST_SKIP() << "node_modules absent: run scripts/install-deps.sh";
  if (std::system("command -v chromium >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "chromium not installed (Debian package 'chromium'; scripts/install-deps.sh installs it)";
  test::TempDir dir;
  const std::string html = render_html(sample(), load_chart_libraries(node_modules()));
  test::write_bytes(dir.file("r.html"), html);
  const std::string cmd = "chromium --headless --disable-gpu --no-sandbox --user-data-dir=" + dir.file("profile") +
                          " --enable-logging=stderr --v=0 --virtual-time-budget=10000 --dump-dom file://" +
                          dir.file("r.html") + " >" + dir.file("dom.html") + " 2>" + dir.file("log.txt");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_text(dir.file("log.txt"));
  const std::string dom = test::read_text(dir.file("dom.html"));
  const std::string log = test::read_text(dir.file("log.txt"));
  for (const char* id : {"chart-pareto-bytes", "chart-pareto-latency", "chart-degradation", "chart-correlation", "chart-layers"}) {
    const size_t at = dom.find(std::string("id=\"") + id + "\"");
    ASSERT_NE(at, std::string::npos) << id;
    const size_t svg = dom.find("<svg", at);
    const size_t next = dom.find("class=\"chart\"", at + 1);
    EXPECT_TRUE(svg != std::string::npos && svg < next) << id << " has no SVG";
  }
  // The message is in the loader script once; a chart that failed would show it again.
  size_t failures = 0;
  for (size_t at = dom.find("Chart could not be drawn"); at != std::string::npos; at = dom.find("Chart could not be drawn", at + 1))
    ++failures;
  EXPECT_EQ(failures, 1u);
  EXPECT_EQ(log.find("CONSOLE"), std::string::npos) << log;
  EXPECT_EQ(log.find("Uncaught"), std::string::npos) << log;
  EXPECT_NE(dom.find("&lt;script&gt;alert('x')&lt;/script&gt;"), std::string::npos);
}
