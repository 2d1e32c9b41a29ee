#include "qeval/framework/runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "qeval/build_info.h"
#include "qeval/engine/engine.h"
#include "qeval/engine/generate.h"
#include "qeval/engine/perplexity.h"
#include "qeval/eval/engine_model.h"
#include "qeval/eval/kld.h"
#include "qeval/eval/task/evaluate.h"
#include "qeval/eval/task/task.h"
#include "qeval/framework/paths.h"
#include "qeval/io/model.h"
#include "qeval/perf/bench.h"
#include "qeval/perf/machine.h"
#include "qeval/quant/calibration.h"
#include "qeval/quant/export.h"
#include "qeval/quant/in_memory.h"
#include "qeval/quant/layer_stats.h"
#include "qeval/store/sha256.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"

namespace qeval::framework {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

std::string short_hash(const std::string& h) { return h.substr(0, 16); }

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A task file and the files it includes ("include: _x.yaml", same folder), hashed together.
std::string task_file_hash(const fs::path& file) {
  std::string bytes = read_text_file(file.string());
  std::string all = bytes;
  std::istringstream lines(bytes);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("include:", 0) != 0) continue;
    std::string inc = line.substr(8);
    inc.erase(0, inc.find_first_not_of(" \t\"'"));
    inc.erase(inc.find_last_not_of(" \t\r\"'") + 1);
    if (!inc.empty()) all += '\0' + read_text_file((file.parent_path() / inc).string());
  }
  return store::sha256_hex(all);
}

std::string generations_hash(const PlanGenerations& g) {
  std::string s = std::to_string(g.max_tokens);
  for (const auto& p : g.prompts) s += '\0' + p;
  return store::sha256_hex(s);
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(std::llround(s));
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{}:{:02}", t / 60, t % 60);
}

store::MetricRow metric_row(const std::string& name, double value, std::optional<double> se, int64_t n,
                            bool higher_is_better, const std::string& method) {
  store::MetricRow r;
  r.name = name;
  r.value = value;
  r.stderr_value = se;
  r.n = n;
  r.higher_is_better = higher_is_better;
  r.stderr_method = method;
  if (se && std::isfinite(*se)) {
    r.ci_low = value - 1.959963984540054 * *se;
    r.ci_high = value + 1.959963984540054 * *se;
  }
  return r;
}

// The model's weights as this configuration stores them: quantized linears at their bits per
// weight (codes, scales and zero-points), every other tensor as in the source file.
int64_t configuration_model_bytes(const Model& model, const quant::QuantizedModelResult* q) {
  double bytes = 0;
  std::set<std::string> quantized;
  if (q)
    for (const auto& l : q->linears) quantized.insert(l.id.name() + ".weight");
  for (const auto& [name, t] : model.tensors) {
    if (model.is_alias(name) || quantized.count(name)) continue;
    bytes += static_cast<double>(t.nbytes);
  }
  if (q) bytes += static_cast<double>(q->quantized_params) * q->bits_per_weight / 8.0;
  return static_cast<int64_t>(std::llround(bytes));
}

struct Context {
  const Plan& plan;
  store::Store& store;
  const RunOptions& opts;
  json machine;
  int threads = 0;
  fs::path data_root;
  std::unique_ptr<eval::task::TaskRegistry> registry;
  std::map<std::string, std::string> task_hashes, file_hashes;
  std::vector<std::string> model_hashes;
  int64_t run_id = 0;
  void log(const std::string& s) const {
    if (opts.log) opts.log(s);
  }
};

// What one (model, configuration) needs while its cells run.
struct Loaded {
  const PlanModel* pm = nullptr;
  std::string hash;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Engine> reference;   // fp32 engine for KL divergence (lazily)
  json reference_layer_stats;          // weight statistics of the float model (lazily)
};

