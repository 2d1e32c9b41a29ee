#include "qeval/report/render.h"

#include <cmath>
#include <map>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

#include "qeval/report/escape.h"
#include "qeval/util/error.h"

namespace qeval::report {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_file(const fs::path& p, const std::string& hint) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(p.string() + ": not found; " + hint);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string package_version(const fs::path& dir) {
  std::ifstream in(dir / "package.json");
  if (!in) return "?";
  try {
    return json::parse(in).value("version", "?");
  } catch (const std::exception&) {
    return "?";
  }
}

std::string fmt_opt(const std::optional<double>& v, const char* f = "{:.4g}") {
  return v && std::isfinite(*v) ? fmt::format(fmt::runtime(f), *v) : std::string("–");
}

std::string fmt_bytes(const std::optional<double>& b) {
  if (!b) return "–";
  const double v = *b;
  if (v >= 1e9) return fmt::format("{:.2f} GB", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f} MB", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f} kB", v / 1e3);
  return fmt::format("{:.0f} B", v);
}

std::string pct(double v) { return std::isfinite(v) ? fmt::format("{:+.2f}%", 100 * v) : std::string("–"); }

std::string verdict_text(const Degradation& d) {
  std::string s = d.within ? "within 2%" : "outside 2%";
  if (!d.test.empty()) {
    s += d.significant ? ", significant" : ", not significant";
    s += d.conclusive ? ", conclusive" : ", not conclusive";
  } else {
    s += " (point estimate; no per-item scores)";
  }
  return s;
}

// Table model shared by both renderers: header + rows of plain strings (escaped when rendered).
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

Table configs_table(const ReportData& d) {
  Table t{{"model", "configuration", "model bytes", "bits/weight", "quality % of FP", "measures", "latency ms/token",
           "decode tok/s", "perplexity", "KLD", "Pareto (bytes / latency)"}, {}};
  for (const auto& c : d.configs)
    t.rows.push_back({c.model, c.config, fmt_bytes(c.model_bytes), fmt_opt(c.bits_per_weight, "{:.3f}"),
                      fmt_opt(c.quality, "{:.2f}"), std::to_string(c.quality_tasks), fmt_opt(c.latency_ms, "{:.3f}"),
                      fmt_opt(c.decode_tps, "{:.1f}"), fmt_opt(c.perplexity, "{:.4f}"), fmt_opt(c.kld, "{:.5f}"),
                      std::string(c.frontier_bytes ? "yes" : "no") + " / " +
                          (c.latency_ms ? (c.frontier_latency ? "yes" : "no") : "–")});
  return t;
}

Table degradation_table(const ReportData& d) {
  Table t{{"model", "task", "metric", "configuration", "full precision", "quantized", "relative change", "95% interval",
           "test", "p", "verdict"}, {}};
  for (const auto& x : d.degradations)
    t.rows.push_back({x.model, x.task, x.metric, x.config, fmt::format("{:.4f}", x.full), fmt::format("{:.4f}", x.quantized),
                      pct(x.relative_change),
                      x.ci_low && x.ci_high ? pct(*x.ci_low) + " … " + pct(*x.ci_high) : std::string("–"),
                      x.test.empty() ? "–" : x.test, fmt_opt(x.p_value, "{:.3g}"), verdict_text(x)});
  return t;
}

Table correlation_table(const ReportData& d) {
  Table t{{"model", "task", "metric", "perplexity on", "configurations", "Pearson r", "Spearman ρ"}, {}};
  for (const auto& c : d.correlations)
    t.rows.push_back({c.model, c.task, c.metric, c.text, std::to_string(c.n), fmt_opt(c.pearson, "{:+.3f}"),
                      fmt_opt(c.spearman, "{:+.3f}")});
  return t;
}

Table recommendation_table(const ReportData& d) {
  Table t{{"model", "dimension", "recommended configuration", "model bytes", "why"}, {}};
  for (const auto& r : d.recommendations)
    t.rows.push_back({r.model, r.dimension, r.config.empty() ? "full precision (none within 2%)" : r.config,
                      fmt_bytes(r.model_bytes), r.why});
  return t;
}

