// qeval eval MODEL --tasks t1,t2 [--limit N] [--num-fewshot K] [--data-dir DIR] [--tasks-dir DIR]
//                  [--output results.json] [--threads N] [--spec SPEC [--calib FILE]]
//                  [--reference MODEL [--reference-spec SPEC]] [--tolerance 0.02] [--skip-bad]
//                  [--cache DIR | --no-cache]
// Runs benchmark tasks (tasks/*.yaml, docs/TASKS.md) on a model through the engine and prints an
// lm-evaluation-harness style table; --output writes every metric and the per-doc scores as JSON.
// With --reference the same docs are also run on the reference configuration and every metric is
// compared pairwise (compare.h): delta, 95% interval, p-value, the "within 2%" verdict, and the
// agreement of the two configurations' answers.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "qeval/engine/engine.h"
#include "qeval/eval/compare.h"
#include "qeval/eval/engine_model.h"
#include "qeval/eval/judge.h"
#include "qeval/eval/request_cache.h"
#include "qeval/eval/robustness.h"
#include "qeval/eval/task/evaluate.h"
#include "qeval/eval/task/task.h"
#include "qeval/io/model.h"
#include "qeval/quant/export.h"
#include "qeval/quant/in_memory.h"
#include "qeval/serve/endpoint_model.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

namespace fs = std::filesystem;
using namespace qeval::eval;

struct EvalArgs {
  std::string model, tasks, output, tasks_dir, data_dir, spec, calib;
  std::string reference, reference_spec;
  std::string cache_dir;
  std::string judge_url, judge_model, judge_key_env;
  std::string endpoint, endpoint_model, endpoint_key_env;  // --endpoint instead of MODEL
  double judge_timeout = 300;
  int judge_retries = 3;
  bool no_cache = false;
  bool skip_bad = false;
  bool no_share_context = false;
  double tolerance = 0.02;
  int64_t limit = -1;
  int num_fewshot = -1;
  int threads = 0;
  size_t batch = 16;
};

// Default tasks folder: ./tasks, else a tasks/ folder beside one of the executable's ancestors
// (the checkout the build directory lives in).
fs::path default_tasks_dir() {
  std::error_code ec;
  if (fs::is_directory("tasks", ec)) return "tasks";
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (fs::path p = exe.parent_path(); !p.empty(); p = p.parent_path()) {
      if (fs::is_regular_file(p / "tasks" / "arc_easy.yaml", ec)) return p / "tasks";
      if (p == p.root_path()) break;
    }
  return "tasks";
}

// Forwards to the model under evaluation, turning its request counts into doc counts on stderr.
// Requests carry absolute doc indices, so the count stays right when the request cache sends
// only some of them, in chunks.
class ProgressModel : public task::LanguageModel {
 public:
  ProgressModel(std::string task, size_t docs_total) : task_(std::move(task)), docs_total_(docs_total) {}
  void set_inner(task::LanguageModel* m) { inner_ = m; }
  void report(size_t done, size_t total) {
    const bool tty = isatty(2) != 0;
    if (current_ != nullptr && total == current_->size() && done > 0) {
      const size_t docs_done = done == total && last_call_ ? docs_total_ : (*current_)[done - 1].doc + 1;
      if (!tty && docs_done != docs_total_) return;  // not a terminal: one line per request kind
      std::fprintf(stderr, "\r%s: %s %zu/%zu docs", task_.c_str(), kind_, docs_done, docs_total_);
      if (docs_done == docs_total_ || !tty) std::fputc('\n', stderr);
    } else {
      if (!tty && done != total) return;
      std::fprintf(stderr, "\r%s: %s %zu/%zu windows", task_.c_str(), kind_, done, total);
      if (done == total) std::fputc('\n', stderr);
    }
    std::fflush(stderr);
  }
  std::vector<task::LoglikelihoodResult> loglikelihood(const std::vector<task::Request>& r) override {
    begin(r, "loglikelihood");
    return inner_->loglikelihood(r);
  }
  std::vector<task::RollingResult> loglikelihood_rolling(const std::vector<task::Request>& r) override {
    begin(r, "loglikelihood_rolling");
    return inner_->loglikelihood_rolling(r);
  }
  std::vector<std::string> generate_until(const std::vector<task::Request>& r) override {
    begin(r, "generate_until");
    return inner_->generate_until(r);
  }

