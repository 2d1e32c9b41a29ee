#include "qeval/framework/analysis.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <numeric>
#include <set>

#include "qeval/eval/stats/paired.h"
#include "qeval/eval/stats/verdict.h"
#include "qeval/framework/evidence.h"

namespace qeval::framework {
using nlohmann::json;
namespace stats = eval::stats;

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n < 3 || y.size() != n) return std::nan("");
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (sxx <= 0 || syy <= 0) return std::nan("");
  return sxy / std::sqrt(sxx * syy);
}

namespace {
std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}
}  // namespace

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() < 3 || y.size() != x.size()) return std::nan("");
  return pearson(ranks(x), ranks(y));
}

namespace {

std::optional<double> finite(double v) { return std::isfinite(v) ? std::optional<double>(v) : std::nullopt; }
std::optional<double> finite(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return std::nullopt;
  return finite(j[key].get<double>());
}

std::string config_of(const store::CellRecord& c) { return c.params.value("configuration", c.spec); }

// Per-item scores of a metric, or empty when absent or incomplete.
std::vector<double> item_scores(const store::CellRecord& c, const std::string& metric) {
  std::vector<double> out;
  if (!c.items.contains(metric) || !c.items[metric].is_array()) return out;
  for (const auto& v : c.items[metric]) {
    if (!v.is_number()) return {};
    out.push_back(v.get<double>());
  }
  return out;
}

report::Degradation compare(const store::CellRecord& full, const store::CellRecord& q, const store::MetricRow& fm,
                            const store::MetricRow& qm, const AnalysisOptions& o) {
  report::Degradation d;
  d.model = q.model;
  d.task = q.task;
  d.metric = fm.name;
  d.dimension = q.dimension;
  d.sub_dimension = q.sub_dimension;
  d.config = config_of(q);
  d.full = fm.value;
  d.quantized = qm.value;
  d.n = qm.n;
  stats::ToleranceRule rule;
  rule.tolerance = o.tolerance;
  rule.higher_is_better = fm.higher_is_better;
  const std::vector<double> a = item_scores(full, fm.name), b = item_scores(q, fm.name);
  const bool same_docs = full.items.contains("_doc") && q.items.contains("_doc") && full.items["_doc"] == q.items["_doc"];
  stats::ToleranceVerdict v;
  if (!a.empty() && a.size() == b.size() && same_docs) {
    // Per-item scores whose mean is the metric: paired tests on the same docs.
    double mean_a = std::accumulate(a.begin(), a.end(), 0.0) / a.size();
    const bool is_mean = std::abs(mean_a - fm.value) <= 1e-9 * std::max(1.0, std::abs(fm.value));
    const bool binary = std::all_of(a.begin(), a.end(), [](double x) { return x == 0 || x == 1; }) &&
                        std::all_of(b.begin(), b.end(), [](double x) { return x == 0 || x == 1; });
    if (is_mean && binary) {
      std::vector<int> ia(a.begin(), a.end()), ib(b.begin(), b.end());
      const auto m = stats::mcnemar(ia, ib);
      v = stats::judge_tolerance(m, rule);
      d.test = "McNemar";
    } else if (is_mean) {
      stats::BootstrapOptions bo;
      bo.samples = o.bootstrap_samples;
      bo.seed = o.seed;
      const auto pb = stats::paired_bootstrap_mean(a, b, bo);
      v = stats::judge_tolerance(pb, rule);
      d.test = "paired bootstrap";
    }
  }
  if (d.test.empty()) v = stats::judge_tolerance(fm.value, qm.value, std::nan(""), std::nan(""), 1.0, rule);
  d.relative_change = -v.relative_drop;
  if (std::isfinite(v.drop_ci_low) && std::isfinite(v.drop_ci_high)) {
    d.ci_low = -v.drop_ci_high;
    d.ci_high = -v.drop_ci_low;
  }
  if (!d.test.empty()) d.p_value = v.p_value;
  d.within = v.within;
  d.significant = v.significant;
  d.conclusive = v.conclusive;
  return d;
}

}  // namespace