Table layers_table(const ReportData& d) {
  Table t{{"model", "configuration", "layer", "relative weight error", "output error", "weight kurtosis (FP)",
           "max/median |w| (FP)"}, {}};
  for (const auto& l : d.layers)
    t.rows.push_back({l.model, l.config, l.layer, fmt_opt(l.weight_rel_error, "{:.3e}"), fmt_opt(l.output_error, "{:.3e}"),
                      fmt_opt(l.weight_kurtosis, "{:.2f}"), fmt_opt(l.max_median_ratio, "{:.1f}")});
  return t;
}

Table results_table(const ReportData& d) {
  Table t{{"model", "configuration", "kind", "name", "metric", "value", "stderr", "n"}, {}};
  for (const auto& r : d.results)
    t.rows.push_back({r.model, r.config, r.kind, r.task, r.metric, fmt::format("{:.6g}", r.value),
                      fmt_opt(r.stderr_value, "{:.3g}"), std::to_string(r.n)});
  return t;
}

Table machine_table(const ReportData& d) {
  Table t{{"field", "value"}, {}};
  if (d.machine.is_object())
    for (auto it = d.machine.begin(); it != d.machine.end(); ++it) {
      if (it.key() == "cpu_flags") continue;  // long; cpu_isa has the ones that matter
      t.rows.push_back({it.key(), it.value().is_string() ? it.value().get<std::string>() : it.value().dump()});
    }
  return t;
}

std::string html_table(const Table& t) {
  if (t.rows.empty()) return "<p class=\"empty\">No data.</p>\n";
  std::string s = "<div class=\"scroll\"><table>\n<thead><tr>";
  for (const auto& h : t.header) s += "<th>" + html_escape(h) + "</th>";
  s += "</tr></thead>\n<tbody>\n";
  for (const auto& r : t.rows) {
    s += "<tr>";
    for (const auto& c : r) s += "<td>" + html_escape(c) + "</td>";
    s += "</tr>\n";
  }
  return s + "</tbody></table></div>\n";
}

std::string md_table(const Table& t) {
  if (t.rows.empty()) return "No data.\n";
  std::string s = "|";
  for (const auto& h : t.header) s += " " + markdown_cell(h) + " |";
  s += "\n|";
  for (size_t i = 0; i < t.header.size(); ++i) s += "---|";
  s += "\n";
  for (const auto& r : t.rows) {
    s += "|";
    for (const auto& c : r) s += " " + markdown_cell(c) + " |";
    s += "\n";
  }
  return s;
}

json axis_field(const std::string& field, const std::string& type, const std::string& title) {
  return {{"field", field}, {"type", type}, {"title", title}};
}