store::CellRecord new_cell(const Context& cx, const PlannedCell& pc, const Loaded& L, const Configuration& cfg) {
  store::CellRecord c;
  c.key = pc.key;
  c.run_id = cx.run_id;
  c.kind = pc.kind;
  c.model = L.pm->name;
  c.model_path = L.pm->path;
  c.model_hash = L.hash;
  c.architecture = L.model->config.architecture;
  c.spec = cfg.spec;
  c.calib_samples = cfg.calib_samples;
  c.seed = cfg.seed;
  c.task = pc.name;
  c.qeval_version = build::kVersion;
  c.git_commit = build::git_commit();
  c.machine = cx.machine;
  c.params["configuration"] = cfg.label();
  c.params["origin"] = cfg.origin;
  return c;
}

void run_task_cell(const Context& cx, store::CellRecord& c, const PlanTask& t, Engine& engine, const Tokenizer& tok) {
  namespace task = eval::task;
  task::TaskConfig tc = cx.registry->load(t.name);
  if (c.seed >= 0) tc.fewshot_seed = static_cast<uint64_t>(c.seed);
  task::DataOptions dopt;
  if (t.limit) dopt.limit = *t.limit;
  const task::TaskData data = task::load_task_data(tc, cx.data_root, dopt);
  std::set<std::string> files;
  for (const auto& s : data.sources) files.insert(s.file);
  for (const auto& s : data.fewshot_sources) files.insert(s.file);
  std::string listing;
  for (const auto& f : files) listing += f + '\0' + cx.store.file_hash(f) + '\n';
  c.dataset_hash = store::sha256_hex(listing);
  c.task_hash = cx.task_hashes.at(t.name);
  eval::EngineLanguageModel lm(engine, tok);
  task::EvalOptions eo;
  if (t.num_fewshot) eo.num_fewshot = *t.num_fewshot;
  const task::TaskResult r = task::evaluate(tc, data, lm, eo);
  c.dimension = r.dimension;
  c.sub_dimension = r.sub_dimension;
  c.params["limit"] = t.limit ? json(*t.limit) : json(nullptr);
  c.params["num_fewshot"] = r.num_fewshot;
  c.params["output_type"] = task::output_type_name(r.output_type);
  c.params["n_docs"] = r.n_docs;
  c.params["dataset_files"] = std::vector<std::string>(files.begin(), files.end());
  for (const auto& m : r.metrics)
    c.metrics.push_back(metric_row(m.name, m.value, std::isfinite(m.stderr_value) ? std::optional<double>(m.stderr_value) : std::nullopt,
                                   m.n, m.higher_is_better, m.stderr_method));
  // Per-item scores (doc order) for paired comparisons between configurations.
  std::set<std::string> names;
  for (const auto& d : r.docs)
    for (const auto& [k, v] : d.scores) names.insert(k);
  for (const auto& n : names) {
    json scores = json::array();
    for (const auto& d : r.docs) {
      const auto it = d.scores.find(n);
      scores.push_back(it != d.scores.end() && std::isfinite(it->second) ? json(it->second) : json(nullptr));
    }
    c.items[n] = scores;
  }
  json docs = json::array();
  for (const auto& d : r.docs) docs.push_back(d.doc);
  c.items["_doc"] = docs;
  if (!r.groups.empty()) {
    json g = json::object();
    for (const auto& [name, ms] : r.groups)
      for (const auto& m : ms) g[name][m.name] = {{"value", m.value}, {"stderr", m.stderr_value}, {"n", m.n}};
    c.extra["groups"] = g;
  }
  if (r.skipped > 0) c.extra["skipped"] = r.skipped;
}