 private:
  void begin(const std::vector<task::Request>& r, const char* kind) {
    current_ = &r;
    kind_ = kind;
    // The last chunk of a kind ends with the task's last doc.
    last_call_ = !r.empty() && r.back().doc + 1 == docs_total_;
  }
  std::string task_;
  size_t docs_total_ = 0;
  task::LanguageModel* inner_ = nullptr;
  const std::vector<task::Request>* current_ = nullptr;
  const char* kind_ = "";
  bool last_call_ = false;
};

// A configuration under evaluation (MODEL [--spec]) and the LanguageModel that answers for it.
// This is the one place where a LanguageModel is built: another backend (an endpoint) plugs in
// by filling `lm` and `cache_model` / `cache_config` differently.
struct EvaluatedModel {
  std::string path, spec;
  std::string cache_model;   // identity of the weights, for the request cache
  std::string cache_config;  // everything else that changes the answers
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<quant::InMemoryQuantization> quantized;
  std::unique_ptr<task::LanguageModel> lm;
  std::function<void(size_t, size_t)> progress;  // the current task's progress line
};

// The tasks answered by an OpenAI-compatible server (generation through completions,
// log-likelihoods through echo + logprobs) instead of the in-process engine.
std::unique_ptr<EvaluatedModel> open_endpoint(const EvalArgs& a) {
  auto m = std::make_unique<EvaluatedModel>();
  m->path = a.endpoint;
  m->cache_model = "endpoint " + a.endpoint + " model=" + a.endpoint_model;
  m->cache_config = "openai-completions";
  EvaluatedModel* raw = m.get();
  serve::EndpointOptions eo;
  eo.base_url = a.endpoint;
  eo.model = a.endpoint_model;
  eo.api_key_env = a.endpoint_key_env;
  eo.progress = [raw](size_t d, size_t t) {
    if (raw->progress) raw->progress(d, t);
  };
  m->lm = serve::make_endpoint_model(eo);
  return m;
}

std::unique_ptr<EvaluatedModel> open_model(const std::string& path, const std::string& spec_text, const EvalArgs& a) {
  auto m = std::make_unique<EvaluatedModel>();
  m->path = path;
  m->spec = spec_text;
  m->model = std::make_unique<Model>(quant::load_any_model(path));
  m->tok = load_tokenizer(*m->model);
  m->engine = std::make_unique<Engine>(*m->model, EngineOptions{.threads = a.threads});
  m->cache_model = model_file_identity(path);
  m->cache_config = "engine ctx=" + std::to_string(m->engine->context_length());
  // In-memory quantization, as in `qeval perplexity --spec` (fixed calibration sampling; no single
  // evaluated text to check the calibration against).
  m->quantized = quant::quantize_for_command(*m->engine, *m->model, *m->tok, spec_text,
                                             {a.calib, {.samples = 128, .seqlen = 512, .seed = 0}}, {}, "eval",
                                             [&](const std::string& line) {
                                               std::fprintf(stderr, "%s %s\n", path.c_str(), line.c_str());
                                             });
  if (m->quantized) {
    if (!a.calib.empty()) m->cache_config += "; calib=" + model_file_identity(a.calib);
    m->cache_config += "; spec=" + m->quantized->result.spec.str();
  }
  EvaluatedModel* raw = m.get();
  m->lm = std::make_unique<EngineLanguageModel>(
      *m->engine, *m->tok,
      EngineModelOptions{.batch = a.batch,
                         .share_context = !a.no_share_context,
                         .progress = [raw](size_t d, size_t t) {
                           if (raw->progress) raw->progress(d, t);
                         }});
  return m;
}

struct LoadedTask {
  std::string name;
  task::TaskConfig config;
  task::TaskData data;
};