json pareto_spec(const ReportData& d, bool by_latency) {
  json values = json::array();
  for (const auto& c : d.configs) {
    const auto x = by_latency ? c.latency_ms : c.model_bytes;
    if (!x || !c.quality) continue;
    const bool front = by_latency ? c.frontier_latency : c.frontier_bytes;
    values.push_back({{"model", c.model}, {"config", c.config}, {"x", *x}, {"quality", *c.quality},
                      {"frontier", front ? "on the frontier" : "dominated"}, {"is_frontier", front}});
  }
  if (values.empty()) return nullptr;
  bool any_frontier = false;
  for (const auto& v : values) any_frontier = any_frontier || v["is_frontier"].get<bool>();
  const json x = {{"field", "x"}, {"type", "quantitative"}, {"scale", {{"zero", false}}},
                  {"title", by_latency ? "latency (ms per output token, median)" : "model bytes"}};
  const json y = {{"field", "quality"}, {"type", "quantitative"}, {"scale", {{"zero", false}}},
                  {"title", "quality (% of full precision)"}};
  json layers = json::array();
  // The frontier joined by a line (a filter that keeps nothing would give Vega an empty extent).
  if (any_frontier)
    layers.push_back({{"transform", json::array({{{"filter", "datum.is_frontier"}}})},
                      {"mark", {{"type", "line"}, {"color", "#d62728"}, {"strokeDash", json::array({4, 3})}}},
                      {"encoding", {{"x", x}, {"y", y}, {"detail", {{"field", "model"}, {"type", "nominal"}}},
                                    {"order", {{"field", "x"}, {"type", "quantitative"}}}}}});
  const json points_and_labels =
           json::array({{{"mark", {{"type", "point"}, {"filled", true}, {"size", 90}}},
                         {"encoding",
                          {{"x", x},
                           {"y", y},
                           {"color", axis_field("frontier", "nominal", "Pareto")},
                           {"shape", axis_field("model", "nominal", "model")},
                           {"tooltip", json::array({axis_field("model", "nominal", "model"),
                                                    axis_field("config", "nominal", "configuration"),
                                                    axis_field("x", "quantitative", by_latency ? "ms/token" : "bytes"),
                                                    axis_field("quality", "quantitative", "quality %")})}}}},
                        {{"mark", {{"type", "text"}, {"dx", 7}, {"align", "left"}, {"fontSize", 10}}},
                         {"encoding", {{"x", x}, {"y", y}, {"text", {{"field", "config"}, {"type", "nominal"}}}}}}});
  for (const auto& l : points_and_labels) layers.push_back(l);
  return {{"width", 560}, {"height", 320}, {"data", {{"values", values}}}, {"layer", layers}};
}

json degradation_spec(const ReportData& d) {
  json values = json::array();
  int order = 0;
  for (const auto& x : d.degradations)
    values.push_back({{"row", x.model + " · " + x.task + " · " + x.metric + " · " + x.config}, {"order", order++},
                      {"config", x.config}, {"change", 100 * x.relative_change},
                      {"lo", x.ci_low ? json(100 * *x.ci_low) : json(100 * x.relative_change)},
                      {"hi", x.ci_high ? json(100 * *x.ci_high) : json(100 * x.relative_change)},
                      {"verdict", x.within ? "within 2%" : "outside 2%"}});
  if (values.empty()) return nullptr;
  const json y = {{"field", "row"}, {"type", "nominal"}, {"title", nullptr}, {"sort", {{"field", "order"}}}};
  return {{"width", 420},
          {"data", {{"values", values}}},
          {"layer",
           json::array({{{"mark", {{"type", "rule"}}},
                         {"encoding", {{"x", {{"field", "lo"}, {"type", "quantitative"}, {"title", "change vs full precision (%)"}}},
                                       {"x2", {{"field", "hi"}}},
                                       {"y", y}}}},
                        {{"mark", {{"type", "point"}, {"filled", true}, {"size", 60}}},
                         {"encoding", {{"x", {{"field", "change"}, {"type", "quantitative"}}},
                                       {"y", y},
                                       {"color", {{"field", "verdict"}, {"type", "nominal"}, {"title", "2% rule"},
                                                  {"scale", {{"domain", json::array({"within 2%", "outside 2%"})},
                                                             {"range", json::array({"#2ca02c", "#d62728"})}}}}},
                                       {"tooltip", json::array({axis_field("row", "nominal", "comparison"),
                                                                axis_field("change", "quantitative", "change %"),
                                                                axis_field("lo", "quantitative", "low %"),
                                                                axis_field("hi", "quantitative", "high %")})}}}},
                        {{"mark", {{"type", "rule"}, {"color", "#d62728"}, {"strokeDash", json::array({4, 4})}}},
                         {"encoding", {{"x", {{"datum", -2}}}}}}})}};
}