report::ReportData analyze(const store::Store& st, const CoverageRules& rules, const AnalysisOptions& o) {
  report::ReportData d;
  d.database = st.path().string();
  d.generated_at = store::now_iso8601();
  d.tolerance_text = fmt::format("within {:g}% of full precision", 100 * o.tolerance);
  const auto runs = st.runs();
  std::set<std::string> plan_names;
  for (const auto& r : runs) {
    plan_names.insert(r.plan_name);
    d.runs.emplace_back(fmt::format("run {}", r.id),
                        fmt::format("plan {} ({}), {} → {}, {}, qeval {} ({})", r.plan_name, r.plan_path, r.started_at,
                                    r.ended_at.empty() ? "interrupted" : r.ended_at, r.status, r.qeval_version, r.git_commit));
    d.machine = r.machine;
  }
  for (const auto& p : plan_names) d.title += (d.title.empty() ? "" : ", ") + p;
  if (d.title.empty()) d.title = st.path().filename().string();

  store::CellFilter all_cells;
  all_cells.with_items = true;
  const auto cells = st.cells(all_cells);
  // Configurations per model, in the order they were first recorded.
  std::vector<std::pair<std::string, std::string>> order;  // (model, config)
  std::map<std::pair<std::string, std::string>, report::ConfigPoint> points;
  auto point = [&](const store::CellRecord& c) -> report::ConfigPoint& {
    const auto key = std::make_pair(c.model, config_of(c));
    if (!points.count(key)) {
      order.push_back(key);
      report::ConfigPoint p;
      p.model = c.model;
      p.config = key.second;
      p.spec = c.spec;
      points[key] = p;
    }
    return points[key];
  };
  std::map<std::string, const store::CellRecord*> fp_task, fp_ppl;  // model|task -> fp cell
  for (const auto& c : cells) {
    auto& p = point(c);
    for (const auto& m : c.metrics)
      d.results.push_back({c.model, config_of(c), c.kind, c.task, m.name, m.value, m.stderr_value, m.n});
    if (c.kind == "quantize") {
      if (const auto* m = c.metric("memory.model_bytes")) p.model_bytes = m->value;
      if (const auto* m = c.metric("bits_per_weight")) p.bits_per_weight = m->value;
      if (c.extra.contains("layers") && config_of(c) != "fp32")
        for (const auto& l : c.extra["layers"]) {
          report::LayerStat s;
          s.model = c.model;
          s.config = config_of(c);
          s.layer = l.value("name", "");
          s.weight_rel_error = finite(l, "weight_rel_error");
          s.output_error = finite(l, "output_error");
          if (l.contains("weight_before")) {
            s.weight_kurtosis = finite(l["weight_before"], "excess_kurtosis");
            s.max_median_ratio = finite(l["weight_before"], "max_median_ratio");
          }
          d.layers.push_back(s);
        }
    } else if (c.kind == "bench") {
      if (!p.latency_ms)
        if (const auto* m = c.metric("latency.tpot_ms")) p.latency_ms = m->value;
      if (!p.decode_tps)
        if (const auto* m = c.metric("throughput.decode_tps")) p.decode_tps = m->value;
    } else if (c.kind == "perplexity") {
      if (!p.perplexity)
        if (const auto* m = c.metric("perplexity")) p.perplexity = m->value;
      if (c.spec == "fp32" && config_of(c) == "fp32") fp_ppl[c.model + "|" + c.task] = &c;
    } else if (c.kind == "kld") {
      if (!p.kld)
        if (const auto* m = c.metric("kld")) p.kld = m->value;
    } else if (c.kind == "task") {
      if (config_of(c) == "fp32") fp_task[c.model + "|" + c.task] = &c;
    }
  }

  // Paired comparisons and relative quality.
  std::map<std::pair<std::string, std::string>, std::vector<double>> rel;  // config -> relative scores (%)
  for (const auto& c : cells) {
    if (config_of(c) == "fp32" || c.metrics.empty()) continue;
    const store::CellRecord* f = nullptr;
    if (c.kind == "task" && fp_task.count(c.model + "|" + c.task)) f = fp_task[c.model + "|" + c.task];
    if (c.kind == "perplexity" && fp_ppl.count(c.model + "|" + c.task)) f = fp_ppl[c.model + "|" + c.task];
    if (f == nullptr || f->metrics.empty()) continue;
    const store::MetricRow& fm = f->metrics.front();  // the task's primary metric
    const store::MetricRow* qm = c.metric(fm.name);
    if (qm == nullptr || !std::isfinite(fm.value) || !std::isfinite(qm->value)) continue;
    report::Degradation deg = compare(*f, c, fm, *qm, o);
    if (c.kind == "perplexity") deg.task = "perplexity " + c.task;
    d.degradations.push_back(deg);
    // Perplexity counts like a task: on small models the benchmarks sit near chance and
    // perplexity is what separates the configurations.
    if (fm.value != 0 && qm->value != 0)
      rel[{c.model, config_of(c)}].push_back(100.0 * (fm.higher_is_better ? qm->value / fm.value : fm.value / qm->value));
  }
  for (const auto& c : cells)
    if ((c.kind == "task" || c.kind == "perplexity") && config_of(c) == "fp32") rel[{c.model, "fp32"}].push_back(100.0);
  for (auto& [key, p] : points) {
    {
      const auto it = rel.find(key);
      if (it != rel.end() && !it->second.empty()) {
        p.quality = std::accumulate(it->second.begin(), it->second.end(), 0.0) / it->second.size();
        p.quality_tasks = static_cast<int64_t>(it->second.size());
      }
    }
  }
  // Pareto frontiers per model (smaller x and higher quality are better).
  for (const bool by_latency : {false, true})
    for (auto& [key, p] : points) {
      const auto x = by_latency ? p.latency_ms : p.model_bytes;
      if (!x || !p.quality) continue;
      bool dominated = false;
      for (const auto& [k2, q] : points) {
        const auto x2 = by_latency ? q.latency_ms : q.model_bytes;
        if (k2 == key || q.model != p.model || !x2 || !q.quality) continue;
        if (*x2 <= *x && *q.quality >= *p.quality && (*x2 < *x || *q.quality > *p.quality)) dominated = true;
      }
      (by_latency ? p.frontier_latency : p.frontier_bytes) = !dominated;
    }
  for (const auto& k : order) d.configs.push_back(points[k]);

  // Perplexity vs benchmark correlations across configurations.
  std::map<std::string, std::string> first_ppl_text;  // model -> perplexity cell name
  for (const auto& c : cells)
    if (c.kind == "perplexity" && !first_ppl_text.count(c.model)) first_ppl_text[c.model] = c.task;
  std::map<std::pair<std::string, std::string>, double> ppl_of;
  for (const auto& c : cells)
    if (c.kind == "perplexity" && first_ppl_text[c.model] == c.task)
      if (const auto* m = c.metric("perplexity")) ppl_of[{c.model, config_of(c)}] = m->value;
  std::map<std::pair<std::string, std::string>, report::Correlation> corr;
  for (const auto& c : cells) {
    if (c.kind != "task" || c.metrics.empty() || !ppl_of.count({c.model, config_of(c)})) continue;
    auto& r = corr[{c.model, c.task}];
    r.model = c.model;
    r.task = c.task;
    r.metric = c.metrics.front().name;
    r.text = first_ppl_text[c.model];
    r.points.push_back({config_of(c), ppl_of[{c.model, config_of(c)}], c.metrics.front().value});
  }
  for (auto& [k, r] : corr) {
    std::vector<double> x, y;
    for (const auto& p : r.points) x.push_back(p.perplexity), y.push_back(p.value);
    r.n = static_cast<int64_t>(x.size());
    r.pearson = finite(pearson(x, y));
    r.spearman = finite(spearman(x, y));
    if (r.n >= 3) d.correlations.push_back(r);
  }

  // Generations, full precision first.
  std::map<std::string, std::map<std::string, std::vector<report::Generation::Output>>> gens;  // model -> prompt -> outputs
  std::map<std::string, std::vector<std::string>> prompt_order;
  for (const auto& c : cells) {
    if (c.kind != "generations" || !c.extra.contains("generations")) continue;
    for (const auto& g : c.extra["generations"]) {
      const std::string prompt = g.value("prompt", "");
      auto& outs = gens[c.model][prompt];
      if (outs.empty()) prompt_order[c.model].push_back(prompt);
      report::Generation::Output out{config_of(c), g.value("output", "")};
      if (config_of(c) == "fp32")
        outs.insert(outs.begin(), out);
      else
        outs.push_back(out);
    }
  }
  for (const auto& [model, prompts] : prompt_order)
    for (const auto& p : prompts) d.generations.push_back({model, p, gens[model][p]});

  // Recommendation per dimension: the smallest configuration whose every comparison in the
  // dimension is within the tolerance.
  std::map<std::string, std::set<std::string>> dims_by_model;
  for (const auto& x : d.degradations) {
    dims_by_model[x.model].insert(x.dimension + "/" + short_sub_dimension(x.sub_dimension));
    dims_by_model[x.model].insert("all");
  }
  for (const auto& [model, dims] : dims_by_model)
    for (const auto& dim : dims) {
      std::vector<const report::ConfigPoint*> cands;
      for (const auto& p : d.configs)
        if (p.model == model && p.config != "fp32" && p.model_bytes) cands.push_back(&p);
      std::sort(cands.begin(), cands.end(), [](auto* a, auto* b) { return *a->model_bytes < *b->model_bytes; });
      report::Recommendation r;
      r.model = model;
      r.dimension = dim == "all" ? "every measured quality dimension" : dim;
      for (const auto* p : cands) {
        int n = 0;
        bool ok = true;
        for (const auto& x : d.degradations)
          if (x.model == model && x.config == p->config &&
              (dim == "all" || x.dimension + "/" + short_sub_dimension(x.sub_dimension) == dim)) {
            ++n;
            ok = ok && x.within;
          }
        if (n > 0 && ok) {
          r.config = p->config;
          r.model_bytes = p->model_bytes;
          r.why = fmt::format("{} comparison{} {}", n, n == 1 ? "" : "s", d.tolerance_text);
          break;
        }
      }
      if (r.config.empty()) {
        const auto fp = points.find({model, "fp32"});
        if (fp != points.end()) r.model_bytes = fp->second.model_bytes;
        r.why = "no quantized configuration is " + d.tolerance_text + " on every comparison";
      }
      d.recommendations.push_back(r);
    }

  // Coverage.
  const CoverageResult cov = classify(evidence_from_store(st), rules);
  d.coverage.statement = cov.statement;
  d.coverage.level_name = cov.level_name;
  d.coverage.next_level_name = cov.next_level_name;
  for (const auto& g : cov.gaps) d.coverage.gaps.push_back(g.req->need);
  auto list = [&](const std::string& fact) {
    std::string s;
    if (const auto it = cov.facts.find(fact); it != cov.facts.end())
      for (const auto& v : it->second) s += (s.empty() ? "" : ", ") + v;
    return s.empty() ? std::string("–") : s;
  };
  d.coverage.covered = {{"quality (knowledge & capacity)", list("quality.sub_dimensions")},
                        {"alignment", list("alignment.sub_dimensions")},
                        {"robustness", list("robustness.sub_dimensions")},
                        {"efficiency", list("efficiency.measures")},
                        {"deployment", list("deployment.aspects")},
                        {"weight bit-widths", list("variation.weight_bits")},
                        {"architectures", list("variation.architectures")}};
  return d;
}

}  // namespace qeval::framework