void run_perplexity_cell(const Context& cx, store::CellRecord& c, const PlanPerplexity& p, Engine& engine,
                         const Tokenizer& tok) {
  const std::string text = read_text_file(p.file);
  c.dataset_hash = cx.file_hashes.at(p.file);
  c.dimension = "quality";
  c.sub_dimension = "knowledge_capacity/language_modeling";
  PerplexityOptions o;
  o.method = parse_perplexity_method(p.method);
  o.n_ctx = p.ctx;
  o.max_chunks = p.chunks;
  const PerplexityResult r = perplexity(engine, tok, text, o);
  c.params["file"] = p.file;
  c.params["ctx"] = p.ctx;
  c.params["method"] = p.method;
  c.params["chunks"] = r.chunks;
  c.metrics.push_back(metric_row("perplexity", r.ppl, r.ppl_err > 0 ? std::optional<double>(r.ppl_err) : std::nullopt,
                                 r.scored_tokens, false, r.ppl_err > 0 ? "llamacpp" : ""));
  if (o.method == PerplexityMethod::Rolling) {
    c.metrics.push_back(metric_row("word_perplexity", r.word_ppl, std::nullopt, r.words, false, ""));
    c.metrics.push_back(metric_row("byte_perplexity", r.byte_ppl, std::nullopt, r.bytes, false, ""));
    c.metrics.push_back(metric_row("bits_per_byte", r.bits_per_byte, std::nullopt, r.bytes, false, ""));
  }
}

void run_kld_cell(const Context& cx, store::CellRecord& c, const PlanKld& k, Engine& reference, Engine& engine,
                  const Tokenizer& tok) {
  const std::string text = read_text_file(k.file);
  c.dataset_hash = cx.file_hashes.at(k.file);
  c.dimension = "quality";
  c.sub_dimension = "knowledge_capacity/language_modeling";
  KldOptions o;
  o.n_ctx = k.ctx;
  o.max_chunks = k.chunks;
  const KldResult r = kl_divergence(&reference, engine, tok, text, o);
  c.params["file"] = k.file;
  c.params["ctx"] = k.ctx;
  c.params["chunks"] = r.chunks;
  const int64_t n = r.scored_tokens;
  c.metrics.push_back(metric_row("kld", r.kld, r.kld_err, n, false, "mean"));
  c.metrics.push_back(metric_row("same_top", r.same_top, r.same_top_err, n, true, "mean"));
  c.metrics.push_back(metric_row("ppl_ratio", r.ppl_ratio, r.ppl_ratio_err, n, false, "delta"));
  c.metrics.push_back(metric_row("ln_ppl_ratio", r.ln_ratio, r.ln_ratio_err, n, false, "mean"));
  c.metrics.push_back(metric_row("rms_dp", r.dp_rms, r.dp_rms_err, n, false, "delta"));
  c.metrics.push_back(metric_row("ppl", r.ppl_q, r.ppl_q_err, n, false, "llamacpp"));
  c.metrics.push_back(metric_row("ppl_base", r.ppl_base, r.ppl_base_err, n, false, "llamacpp"));
  json pct = json::object();
  for (const auto& [q, v] : r.kld_percentiles) pct[q] = v;
  c.extra["kld_percentiles"] = pct;
}

void run_generations_cell(store::CellRecord& c, const PlanGenerations& g, Engine& engine, const Tokenizer& tok) {
  json outs = json::array();
  for (const auto& prompt : g.prompts) {
    const std::vector<TokenId> ids = tok.encode(prompt);
    GenerationOptions o;
    o.max_tokens = std::min<int64_t>(g.max_tokens, std::max<int64_t>(1, engine.context_length() - static_cast<int64_t>(ids.size())));
    const GenerationResult r = generate(engine, &tok, ids, o);
    outs.push_back({{"prompt", prompt}, {"output", r.text}, {"tokens", r.tokens.size()},
                    {"stop_reason", std::string(stop_reason_name(r.stop_reason))}});
  }
  c.params["max_tokens"] = g.max_tokens;
  c.extra["generations"] = outs;
}