json correlation_spec(const ReportData& d) {
  json values = json::array();
  for (const auto& c : d.correlations) {
    // Scores relative to full precision (else to the first configuration), so tasks share an axis.
    double ref = c.points.empty() ? 0 : c.points.front().value;
    for (const auto& p : c.points)
      if (p.config == "fp32") ref = p.value;
    for (const auto& p : c.points)
      values.push_back({{"series", c.model + " · " + c.task + " · " + c.metric}, {"config", p.config},
                        {"perplexity", p.perplexity}, {"value", p.value},
                        {"relative", ref != 0 ? json(100.0 * p.value / ref) : json(p.value)}});
  }
  if (values.empty()) return nullptr;
  return {{"width", 560},
          {"height", 320},
          {"data", {{"values", values}}},
          {"mark", {{"type", "point"}, {"filled", true}, {"size", 70}}},
          {"encoding",
           {{"x", {{"field", "perplexity"}, {"type", "quantitative"}, {"scale", {{"zero", false}}}}},
            {"y", {{"field", "relative"}, {"type", "quantitative"}, {"scale", {{"zero", false}}},
                   {"title", "score (% of full precision)"}}},
            {"color", axis_field("series", "nominal", "task")},
            {"tooltip", json::array({axis_field("series", "nominal", "task"), axis_field("config", "nominal", "configuration"),
                                     axis_field("perplexity", "quantitative", "perplexity"),
                                     axis_field("value", "quantitative", "score")})}}}};
}

json layers_spec(const ReportData& d) {
  json values = json::array();
  std::map<std::string, int> order;
  for (const auto& l : d.layers) {
    const auto v = l.weight_rel_error ? l.weight_rel_error : l.output_error;
    if (!v || !(*v > 0)) continue;  // log color scale
    if (!order.count(l.layer)) order[l.layer] = static_cast<int>(order.size());
    values.push_back({{"row", l.model + " · " + l.config}, {"layer", l.layer}, {"idx", order[l.layer]},
                      {"error", *v}, {"kind", l.weight_rel_error ? "relative weight error" : "output error"}});
  }
  if (values.empty()) return nullptr;
  return {{"data", {{"values", values}}},
          {"width", std::max<int>(300, 14 * static_cast<int>(order.size()))},
          {"mark", "rect"},
          {"encoding",
           {{"x", {{"field", "layer"}, {"type", "nominal"}, {"sort", {{"field", "idx"}}}, {"title", "layer"}}},
            {"y", {{"field", "row"}, {"type", "nominal"}, {"title", nullptr}}},
            {"color", {{"field", "error"}, {"type", "quantitative"}, {"scale", {{"type", "log"}, {"scheme", "orangered"}}},
                       {"title", "error"}}},
            {"tooltip", json::array({axis_field("row", "nominal", "configuration"), axis_field("layer", "nominal", "layer"),
                                     axis_field("kind", "nominal", "measure"), axis_field("error", "quantitative", "error")})}}}};
}

const char* kStyle = R"CSS(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:0 1.2em 3em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #444;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td{white-space:pre-wrap}
.scroll{overflow-x:auto}
.chart{margin:.8em 0}
.statement{font-size:1.15em;font-weight:600}
.empty,.note{color:#666}
nav a{margin-right:1em}
)CSS";

}  // namespace

ChartLibraries load_chart_libraries(const fs::path& nm) {
  const std::string hint = "run scripts/install-deps.sh (it runs `npm ci` in the checkout) or point --node-modules at a "
                           "node_modules folder with vega, vega-lite and vega-embed";
  ChartLibraries libs;
  libs.vega = read_file(nm / "vega" / "build" / "vega.min.js", hint);
  libs.vega_lite = read_file(nm / "vega-lite" / "build" / "vega-lite.min.js", hint);
  libs.vega_embed = read_file(nm / "vega-embed" / "build" / "vega-embed.min.js", hint);
  libs.versions = "vega " + package_version(nm / "vega") + ", vega-lite " + package_version(nm / "vega-lite") +
                  ", vega-embed " + package_version(nm / "vega-embed");
  return libs;
}

json chart_specs(const ReportData& d) {
  json specs = json::object();
  auto put = [&](const char* id, json spec) {
    if (!spec.is_null()) specs[id] = std::move(spec);
  };
  put("chart-pareto-bytes", pareto_spec(d, false));
  put("chart-pareto-latency", pareto_spec(d, true));
  put("chart-degradation", degradation_spec(d));
  put("chart-correlation", correlation_spec(d));
  put("chart-layers", layers_spec(d));
  return specs;
}

