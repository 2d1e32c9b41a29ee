// qeval results DB [--model M] [--spec S] [--task T] [--kind K] [--json FILE|-] [--csv FILE|-]
// Lists the metrics of a results database, filtered; exports them as JSON (with provenance) or
// CSV (one row per metric).
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "qeval/store/store.h"
#include "qeval/util/atomic_file.h"

namespace qeval::cli {
namespace {

struct ResultsArgs {
  std::string db, model, spec, task, kind, json_out, csv_out;
  bool items = false;
};

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string num(double v) {
  if (!std::isfinite(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}
std::string num(const std::optional<double>& v) { return v ? num(*v) : std::string(); }

nlohmann::ordered_json cell_json(const store::CellRecord& c, bool items) {
  nlohmann::ordered_json j;
  j["key"] = c.key;
  j["run_id"] = c.run_id;
  j["kind"] = c.kind;
  j["model"] = c.model;
  j["model_path"] = c.model_path;
  j["model_sha256"] = c.model_hash;
  j["architecture"] = c.architecture;
  j["spec"] = c.spec;
  j["calib_samples"] = c.calib_samples;
  j["seed"] = c.seed;
  j["task"] = c.task;
  j["task_sha256"] = c.task_hash;
  j["dataset_sha256"] = c.dataset_hash;
  j["dimension"] = c.dimension;
  j["sub_dimension"] = c.sub_dimension;
  j["params"] = c.params;
  j["qeval_version"] = c.qeval_version;
  j["git_commit"] = c.git_commit;
  j["machine"] = c.machine;
  j["started_at"] = c.started_at;
  j["ended_at"] = c.ended_at;
  j["duration_s"] = c.duration_s;
  nlohmann::ordered_json ms = nlohmann::ordered_json::object();
  for (const auto& m : c.metrics) {
    auto opt = [](const std::optional<double>& v) { return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr); };
    ms[m.name] = {{"value", std::isfinite(m.value) ? nlohmann::ordered_json(m.value) : nlohmann::ordered_json(nullptr)},
                  {"stderr", opt(m.stderr_value)}, {"n", m.n}, {"ci_low", opt(m.ci_low)}, {"ci_high", opt(m.ci_high)},
                  {"higher_is_better", m.higher_is_better}, {"stderr_method", m.stderr_method}};
  }
  j["metrics"] = ms;
  j["extra"] = c.extra;
  if (items) j["items"] = c.items;
  return j;
}

void emit(const std::string& out, const std::string& text) {
  if (out == "-")
    std::fwrite(text.data(), 1, text.size(), stdout);
  else
    write_file_atomic(out, text);
}

int run(const ResultsArgs& a) {
  auto st = store::Store::open_existing(a.db);
  store::CellFilter f{a.model, a.spec, a.task, a.kind, a.items};
  const auto cells = st->cells(f);
  if (!a.json_out.empty()) {
    nlohmann::ordered_json j;
    j["database"] = a.db;
    nlohmann::ordered_json runs = nlohmann::ordered_json::array();
    for (const auto& r : st->runs())
      runs.push_back({{"id", r.id}, {"plan", r.plan_name}, {"plan_path", r.plan_path}, {"plan_sha256", r.plan_hash},
                      {"command", r.command}, {"qeval_version", r.qeval_version}, {"git_commit", r.git_commit},
                      {"started_at", r.started_at}, {"ended_at", r.ended_at}, {"status", r.status}, {"machine", r.machine}});
    j["runs"] = runs;
    nlohmann::ordered_json cs = nlohmann::ordered_json::array();
    for (const auto& c : cells) cs.push_back(cell_json(c, a.items));
    j["cells"] = cs;
    emit(a.json_out, j.dump(2) + "\n");
  }
  if (!a.csv_out.empty()) {
    std::string s = "model,spec,calib_samples,seed,kind,task,dimension,sub_dimension,metric,value,stderr,n,ci_low,ci_high,"
                    "higher_is_better,model_sha256,task_sha256,dataset_sha256,git_commit,started_at,ended_at\n";
    for (const auto& c : cells)
      for (const auto& m : c.metrics) {
        const std::string fields[] = {c.model, c.spec, std::to_string(c.calib_samples), std::to_string(c.seed), c.kind,
                                      c.task, c.dimension, c.sub_dimension, m.name, num(m.value), num(m.stderr_value),
                                      std::to_string(m.n), num(m.ci_low), num(m.ci_high), m.higher_is_better ? "1" : "0",
                                      c.model_hash, c.task_hash, c.dataset_hash, c.git_commit, c.started_at, c.ended_at};
        bool first = true;
        for (const auto& x : fields) {
          s += (first ? "" : ",") + csv_field(x);
          first = false;
        }
        s += "\n";
      }
    emit(a.csv_out, s);
  }
  if (a.json_out.empty() && a.csv_out.empty()) {
    std::printf("| %-14s | %-24s | %-11s | %-20s | %-26s | %12s | %10s | %7s |\n", "model", "configuration", "kind", "task",
                "metric", "value", "stderr", "n");
    std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(16, '-').c_str(), std::string(26, '-').c_str(),
                std::string(13, '-').c_str(), std::string(22, '-').c_str(), std::string(28, '-').c_str(),
                std::string(14, '-').c_str(), std::string(12, '-').c_str(), std::string(9, '-').c_str());
    for (const auto& c : cells)
      for (const auto& m : c.metrics)
        std::printf("| %-14s | %-24s | %-11s | %-20s | %-26s | %12.6g | %10s | %7lld |\n", c.model.c_str(),
                    c.params.value("configuration", c.spec).c_str(), c.kind.c_str(), c.task.c_str(), m.name.c_str(), m.value,
                    m.stderr_value ? num(*m.stderr_value).c_str() : "-", static_cast<long long>(m.n));
    std::fprintf(stderr, "%zu cells\n", cells.size());
  }
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<ResultsArgs>();
  app.add_option("db", a->db, "results database")->required();
  app.add_option("--model", a->model, "only this model (plan name)");
  app.add_option("--spec", a->spec, "only this spec (canonical string)");
  app.add_option("--task", a->task, "only this task / text / scenario name");
  app.add_option("--kind", a->kind, "only this kind: quantize, task, perplexity, kld, bench, generations");
  app.add_option("--json", a->json_out, "export as JSON to FILE ('-' for stdout)");
  app.add_option("--csv", a->csv_out, "export as CSV to FILE ('-' for stdout), one row per metric");
  app.add_flag("--items", a->items, "include per-item scores in the JSON export");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("results", "List, filter and export the results in a results database", setup);

}  // namespace
}  // namespace qeval::cli