std::vector<task::TaskResult> evaluate_tasks(EvaluatedModel& m, const std::vector<LoadedTask>& tasks, const EvalArgs& a,
                                             ChatModel* judge) {
  std::vector<task::TaskResult> results;
  for (const auto& t : tasks) {
    ProgressModel progress(t.name, t.data.docs.size());
    progress.set_inner(m.lm.get());
    m.progress = [&](size_t d, size_t n) { progress.report(d, n); };
    std::unique_ptr<CachingLanguageModel> cache;
    task::LanguageModel* model = &progress;
    if (!a.no_cache) {
      RequestCacheOptions co;
      co.dir = a.cache_dir.empty() ? default_request_cache_dir() : fs::path(a.cache_dir);
      co.model = m.cache_model;
      co.config = m.cache_config;
      co.task = t.name;
      cache = std::make_unique<CachingLanguageModel>(progress, std::move(co));
      model = cache.get();
    }
    task::EvalOptions eo;
    if (a.num_fewshot >= 0) eo.num_fewshot = a.num_fewshot;
    eo.judge = judge;
    std::fprintf(stderr, "%s: %zu docs\n", t.name.c_str(), t.data.docs.size());
    if (t.config.judge && judge == nullptr)
      std::fprintf(stderr, "%s: answers are not judged (give --judge-url and --judge-model)\n", t.name.c_str());
    if (t.config.judge && judge != nullptr)
      std::fprintf(stderr, "%s: judging the answers with %s\n", t.name.c_str(), judge->describe().c_str());
    results.push_back(task::evaluate(t.config, t.data, *model, eo));
    results.back().task = t.name;
    if (cache)
      std::fprintf(stderr, "%s: %zu requests from the cache, %zu computed (%s)\n", t.name.c_str(), cache->hits(),
                   cache->misses(), cache->file().string().c_str());
    m.progress = nullptr;
  }
  return results;
}

nlohmann::ordered_json metric_json(const task::MetricResult& m) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); };
  return {{"value", num(m.value)},
          {"stderr", num(m.stderr_value)},
          {"n", m.n},
          {"higher_is_better", m.higher_is_better},
          {"stderr_method", m.stderr_method}};
}

nlohmann::ordered_json task_json(const task::TaskResult& r) {
  nlohmann::ordered_json j;
  j["output_type"] = task::output_type_name(r.output_type);
  j["dimension"] = r.dimension;
  j["sub_dimension"] = r.sub_dimension;
  j["num_fewshot"] = r.num_fewshot;
  j["n_docs"] = r.n_docs;
  j["skipped"] = r.skipped;
  j["filtered_out"] = r.filtered_out;
  j["problems"] = r.problems;
  if (!r.judge.empty()) {
    j["judge"] = r.judge;
    j["judge_invalid"] = r.judge_invalid;
  }
  nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
  for (const auto& m : r.metrics) metrics[m.name] = metric_json(m);
  j["metrics"] = metrics;
  if (!r.groups.empty()) {
    nlohmann::ordered_json g = nlohmann::ordered_json::object();
    for (const auto& [name, ms] : r.groups)
      for (const auto& m : ms) g[name][m.name] = metric_json(m);
    j["groups"] = g;
  }
  nlohmann::ordered_json docs = nlohmann::ordered_json::array();
  for (const auto& d : r.docs) {
    nlohmann::ordered_json x;
    x["doc"] = d.doc;
    if (!d.group.empty()) x["group"] = d.group;
    nlohmann::ordered_json scores = nlohmann::ordered_json::object();
    for (const auto& [k, v] : d.scores) scores[k] = std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
    x["scores"] = scores;
    if (!d.logprobs.empty()) {
      x["logprobs"] = d.logprobs;
      std::vector<int> g(d.greedy.begin(), d.greedy.end());
      x["greedy"] = g;
    }
    if (d.gold >= 0) x["gold"] = d.gold;
    if (d.predicted >= 0) x["predicted"] = d.predicted;
    if (!d.generations.empty()) x["generations"] = d.generations;
    if (!d.answers.empty()) x["answers"] = d.answers;
    if (!d.judgments.empty()) {
      x["judgments"] = d.judgments;
      nlohmann::ordered_json ratings = nlohmann::ordered_json::array();
      for (double v : d.ratings) ratings.push_back(std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr));
      x["ratings"] = ratings;
    }
    if (r.output_type == task::OutputType::loglikelihood_rolling || r.output_type == task::OutputType::loglikelihood)
      x["logprob"] = d.logprob;
    if (d.tokens > 0) {
      x["tokens"] = d.tokens;
      x["words"] = d.words;
      x["bytes"] = d.bytes;
    }
    docs.push_back(std::move(x));
  }
  j["docs"] = docs;
  return j;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