std::string render_html(const ReportData& d, const ChartLibraries& libs) {
  const json specs = chart_specs(d);
  auto chart = [&](const char* id, const char* missing) {
    return specs.contains(id) ? fmt::format("<div class=\"chart\" id=\"{}\"></div>\n", id)
                              : fmt::format("<p class=\"empty\">{}</p>\n", html_escape(missing));
  };
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += "<title>" + html_escape("QEval report: " + d.title) + "</title>\n<style>" + kStyle + "</style>\n";
  h += "<script>" + js_for_script(libs.vega) + "</script>\n";
  h += "<script>" + js_for_script(libs.vega_lite) + "</script>\n";
  h += "<script>" + js_for_script(libs.vega_embed) + "</script>\n";
  h += "</head>\n<body>\n";
  h += "<h1>" + html_escape("QEval report: " + d.title) + "</h1>\n";
  h += "<p class=\"note\">Generated " + html_escape(d.generated_at) + " from " + html_escape(d.database) +
       ". Charts: " + html_escape(libs.versions) + " (inlined; the file works offline).</p>\n";
  h += "<nav><a href=\"#coverage\">Coverage</a><a href=\"#recommendations\">Recommendations</a><a href=\"#pareto\">Pareto</a>"
       "<a href=\"#degradation\">Degradation</a><a href=\"#correlation\">Perplexity vs benchmarks</a>"
       "<a href=\"#layers\">Layers</a><a href=\"#generations\">Generations</a><a href=\"#results\">All results</a>"
       "<a href=\"#machine\">Machine</a></nav>\n";

  h += "<section id=\"coverage\"><h2>Coverage level</h2>\n<p class=\"statement\">" + html_escape(d.coverage.statement) + "</p>\n";
  if (!d.coverage.covered.empty()) {
    Table t{{"dimension", "covered"}, {}};
    for (const auto& [k, v] : d.coverage.covered) t.rows.push_back({k, v});
    h += html_table(t);
  }
  if (!d.coverage.gaps.empty()) {
    h += "<p>To reach " + html_escape(d.coverage.next_level_name) + ", add:</p>\n<ul>\n";
    for (const auto& g : d.coverage.gaps) h += "<li>" + html_escape(g) + "</li>\n";
    h += "</ul>\n";
  }
  h += "</section>\n";

  h += "<section id=\"recommendations\"><h2>Recommendation per dimension</h2>\n<p class=\"note\">" +
       html_escape("The smallest configuration (model bytes) whose every task in the dimension is " + d.tolerance_text +
                   " (point estimate of the paired comparison).") + "</p>\n" + html_table(recommendation_table(d)) +
       "</section>\n";

  h += "<section id=\"pareto\"><h2>Quality vs size and latency (Pareto frontier)</h2>\n<p class=\"note\">Quality: the "
       "mean over tasks and perplexity texts of the primary metric relative to full precision (lower-is-better "
       "metrics inverted), in %. Frontier: configurations no other configuration of the same model beats on both axes.</p>\n";
  h += chart("chart-pareto-bytes", "No configuration has both a quality figure and a size.");
  h += chart("chart-pareto-latency", "No efficiency scenario in the results: no latency frontier.");
  h += html_table(configs_table(d)) + "</section>\n";

  h += "<section id=\"degradation\"><h2>Per-task degradation vs full precision</h2>\n<p class=\"note\">" +
       html_escape("Relative change of each task's primary metric with its 95% interval from the paired comparison "
                   "(McNemar for 0/1 scores, paired bootstrap otherwise); dashed line: the 2% tolerance.") + "</p>\n";
  h += chart("chart-degradation", "No task results for both full precision and a quantized configuration.");
  h += html_table(degradation_table(d)) + "</section>\n";

  h += "<section id=\"correlation\"><h2>Perplexity vs benchmark scores across configurations</h2>\n<p class=\"note\">Does "
       "perplexity predict the benchmark ranking? (a proxy check; few configurations make the coefficients noisy)</p>\n";
  h += chart("chart-correlation", "Needs a perplexity cell and a task for at least three configurations.");
  h += html_table(correlation_table(d)) + "</section>\n";

  h += "<section id=\"layers\"><h2>Per-layer statistics</h2>\n";
  h += chart("chart-layers", "No per-layer statistics recorded (plan: layer_stats).");
  h += "<details><summary>Table</summary>" + html_table(layers_table(d)) + "</details></section>\n";

  h += "<section id=\"generations\"><h2>Side-by-side generations</h2>\n<p class=\"note\">Greedy continuations of the same "
       "prompts by full precision and each quantized configuration (the qualitative check).</p>\n";
  if (d.generations.empty()) h += "<p class=\"empty\">No generations in the plan.</p>\n";
  for (const auto& g : d.generations) {
    Table t{{"configuration", "output"}, {}};
    for (const auto& o : g.outputs) t.rows.push_back({o.config, o.text});
    h += "<h3>" + html_escape(g.model) + ": <q>" + html_escape(g.prompt) + "</q></h3>\n" + html_table(t);
  }
  h += "</section>\n";

  h += "<section id=\"results\"><h2>All results</h2>\n<details><summary>" + std::to_string(d.results.size()) +
       " metric values</summary>" + html_table(results_table(d)) + "</details></section>\n";

  h += "<section id=\"machine\"><h2>Machine and runs</h2>\n" + html_table(machine_table(d));
  {
    Table t{{"run", "summary"}, {}};
    for (const auto& [k, v] : d.runs) t.rows.push_back({k, v});
    h += html_table(t);
  }
  h += "</section>\n";

  h += "<script type=\"application/json\" id=\"qeval-chart-specs\">" + json_for_script(specs) + "</script>\n";
  h += R"JS(<script>
(function () {
  var specs = JSON.parse(document.getElementById('qeval-chart-specs').textContent);
  Object.keys(specs).forEach(function (id) {
    var el = document.getElementById(id);
    vegaEmbed(el, specs[id], {actions: false, renderer: 'svg'}).catch(function (err) {
      el.textContent = 'Chart could not be drawn: ' + err;
      console.error(err);
    });
  });
})();
</script>
)JS";
  h += "</body>\n</html>\n";
  return h;
}