void run_bench_cell(const Context& cx, store::CellRecord& c, const PlanScenario& s, const Configuration& cfg) {
  perf::BenchConfig bc;
  bc.prompt_lengths = {s.prompt};
  bc.gen_tokens = s.gen;
  bc.batch_sizes = {s.batch};
  bc.reps = s.reps;
  bc.warmup = s.warmup;
  bc.threads = cx.threads;
  bc.spec = cfg.spec;
  if (cfg.calib_samples > 0) {
    bc.calib_file = cx.plan.calibration.file;
    bc.calib_samples = cfg.calib_samples;
    bc.calib_seqlen = cx.plan.calibration.seqlen;
  }
  if (cfg.seed >= 0) bc.calib_seed = static_cast<uint64_t>(cfg.seed);
  const perf::BenchResult r = perf::run_bench(c.model_path, bc);
  if (r.cases.empty()) throw Error("bench: no result for scenario " + s.name);
  const perf::BenchCase& bcase = r.cases.front();
  c.dimension = "efficiency";
  c.params["prompt"] = s.prompt;
  c.params["gen"] = s.gen;
  c.params["batch"] = s.batch;
  c.params["reps"] = s.reps;
  c.params["warmup"] = s.warmup;
  c.params["threads"] = r.threads;
  // Medians over the repetitions; the interval is their min..max.
  auto add = [&](const std::string& name, const perf::Summary& sm, double scale, bool hib) {
    if (sm.n == 0) return;
    store::MetricRow m = metric_row(name, sm.median * scale, std::nullopt, sm.n, hib, "median, min-max over repetitions");
    m.ci_low = sm.min * scale;
    m.ci_high = sm.max * scale;
    c.metrics.push_back(m);
  };
  add("latency.ttft_ms", bcase.ttft_seconds, 1e3, false);
  add("latency.tpot_ms", bcase.tpot_seconds, 1e3, false);
  add("throughput.prefill_tps", bcase.prefill_tokens_per_second, 1, true);
  add("throughput.decode_tps", bcase.decode_tokens_per_second, 1, true);
  c.metrics.push_back(metric_row("memory.peak_rss_bytes", static_cast<double>(bcase.resources.rss_peak_bytes), std::nullopt,
                                 bcase.resources.samples, false, ""));
  c.metrics.push_back(metric_row("memory.model_bytes", static_cast<double>(r.model_bytes), std::nullopt, 1, false, ""));
  c.metrics.push_back(metric_row("memory.kv_cache_bytes", static_cast<double>(bcase.kv_cache_bytes), std::nullopt, 1, false, ""));
  c.metrics.push_back(metric_row("cpu_load.utilization", bcase.resources.cpu_utilization, std::nullopt,
                                 bcase.resources.samples, false, ""));
  if (bcase.energy.is_object() && bcase.energy.value("available", false))
    c.metrics.push_back(metric_row("energy.joules", bcase.energy.value("joules", 0.0), std::nullopt, s.reps, false, ""));
  c.extra["weights_execution"] = r.weights_execution;
  c.extra["kernel_summary"] = r.kernel_summary;
  c.extra["energy"] = bcase.energy;
  c.extra["bench"] = r.to_json();
}

}  // namespace