nlohmann::ordered_json num_json(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json comparison_json(const TaskComparison& c) {
  nlohmann::ordered_json j;
  j["n_docs"] = c.n_docs;
  nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
  for (const auto& m : c.metrics) {
    nlohmann::ordered_json x;
    x["test"] = m.test;
    x["higher_is_better"] = m.higher_is_better;
    x["reference"] = num_json(m.reference);
    x["candidate"] = num_json(m.candidate);
    x["delta"] = num_json(m.delta);
    x["ci_low"] = num_json(m.ci_low);
    x["ci_high"] = num_json(m.ci_high);
    x["p_value"] = num_json(m.p_value);
    if (m.test == "mcnemar") {
      x["p_value_mid"] = num_json(m.p_value_mid);
      x["exact"] = m.mcnemar.exact;
      x["both_correct"] = m.mcnemar.both_correct;
      x["only_reference"] = m.mcnemar.only_a;
      x["only_candidate"] = m.mcnemar.only_b;
      x["both_wrong"] = m.mcnemar.both_wrong;
    } else {
      x["samples"] = m.bootstrap.samples;
      x["seed"] = m.bootstrap.seed;
    }
    const auto& v = m.verdict;
    x["verdict"] = {{"within", v.within},
                    {"tolerance", v.tolerance},
                    {"relative_drop", num_json(v.relative_drop)},
                    {"drop_ci_low", num_json(v.drop_ci_low)},
                    {"drop_ci_high", num_json(v.drop_ci_high)},
                    {"significant", v.significant},
                    {"conclusive", v.conclusive},
                    {"text", v.describe()}};
    metrics[m.metric] = x;
  }
  j["metrics"] = metrics;
  nlohmann::ordered_json agree = nlohmann::ordered_json::object();
  for (const auto& g : c.agreement)
    agree[g.answers] = {{"n", g.n},
                        {"identical_rate", g.identical_rate},
                        {"answer_kl", num_json(g.answer_kl)},
                        {"distinct_answers", g.distinct_answers}};
  j["agreement"] = agree;
  if (c.has_choice_kl) j["choice_kl"] = {{"mean", num_json(c.choice_kl_mean)}, {"stderr", num_json(c.choice_kl_se)}};
  return j;
}

void print_results(const std::vector<task::TaskResult>& results) {
  std::printf("| %-20s | %-28s | %10s |   | %8s |\n", "Task", "Metric", "Value", "Stderr");
  std::printf("|%s|%s|%s|---|%s|\n", std::string(22, '-').c_str(), std::string(30, '-').c_str(),
              std::string(12, '-').c_str(), std::string(10, '-').c_str());
  for (const auto& r : results) {
    bool first = true;
    for (const auto& m : r.metrics) {
      std::printf("| %-20s | %-28s | %10.4f | ± | %8.4f |\n", first ? r.task.c_str() : "", m.name.c_str(), m.value,
                  m.stderr_value);
      first = false;
    }
  }
  for (const auto& r : results)
    if (r.skipped > 0) {
      std::printf("%s: skipped %lld malformed records or docs (--skip-bad)\n", r.task.c_str(),
                  static_cast<long long>(r.skipped));
      for (const auto& p : r.problems) std::printf("  %s\n", p.c_str());
      if (static_cast<int64_t>(r.problems.size()) < r.skipped)
        std::printf("  ... and %lld more\n", static_cast<long long>(r.skipped - static_cast<int64_t>(r.problems.size())));
    }
}

void print_drops(const std::vector<RobustnessDrop>& drops) {
  std::printf("\nRobustness: drop from the clean task to the adversarial one (positive = worse; "
              "two_sample_z = different items)\n");
  std::printf("| %-20s | %-14s | %-10s | %10s | %11s | %10s | %-23s | %8s | %-12s |\n", "Adversarial", "Clean", "Metric",
              "Clean", "Adversarial", "Drop", "95% CI", "p", "Test");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(22, '-').c_str(), std::string(16, '-').c_str(),
              std::string(12, '-').c_str(), std::string(12, '-').c_str(), std::string(13, '-').c_str(),
              std::string(12, '-').c_str(), std::string(25, '-').c_str(), std::string(10, '-').c_str(),
              std::string(14, '-').c_str());
  for (const auto& d : drops) {
    const std::string ci = fmt::format("[{:.4f}, {:.4f}]", d.ci_low, d.ci_high);
    std::printf("| %-20s | %-14s | %-10s | %10.4f | %11.4f | %+10.4f | %-23s | %8.3g | %-12s |\n",
                d.adversarial_task.c_str(), d.clean_task.c_str(), d.metric.c_str(), d.clean, d.adversarial, d.drop,
                ci.c_str(), d.p_value, d.test.c_str());
  }
}