std::string render_markdown(const ReportData& d) {
  std::string m;
  m += "# QEval report: " + markdown_cell(d.title) + "\n\n";
  m += "Generated " + markdown_cell(d.generated_at) + " from `" + markdown_cell(d.database) + "`.\n\n";
  m += "## Coverage level\n\n**" + markdown_cell(d.coverage.statement) + "**\n\n";
  for (const auto& [k, v] : d.coverage.covered) m += "- " + markdown_cell(k) + ": " + markdown_cell(v) + "\n";
  if (!d.coverage.gaps.empty()) {
    m += "\nTo reach " + markdown_cell(d.coverage.next_level_name) + ", add:\n\n";
    for (const auto& g : d.coverage.gaps) m += "- " + markdown_cell(g) + "\n";
  }
  m += "\n## Recommendation per dimension\n\nThe smallest configuration whose every task in the dimension is " +
       markdown_cell(d.tolerance_text) + ".\n\n" + md_table(recommendation_table(d));
  m += "\n## Configurations (Pareto frontier)\n\n" + md_table(configs_table(d));
  m += "\n## Per-task degradation vs full precision\n\n" + md_table(degradation_table(d));
  m += "\n## Perplexity vs benchmark scores\n\n" + md_table(correlation_table(d));
  m += "\n## Side-by-side generations\n\n";
  if (d.generations.empty()) m += "No generations in the plan.\n";
  for (const auto& g : d.generations) {
    Table t{{"configuration", "output"}, {}};
    for (const auto& o : g.outputs) t.rows.push_back({o.config, o.text});
    m += "**" + markdown_cell(g.model) + "**: " + markdown_cell(g.prompt) + "\n\n" + md_table(t) + "\n";
  }
  m += "\n## Machine\n\n" + md_table(machine_table(d));
  return m;
}

}  // namespace qeval::report