std::vector<PlannedCell> plan_cells(const Plan& plan, const std::vector<std::string>& model_hashes,
                                    const std::map<std::string, std::string>& task_hashes,
                                    const std::map<std::string, std::string>& file_hashes) {
  std::vector<PlannedCell> out;
  for (size_t m = 0; m < plan.models.size(); ++m)
    for (size_t ci = 0; ci < plan.configurations.size(); ++ci) {
      const Configuration& cfg = plan.configurations[ci];
      const std::string base = fmt::format("model={}:{}|spec={}|calib={}|seed={}", plan.models[m].name,
                                           short_hash(model_hashes.at(m)), cfg.spec, cfg.calib_samples, cfg.seed);
      auto add = [&](const std::string& kind, size_t item, const std::string& name, const std::string& what) {
        out.push_back({kind + "|" + base + (what.empty() ? "" : "|" + what), kind, m, ci, item, name});
      };
      add("quantize", 0, "", plan.layer_stats ? "layer_stats" : "");
      for (size_t i = 0; i < plan.tasks.size(); ++i) {
        const auto& t = plan.tasks[i];
        add("task", i, t.name,
            fmt::format("task={}:{}|limit={}|fewshot={}", t.name, short_hash(task_hashes.at(t.name)),
                        t.limit ? std::to_string(*t.limit) : "all", t.num_fewshot ? std::to_string(*t.num_fewshot) : "task"));
      }
      for (size_t i = 0; i < plan.perplexity.size(); ++i) {
        const auto& p = plan.perplexity[i];
        add("perplexity", i, p.name,
            fmt::format("ppl={}|file={}|ctx={}|method={}|chunks={}", p.name, short_hash(file_hashes.at(p.file)), p.ctx,
                        p.method, p.chunks));
      }
      if (cfg.spec != "fp32" || cfg.calib_samples != 0 || cfg.seed >= 0)
        for (size_t i = 0; i < plan.kld.size(); ++i) {
          const auto& k = plan.kld[i];
          add("kld", i, k.name,
              fmt::format("kld={}|file={}|ctx={}|chunks={}", k.name, short_hash(file_hashes.at(k.file)), k.ctx, k.chunks));
        }
      if (plan.generations) add("generations", 0, "generations", "gen=" + short_hash(generations_hash(*plan.generations)));
      for (size_t i = 0; i < plan.efficiency.size(); ++i) {
        const auto& s = plan.efficiency[i];
        add("bench", i, s.name,
            fmt::format("bench={}|prompt={}|gen={}|batch={}|reps={}|warmup={}", s.name, s.prompt, s.gen, s.batch, s.reps,
                        s.warmup));
      }
    }
  return out;
}