void print_comparisons(const std::vector<TaskComparison>& comps, double tolerance) {
  std::printf("\nPaired comparison with the reference (delta = candidate - reference; McNemar for 0/1 scores, "
              "paired bootstrap otherwise)\n");
  const std::string within = fmt::format("within {:g}%", 100 * tolerance);
  std::printf("| %-20s | %-28s | %10s | %10s | %10s | %-23s | %8s | %-9s | %-12s |\n", "Task", "Metric", "Reference",
              "Candidate", "Delta", "95% CI", "p", "Test", within.c_str());
  std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(22, '-').c_str(), std::string(30, '-').c_str(),
              std::string(12, '-').c_str(), std::string(12, '-').c_str(), std::string(12, '-').c_str(),
              std::string(25, '-').c_str(), std::string(10, '-').c_str(), std::string(11, '-').c_str(),
              std::string(14, '-').c_str());
  for (const auto& c : comps) {
    bool first = true;
    for (const auto& m : c.metrics) {
      const std::string ci = fmt::format("[{:.4f}, {:.4f}]", m.ci_low, m.ci_high);
      const std::string verdict =
          std::string(m.verdict.within ? "yes" : "NO") + (m.verdict.conclusive ? "" : " (n.c.)");
      std::printf("| %-20s | %-28s | %10.4f | %10.4f | %+10.4f | %-23s | %8.3g | %-9s | %-12s |\n",
                  first ? c.task.c_str() : "", m.metric.c_str(), m.reference, m.candidate, m.delta, ci.c_str(),
                  m.p_value, m.test == "mcnemar" ? (m.mcnemar.exact ? "mcn-exact" : "mcn-chi2") : "bootstrap",
                  verdict.c_str());
      first = false;
    }
  }
  std::printf("(n.c. = not conclusive: the interval of the relative drop straddles the tolerance)\n");
  std::printf("\nAgreement of the answers (KL = relative entropy of the answer distributions, reference || "
              "candidate, nats)\n");
  std::printf("| %-20s | %-28s | %10s | %10s | %9s |\n", "Task", "Answers", "Identical", "KL", "Distinct");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(22, '-').c_str(), std::string(30, '-').c_str(),
              std::string(12, '-').c_str(), std::string(12, '-').c_str(), std::string(11, '-').c_str());
  for (const auto& c : comps) {
    bool first = true;
    for (const auto& g : c.agreement) {
      std::printf("| %-20s | %-28s | %10.4f | %10.4f | %9lld |\n", first ? c.task.c_str() : "", g.answers.c_str(),
                  g.identical_rate, g.answer_kl, static_cast<long long>(g.distinct_answers));
      first = false;
    }
    if (c.has_choice_kl)
      std::printf("| %-20s | %-28s | %10s | %10.4f | %9s |\n", first ? c.task.c_str() : "", "choice_kl (mean/doc)", "",
                  c.choice_kl_mean, "");
  }
}

