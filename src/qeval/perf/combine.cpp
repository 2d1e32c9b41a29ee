#include "qeval/perf/combine.h"

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "qeval/perf/bench.h"
#include "qeval/perf/stats.h"
#include "qeval/util/error.h"

namespace qeval::perf {
namespace {

// The per-case measurements that are pooled (each a Summary with its values).
constexpr const char* kMeasurements[] = {"prefill_seconds", "prefill_tokens_per_second", "ttft_seconds",
                                         "tpot_seconds",    "itl_seconds",               "decode_seconds",
                                         "decode_tokens_per_second", "total_seconds", "total_tokens_per_second"};

Summary summary_of(const nlohmann::json& j) {
  if (j.contains("values")) return summarize(j.at("values").get<std::vector<double>>());
  Summary s;
  s.n = j.value("n", int64_t{0});
  s.mean = j.value("mean", 0.0);
  s.median = j.value("median", 0.0);
  s.stdev = j.value("stdev", 0.0);
  s.min = j.value("min", 0.0);
  s.max = j.value("max", 0.0);
  s.p50 = j.value("p50", 0.0);
  s.p90 = j.value("p90", 0.0);
  s.p99 = j.value("p99", 0.0);
  return s;
}

// The fields that make two runs the same benchmark, as "name=value" pairs for the messages.
std::vector<std::pair<std::string, nlohmann::json>> identity(const nlohmann::json& r) {
  const nlohmann::json& c = r.at("config");
  std::vector<std::pair<std::string, nlohmann::json>> id = {
      {"model_name", r.at("model_name")},          {"spec", r.at("spec")},
      {"threads", r.at("threads")},                {"prompt lengths", c.at("prompt_lengths")},
      {"gen_tokens", c.at("gen_tokens")},          {"batch sizes", c.at("batch_sizes")},
      {"kv_cache_format", r.value("kv_cache_format", nlohmann::json())}};
  for (const nlohmann::json& k : r.at("cases"))
    id.emplace_back("case", nlohmann::json::array({k.at("prompt_tokens"), k.at("gen_tokens"), k.at("batch")}));
  return id;
}

nlohmann::json combined_case(const std::vector<const nlohmann::json*>& cases) {
  nlohmann::json out = *cases.front();
  int64_t reps = 0;
  for (const nlohmann::json* c : cases) reps += c->at("reps").get<int64_t>();
  out["reps"] = reps;
  for (const char* m : kMeasurements) {
    std::vector<double> all;
    for (const nlohmann::json* c : cases) {
      const nlohmann::json& s = c->at(m);
      if (s.value("n", int64_t{0}) == 0) continue;
      if (!s.contains("values")) throw std::runtime_error(std::string(m) + " has no per-repetition values");
      const auto v = s.at("values").get<std::vector<double>>();
      all.insert(all.end(), v.begin(), v.end());
    }
    out[m] = summarize(all).to_json();
  }
  // Resources: utilization averaged over the runs (equal weights: each run's own mean), memory
  // the largest any run reached, times summed.
  nlohmann::json& res = out["resources"];
  double util = 0, wall = 0, cpu = 0;
  int64_t rss_peak = 0, hwm = 0, samples = 0;
  for (const nlohmann::json* c : cases) {
    const nlohmann::json& r = c->at("resources");
    util += r.value("cpu_utilization", 0.0);
    wall += r.value("wall_seconds", 0.0);
    cpu += r.value("cpu_seconds", 0.0);
    rss_peak = std::max(rss_peak, r.value("rss_peak_bytes", int64_t{0}));
    hwm = std::max(hwm, r.value("vm_hwm_bytes", int64_t{0}));
    samples += r.value("samples", int64_t{0});
  }
  res["cpu_utilization"] = util / static_cast<double>(cases.size());
  res["wall_seconds"] = wall;
  res["cpu_seconds"] = cpu;
  res["rss_peak_bytes"] = rss_peak;
  res["vm_hwm_bytes"] = hwm;
  res["samples"] = samples;
  const bool all_energy = std::all_of(cases.begin(), cases.end(), [](const nlohmann::json* c) {
    return c->at("energy").value("available", false);
  });
  if (all_energy) {
    double joules = 0;
    for (const nlohmann::json* c : cases) joules += c->at("energy").value("joules", 0.0);
    out["energy"]["joules"] = joules;
    out["energy"]["watts"] = wall > 0 ? joules / wall : 0.0;
  } else if (out["energy"].value("available", false)) {
    out["energy"] = {{"available", false}, {"reason", "not measured in every combined run"}};
  }
  return out;
}

}  // namespace

nlohmann::json combine_bench_runs(const std::vector<std::pair<std::string, nlohmann::json>>& runs) {
  if (runs.size() < 2) fail("bench --combine: give at least two result files");
  const std::string& first_name = runs.front().first;
  std::vector<std::vector<std::pair<std::string, nlohmann::json>>> ids;
  for (const auto& [name, r] : runs) {
    try {
      ids.push_back(identity(r));
    } catch (const nlohmann::json::exception& e) {
      fail(fmt::format("bench --combine: {}: not a result of qeval bench ({})", name, e.what()));
    }
  }
  for (size_t i = 1; i < runs.size(); ++i) {
    const auto& a = ids.front();
    const auto& b = ids[i];
    if (a.size() != b.size())
      fail(fmt::format("bench --combine: {}: {} cases, {} has {}", runs[i].first, runs[i].second.at("cases").size(), first_name,
                       runs.front().second.at("cases").size()));
    for (size_t k = 0; k < a.size(); ++k)
      if (a[k].second != b[k].second)
        fail(fmt::format("bench --combine: {}: {} {} differs from {} ({}): not the same benchmark", runs[i].first, a[k].first,
                         b[k].second.dump(), first_name, a[k].second.dump()));
  }
  nlohmann::json out = runs.front().second;
  nlohmann::json cases = nlohmann::json::array();
  const size_t n_cases = out.at("cases").size();
  for (size_t c = 0; c < n_cases; ++c) {
    std::vector<const nlohmann::json*> same;
    for (const auto& run : runs) same.push_back(&run.second.at("cases").at(c));
    try {
      cases.push_back(combined_case(same));
    } catch (const std::exception& e) {
      fail(fmt::format("bench --combine: {}: {}; re-run with this version of qeval bench", runs.front().first, e.what()));
    }
  }
  out["cases"] = cases;
  nlohmann::json tests = nlohmann::json::array();
  for (const nlohmann::json& c : cases)
    for (const char* kind : {"prefill", "decode", "total"}) {
      const nlohmann::json& s = c.at(std::string(kind) + "_tokens_per_second");
      tests.push_back({{"test", c.at("tests").at(kind)}, {"tokens_per_second", s.value("median", 0.0)},
                       {"stdev", s.value("stdev", 0.0)}, {"n", s.value("n", int64_t{0})}});
    }
  out["tests"] = tests;
  int64_t peak = 0;
  nlohmann::json from = nlohmann::json::array();
  for (const auto& [name, r] : runs) {
    peak = std::max(peak, r.value("peak_rss_bytes", int64_t{0}));
    from.push_back(name);
  }
  out["peak_rss_bytes"] = peak;
  out["config"]["reps"] = cases.empty() ? 0 : cases.front().value("reps", 0);
  out["combined_from"] = from;
  return out;
}

std::string format_bench_table_json(const nlohmann::json& j) {
  BenchResult r;
  r.model_name = j.at("model_name").get<std::string>();
  r.spec = j.at("spec").get<std::string>();
  r.params = j.value("params", int64_t{0});
  r.model_bytes = j.value("model_bytes", int64_t{0});
  r.bits_per_weight = j.value("bits_per_weight", 0.0);
  r.linear_bits_per_weight = j.value("linear_bits_per_weight", 0.0);
  r.executed_linear_bits_per_weight = j.value("executed_linear_bits_per_weight", 0.0);
  r.bits_from_spec = j.value("sizes_from", std::string()).rfind("spec", 0) == 0;
  r.weights_execution = j.value("weights_execution", std::string());
  r.kernel_summary = j.value("kernel_summary", std::string());
  r.kv_cache_format = j.value("kv_cache_format", std::string("f32"));
  r.threads = j.value("threads", 0);
  r.peak_rss_bytes = j.value("peak_rss_bytes", int64_t{0});
  for (const nlohmann::json& k : j.at("cases")) {
    BenchCase c;
    c.prompt_tokens = k.at("prompt_tokens").get<int64_t>();
    c.gen_tokens = k.at("gen_tokens").get<int64_t>();
    c.batch = k.at("batch").get<int64_t>();
    c.reps = k.value("reps", 0);
    c.prefill_tokens_per_second = summary_of(k.at("prefill_tokens_per_second"));
    c.decode_tokens_per_second = summary_of(k.at("decode_tokens_per_second"));
    c.total_tokens_per_second = summary_of(k.at("total_tokens_per_second"));
    c.ttft_seconds = summary_of(k.at("ttft_seconds"));
    c.tpot_seconds = summary_of(k.at("tpot_seconds"));
    c.itl_seconds = summary_of(k.at("itl_seconds"));
    c.kv_cache_bytes = k.value("kv_cache_bytes", int64_t{0});
    c.resources.rss_peak_bytes = k.at("resources").value("rss_peak_bytes", int64_t{0});
    c.resources.cpu_utilization = k.at("resources").value("cpu_utilization", 0.0);
    c.energy = k.value("energy", nlohmann::json::object());
    r.cases.push_back(std::move(c));
  }
  std::string table = format_bench_table(r);
  if (j.contains("combined_from"))
    table += fmt::format("pooled over {} runs: {}\n", j.at("combined_from").size(), fmt::join(j.at("combined_from").get<std::vector<std::string>>(), ", "));
  return table;
}

}  // namespace qeval::perf