RunSummary run_plan(const Plan& plan, store::Store& store, const RunOptions& opts) {
  const auto t_start = Clock::now();
  Context cx{plan, store, opts, {}, 0, {}, {}, {}, {}, {}, 0};
  cx.threads = opts.threads >= 0 ? opts.threads : plan.threads;
  const std::string data_dir = !opts.data_dir.empty() ? opts.data_dir : plan.data_dir;
  cx.data_root = eval::task::resolve_data_root(data_dir.empty() ? std::nullopt : std::optional<std::string>(data_dir));
  const std::string tasks_dir = !opts.tasks_dir.empty() ? opts.tasks_dir : plan.tasks_dir;
  if (!plan.tasks.empty()) {
    cx.registry = std::make_unique<eval::task::TaskRegistry>(eval::task::resolve_tasks_dir(
        tasks_dir.empty() ? std::nullopt : std::optional<std::string>(tasks_dir),
        find_checkout_folder("tasks", "arc_easy.yaml")));
    for (const auto& t : plan.tasks) {
      if (!cx.registry->has_task(t.name)) throw Error(plan.path + ": unknown task '" + t.name + "'");
      cx.task_hashes[t.name] = task_file_hash(cx.registry->task_file(t.name));
    }
  }
  for (const auto& m : plan.models) {
    std::error_code ec;
    if (!fs::exists(m.path, ec)) throw Error(plan.path + ": model '" + m.name + "': " + m.path + " does not exist");
    cx.model_hashes.push_back(store.file_hash(m.path));
  }
  for (const auto& p : plan.perplexity) cx.file_hashes[p.file] = store.file_hash(p.file);
  for (const auto& k : plan.kld) cx.file_hashes[k.file] = store.file_hash(k.file);
  if (!plan.calibration.file.empty()) cx.file_hashes[plan.calibration.file] = store.file_hash(plan.calibration.file);

  const std::vector<PlannedCell> cells = plan_cells(plan, cx.model_hashes, cx.task_hashes, cx.file_hashes);
  std::vector<const PlannedCell*> pending;
  for (const auto& c : cells)
    if (opts.force || !store.has_cell(c.key)) pending.push_back(&c);
  RunSummary sum;
  sum.total = static_cast<int64_t>(cells.size());
  sum.skipped = sum.total - static_cast<int64_t>(pending.size());
  cx.log(fmt::format("plan {}: {} models x {} configurations = {} cells; {} already in {}, {} to run", plan.name,
                     plan.models.size(), plan.configurations.size(), cells.size(), sum.skipped, store.path().string(),
                     pending.size()));
  if (pending.empty()) return sum;

  cx.machine = perf::describe_machine(cx.threads);
  store::RunRecord run;
  run.plan_name = plan.name;
  run.plan_path = plan.path;
  run.plan_hash = plan.sha256;
  run.command = opts.command;
  run.qeval_version = build::kVersion;
  run.git_commit = build::git_commit();
  run.machine = cx.machine;
  cx.run_id = store.begin_run(run);
  sum.run_id = cx.run_id;

  size_t done = 0;
  double busy_seconds = 0;
  try {
    for (size_t mi = 0; mi < plan.models.size(); ++mi) {
      Loaded L;
      for (size_t ci = 0; ci < plan.configurations.size(); ++ci) {
        std::vector<const PlannedCell*> todo;
        for (const auto* pc : pending)
          if (pc->model == mi && pc->config == ci) todo.push_back(pc);
        if (todo.empty()) continue;
        const Configuration& cfg = plan.configurations[ci];
        if (!L.model) {
          L.pm = &plan.models[mi];
          L.hash = cx.model_hashes[mi];
          L.model = std::make_unique<Model>(quant::load_any_model(L.pm->path));
          L.tok = load_tokenizer(*L.model);
        }
        // The configuration's engine, quantized once for all its quality cells.
        std::unique_ptr<Engine> engine;
        std::unique_ptr<quant::InMemoryQuantization> quantized;
        double quantize_seconds = 0;
        json before_stats;
        const bool needs_engine = std::any_of(todo.begin(), todo.end(), [](const PlannedCell* p) { return p->kind != "bench"; });
        if (needs_engine) {
          engine = std::make_unique<Engine>(*L.model, EngineOptions{.threads = cx.threads});
          if (plan.layer_stats && L.reference_layer_stats.is_null())
            L.reference_layer_stats = quant::collect_layer_stats(*engine).to_json();
          const auto tq = Clock::now();
          if (cfg.spec != "fp32") {
            quant::Calibration calib;
            if (cfg.calib_samples > 0) {
              quant::CalibrationOptions co{.samples = cfg.calib_samples, .seqlen = plan.calibration.seqlen,
                                           .seed = cfg.seed >= 0 ? static_cast<uint64_t>(cfg.seed) : 0};
              calib = quant::load_calibration(plan.calibration.file, *L.tok, co, engine->context_length());
            }
            quantized = quant::quantize_in_memory(*engine, quant::QuantSpec::parse(cfg.spec), calib, "run");
          }
          quantize_seconds = std::chrono::duration<double>(Clock::now() - tq).count();
        }
        for (const PlannedCell* pc : todo) {
          const auto t0 = Clock::now();
          store::CellRecord c = new_cell(cx, *pc, L, cfg);
          c.started_at = store::now_iso8601();
          if (pc->kind == "quantize") {
            const auto* q = quantized ? &quantized->result : nullptr;
            c.dimension = "efficiency";
            c.metrics.push_back(metric_row("memory.model_bytes", static_cast<double>(configuration_model_bytes(*L.model, q)),
                                           std::nullopt, 1, false, ""));
            c.metrics.push_back(metric_row("bits_per_weight", q ? q->bits_per_weight : 32.0, std::nullopt,
                                           q ? q->quantized_params : 0, false, ""));
            c.metrics.push_back(metric_row("quantize_seconds", quantize_seconds, std::nullopt, 1, false, ""));
            c.params["parameters"] = L.model->parameter_count();
            if (!plan.calibration.file.empty() && cfg.calib_samples > 0) {
              c.params["calibration_file"] = plan.calibration.file;
              c.dataset_hash = cx.file_hashes.at(plan.calibration.file);
              c.params["calibration_seqlen"] = plan.calibration.seqlen;
            }
            if (plan.layer_stats) {
              json layers = json::array();
              const json after = quant::collect_layer_stats(*engine).to_json();
              std::map<std::string, const quant::QuantizedLinear*> by_name;
              if (q)
                for (const auto& l : q->linears) by_name[l.id.name()] = &l;
              const json& before_layers = L.reference_layer_stats.contains("layers") ? L.reference_layer_stats["layers"] : json::array();
              const json& after_layers = after.contains("layers") ? after["layers"] : json::array();
              for (size_t i = 0; i < after_layers.size(); ++i) {
                json x;
                x["name"] = after_layers[i].value("name", "");
                if (i < before_layers.size()) x["weight_before"] = before_layers[i].value("weight", json::object());
                x["weight_after"] = after_layers[i].value("weight", json::object());
                const auto it = by_name.find(x["name"].get<std::string>());
                if (it != by_name.end()) {
                  if (it->second->error >= 0) x["output_error"] = it->second->error;
                  if (it->second->error_before >= 0) x["output_error_rtn"] = it->second->error_before;
                  // Weight-space error against the file's weights; transforms (AWQ, SmoothQuant)
                  // rescale the weights first, so there it would not compare like with like.
                  const Tensor* w = L.model->find(x["name"].get<std::string>() + ".weight");
                  const bool transformed = q->spec.uses(quant::Method::Awq) || q->spec.uses(quant::Method::SmoothQuant);
                  if (w != nullptr && !transformed) {
                    const std::vector<float> orig = w->to_f32();
                    const std::vector<float> deq = it->second->q.dequantize();
                    if (orig.size() == deq.size()) {
                      double num = 0, den = 0;
                      for (size_t k = 0; k < orig.size(); ++k) {
                        const double d = static_cast<double>(orig[k]) - deq[k];
                        num += d * d;
                        den += static_cast<double>(orig[k]) * orig[k];
                      }
                      x["weight_rel_error"] = den > 0 ? num / den : 0.0;
                    }
                  }
                }
                layers.push_back(std::move(x));
              }
              c.extra["layers"] = layers;
            }
            if (q) c.extra["notes"] = q->notes;
          } else if (pc->kind == "task") {
            run_task_cell(cx, c, plan.tasks[pc->item], *engine, *L.tok);
          } else if (pc->kind == "perplexity") {
            run_perplexity_cell(cx, c, plan.perplexity[pc->item], *engine, *L.tok);
          } else if (pc->kind == "kld") {
            if (!L.reference) L.reference = std::make_unique<Engine>(*L.model, EngineOptions{.threads = cx.threads});
            run_kld_cell(cx, c, plan.kld[pc->item], *L.reference, *engine, *L.tok);
          } else if (pc->kind == "generations") {
            run_generations_cell(c, *plan.generations, *engine, *L.tok);
          } else if (pc->kind == "bench") {
            run_bench_cell(cx, c, plan.efficiency[pc->item], cfg);
          }
          c.ended_at = store::now_iso8601();
          c.duration_s = std::chrono::duration<double>(Clock::now() - t0).count();
          if (pc->kind == "quantize") c.duration_s += quantize_seconds;
          const bool written = store.put_cell(c, opts.force);
          ++done;
          busy_seconds += c.duration_s;
          if (written)
            ++sum.computed;
          else
            ++sum.kept_other;
          const double eta = busy_seconds / static_cast<double>(done) * static_cast<double>(pending.size() - done);
          cx.log(fmt::format("[{}/{}] {} {} {}{}: {:.2f} s{}  ETA {}", done + static_cast<size_t>(sum.skipped),
                             cells.size(), L.pm->name, cfg.label(), pc->kind, pc->name.empty() ? "" : " " + pc->name,
                             c.duration_s, written ? "" : " (kept the copy another run wrote first)", fmt_duration(eta)));
        }
      }
    }
  } catch (...) {
    try {
      store.end_run(cx.run_id, "failed");
    } catch (...) {
    }
    throw;
  }
  store.end_run(cx.run_id, "finished");
  sum.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  return sum;
}

}  // namespace qeval::framework