int run(const EvalArgs& a) {
  if (a.endpoint.empty() == a.model.empty()) throw Error("eval: give either MODEL or --endpoint URL (exactly one)");
  if (!a.endpoint.empty()) {
    if (a.endpoint_model.empty()) throw Error("eval: --endpoint needs --model NAME (the server's model id)");
    if (!a.spec.empty() || !a.calib.empty() || !a.reference.empty())
      throw Error("eval: --spec, --calib and --reference apply to a local MODEL, not to --endpoint");
  } else if (!a.endpoint_model.empty() || !a.endpoint_key_env.empty()) {
    throw Error("eval: --model and --api-key-env go with --endpoint");
  }
  const task::TaskRegistry registry(
      task::resolve_tasks_dir(a.tasks_dir.empty() ? std::nullopt : std::optional<std::string>(a.tasks_dir),
                              default_tasks_dir()));
  std::vector<std::string> names;
  for (const auto& n : split_list(a.tasks)) {
    if (!registry.has_task(n) && !registry.has_group(n)) throw Error("eval: unknown task '" + n + "'");
    for (const auto& t : registry.expand(n))
      if (std::find(names.begin(), names.end(), t) == names.end()) names.push_back(t);
  }
  if (names.empty()) throw Error("eval: --tasks names no task");
  if (!(a.tolerance >= 0)) throw Error("eval: --tolerance must be >= 0");
  if (!a.reference_spec.empty() && a.reference.empty()) throw Error("eval: --reference-spec needs --reference MODEL");
  const fs::path data_root =
      task::resolve_data_root(a.data_dir.empty() ? std::nullopt : std::optional<std::string>(a.data_dir));

  // A task with a clean counterpart (robustness) brings it along, evaluated before it.
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string clean = registry.load(names[i]).clean_task;
    if (clean.empty() || std::find(names.begin(), names.end(), clean) != names.end()) continue;
    if (!registry.has_task(clean))
      throw Error(fmt::format("{}: clean_task '{}' is not a task", registry.task_file(names[i]).string(), clean));
    names.insert(names.begin() + static_cast<std::ptrdiff_t>(i), clean);
    ++i;
  }

  // Tasks and data first: a malformed file stops the run before any model is loaded.
  std::vector<LoadedTask> tasks;
  for (const auto& name : names) {
    task::TaskConfig cfg = registry.load(name);
    task::DataOptions dopt;
    if (a.limit >= 0) dopt.limit = a.limit;
    if (a.skip_bad) dopt.skip_bad = true;
    task::TaskData data = task::load_task_data(cfg, data_root, dopt);
    tasks.push_back({name, std::move(cfg), std::move(data)});
  }

  std::unique_ptr<OpenAIChatClient> judge;
  if (!a.judge_url.empty() || !a.judge_model.empty()) {
    if (a.judge_url.empty() || a.judge_model.empty()) throw Error("eval: a judge needs both --judge-url and --judge-model");
    OpenAIChatOptions jo;
    jo.url = a.judge_url;
    jo.model = a.judge_model;
    jo.api_key_env = a.judge_key_env;
    jo.timeout_s = a.judge_timeout;
    jo.max_retries = a.judge_retries;
    judge = std::make_unique<OpenAIChatClient>(std::move(jo));
  }

  // One configuration at a time, so that only one copy of the weights is in memory.
  std::vector<task::TaskResult> results, reference_results;
  {
    auto candidate = a.endpoint.empty() ? open_model(a.model, a.spec, a) : open_endpoint(a);
    results = evaluate_tasks(*candidate, tasks, a, judge.get());
  }
  std::vector<TaskComparison> comparisons;
  if (!a.reference.empty()) {
    std::fprintf(stderr, "reference: %s%s\n", a.reference.c_str(),
                 a.reference_spec.empty() ? "" : (" --spec " + a.reference_spec).c_str());
    auto reference = open_model(a.reference, a.reference_spec, a);
    reference_results = evaluate_tasks(*reference, tasks, a, judge.get());
    CompareOptions co;
    co.tolerance = a.tolerance;
    for (size_t i = 0; i < results.size(); ++i)
      comparisons.push_back(compare_results(reference_results[i], results[i], co));
  }

  std::vector<RobustnessDrop> drops;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto& cfg = tasks[i].config;
    if (cfg.clean_task.empty()) continue;
    for (size_t k = 0; k < tasks.size(); ++k)
      if (tasks[k].name == cfg.clean_task)
        for (auto& d : robustness_drop(results[k], results[i], cfg.clean_paired)) drops.push_back(std::move(d));
  }

  print_results(results);
  if (!drops.empty()) print_drops(drops);
  if (!comparisons.empty()) print_comparisons(comparisons, a.tolerance);
  if (!a.output.empty()) {
    nlohmann::ordered_json j;
    j["model"] = a.model;
    if (!a.spec.empty()) j["spec"] = a.spec;
    j["limit"] = a.limit;
    j["num_fewshot"] = a.num_fewshot >= 0 ? nlohmann::ordered_json(a.num_fewshot) : nlohmann::ordered_json(nullptr);
    j["skip_bad"] = a.skip_bad;
    nlohmann::ordered_json res = nlohmann::ordered_json::object();
    for (const auto& r : results) res[r.task] = task_json(r);
    j["results"] = res;
    if (!drops.empty()) {
      nlohmann::ordered_json rob = nlohmann::ordered_json::array();
      for (const auto& d : drops)
        rob.push_back({{"adversarial_task", d.adversarial_task},
                       {"clean_task", d.clean_task},
                       {"metric", d.metric},
                       {"paired", d.paired},
                       {"test", d.test},
                       {"n_clean", d.n_clean},
                       {"n_adversarial", d.n_adversarial},
                       {"clean", num_json(d.clean)},
                       {"adversarial", num_json(d.adversarial)},
                       {"drop", num_json(d.drop)},
                       {"relative_drop", num_json(d.relative_drop)},
                       {"se", num_json(d.se)},
                       {"ci_low", num_json(d.ci_low)},
                       {"ci_high", num_json(d.ci_high)},
                       {"p_value", num_json(d.p_value)}});
      j["robustness"] = rob;
    }
    if (!a.reference.empty()) {
      j["reference"] = {{"model", a.reference},
                        {"spec", a.reference_spec.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(a.reference_spec)}};
      nlohmann::ordered_json rr = nlohmann::ordered_json::object();
      for (const auto& r : reference_results) rr[r.task] = task_json(r);
      j["reference_results"] = rr;
      nlohmann::ordered_json cmp = nlohmann::ordered_json::object();
      for (const auto& c : comparisons) cmp[c.task] = comparison_json(c);
      j["comparison"] = {{"tolerance", a.tolerance}, {"tasks", cmp}};
    }
    write_file_atomic(a.output, j.dump(2) + "\n");
    std::fprintf(stderr, "wrote %s\n", a.output.c_str());
  }
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  app.add_option("model", a->model, "GGUF file, HF directory or packed directory (or use --endpoint)");
  app.add_option("--endpoint", a->endpoint,
                 "evaluate through an OpenAI-compatible server at this base URL (e.g. http://127.0.0.1:8080/v1)");
  app.add_option("--model", a->endpoint_model, "with --endpoint: the server's model id");
  app.add_option("--api-key-env", a->endpoint_key_env,
                 "with --endpoint: environment variable holding the server's bearer token");
  app.add_option("--tasks", a->tasks, "comma-separated task or group names (tasks/*.yaml)")->required();
  app.add_option("--limit", a->limit, "evaluate only the first N docs of each task");
  app.add_option("--num-fewshot", a->num_fewshot, "few-shot examples (default: the task's)");
  app.add_option("--data-dir", a->data_dir, "data root (default: $QEVAL_DATA, else $QEVAL_SHARED/data, else ../shared/data)");
  app.add_option("--tasks-dir", a->tasks_dir, "tasks folder (default: $QEVAL_TASKS, else the checkout's tasks/)");
  app.add_option("--output,-o", a->output, "write results (metrics and per-doc scores) as JSON");
  app.add_option("--threads,-t", a->threads, "threads (default: hardware concurrency)");
  app.add_option("--batch", a->batch, "sequences scored together (default 16)");
  app.add_option("--spec", a->spec, "quantize in memory with this spec before evaluating (quant/spec.h)");
  app.add_option("--calib", a->calib, "calibration text for --spec (gptq / awq / smoothquant / static activations)");
  app.add_option("--reference", a->reference,
                 "also evaluate this model (e.g. the same file without --spec) on the same docs and compare pairwise");
  app.add_option("--reference-spec", a->reference_spec, "quantize the reference in memory with this spec");
  app.add_option("--tolerance", a->tolerance, "relative drop allowed by the verdict (default 0.02 = 2%)");
  app.add_flag("--skip-bad", a->skip_bad, "skip and count malformed dataset rows instead of stopping");
  app.add_option("--cache", a->cache_dir, "request cache folder (default: $XDG_CACHE_HOME/qeval or ~/.cache/qeval)");
  app.add_flag("--no-cache", a->no_cache, "neither read nor write the request cache");
  app.add_option("--judge-url", a->judge_url,
                 "OpenAI-compatible endpoint of the LLM judge for tasks with a judge section (mt_bench), "
                 "e.g. http://host:8000/v1");
  app.add_option("--judge-model", a->judge_model, "the judge model's name at that endpoint");
  app.add_option("--judge-key-env", a->judge_key_env,
                 "environment variable holding the judge's API key (sent as a Bearer token, never printed)");
  app.add_option("--judge-timeout", a->judge_timeout, "seconds per judge request (default 300)");
  app.add_option("--judge-retries", a->judge_retries, "retries after a network error, HTTP 429 or 5xx (default 3)");
  app.add_flag("--no-share-context", a->no_share_context,
               "score every choice of a multiple-choice doc from scratch (for timing the shared-context path)");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("eval", "Evaluate a model on benchmark tasks (lm-evaluation-harness conventions)", setup);

}  // namespace
}  // namespace qeval::cli
