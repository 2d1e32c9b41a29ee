// qeval eval MODEL --tasks t1,t2 [--limit N] [--num-fewshot K] [--data-dir DIR] [--tasks-dir DIR]
//                  [--output results.json] [--threads N] [--spec SPEC [--calib FILE]]
// Runs benchmark tasks (tasks/*.yaml, docs/TASKS.md) on a model through the engine and prints an
// lm-evaluation-harness style table; --output writes every metric and the per-doc scores as JSON.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "qeval/engine/engine.h"
#include "qeval/eval/engine_model.h"
#include "qeval/eval/task/evaluate.h"
#include "qeval/eval/task/task.h"
#include "qeval/io/model.h"
#include "qeval/quant/act_quant.h"
#include "qeval/quant/export.h"
#include "qeval/quant/kv_quant.h"
#include "qeval/quant/in_memory.h"
#include "qeval/quant/pipeline.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

namespace fs = std::filesystem;
using namespace qeval::eval;

struct EvalArgs {
  std::string model, tasks, output, tasks_dir, data_dir, spec, calib;
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

// Forwards to the engine model, turning its request counts into doc counts on stderr.
class ProgressModel : public task::LanguageModel {
 public:
  explicit ProgressModel(std::string task) : task_(std::move(task)) {}
  void set_inner(task::LanguageModel* m) { inner_ = m; }
  void report(size_t done, size_t total) {
    if (current_ == nullptr || current_->empty() || !isatty(2)) {
      if (done != total) return;  // not a terminal: one line per request kind
    }
    size_t docs_done = 0, docs_total = 0;
    if (current_ != nullptr && total == current_->size()) {
      for (size_t i = 0; i < current_->size(); ++i) {
        docs_total = std::max(docs_total, (*current_)[i].doc + 1);
        if (i < done) docs_done = std::max(docs_done, (*current_)[i].doc + 1);
      }
      if (done == total) docs_done = docs_total;
      std::fprintf(stderr, "\r%s: %s %zu/%zu docs", task_.c_str(), kind_, docs_done, docs_total);
    } else {
      std::fprintf(stderr, "\r%s: %s %zu/%zu windows", task_.c_str(), kind_, done, total);
    }
    if (done == total) std::fputc('\n', stderr);
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
  }
  std::string task_;
  task::LanguageModel* inner_ = nullptr;
  const std::vector<task::Request>* current_ = nullptr;
  const char* kind_ = "";
};

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

int run(const EvalArgs& a) {
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
  const fs::path data_root =
      task::resolve_data_root(a.data_dir.empty() ? std::nullopt : std::optional<std::string>(a.data_dir));

  const Model model = quant::load_any_model(a.model);
  auto tok = load_tokenizer(model);
  Engine engine(model, {.threads = a.threads});
  // In-memory quantization, as in `qeval perplexity --spec`.
  std::unique_ptr<quant::InMemoryQuantization> quantized;
  if (!a.spec.empty()) {
    const quant::QuantSpec spec = quant::QuantSpec::parse(a.spec);
    quant::Calibration calib;
    if (!a.calib.empty())
      calib = quant::load_calibration(a.calib, *tok, {.samples = 128, .seqlen = 512, .seed = 0},
                                      model.config.context_length > 0 ? model.config.context_length : engine.context_length());
    quantized = quant::quantize_in_memory(engine, spec, calib, "eval");
    const auto& r = quantized->result;
    std::fprintf(stderr, "quantized in memory: %s, %zu linears, %.4f bits per weight\n", spec.str().c_str(),
                 r.linears.size(), r.bits_per_weight);
  }

  std::vector<task::TaskResult> results;
  for (const auto& name : names) {
    const task::TaskConfig cfg = registry.load(name);
    task::DataOptions dopt;
    if (a.limit >= 0) dopt.limit = a.limit;
    const task::TaskData data = task::load_task_data(cfg, data_root, dopt);
    ProgressModel progress(name);
    EngineLanguageModel lm(engine, *tok, {.batch = a.batch, .progress = [&](size_t d, size_t t) { progress.report(d, t); }});
    progress.set_inner(&lm);
    task::EvalOptions eo;
    if (a.num_fewshot >= 0) eo.num_fewshot = a.num_fewshot;
    std::fprintf(stderr, "%s: %zu docs\n", name.c_str(), data.docs.size());
    results.push_back(task::evaluate(cfg, data, progress, eo));
    results.back().task = name;
  }

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
  if (!a.output.empty()) {
    nlohmann::ordered_json j;
    j["model"] = a.model;
    if (!a.spec.empty()) j["spec"] = a.spec;
    j["limit"] = a.limit;
    j["num_fewshot"] = a.num_fewshot >= 0 ? nlohmann::ordered_json(a.num_fewshot) : nlohmann::ordered_json(nullptr);
    nlohmann::ordered_json res = nlohmann::ordered_json::object();
    for (const auto& r : results) res[r.task] = task_json(r);
    j["results"] = res;
    write_file_atomic(a.output, j.dump(2) + "\n");
    std::fprintf(stderr, "wrote %s\n", a.output.c_str());
  }
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  app.add_option("model", a->model, "GGUF file or HF directory")->required();
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
  return [a] { return run(*a); };
}

QEVAL_COMMAND("eval", "Evaluate a model on benchmark tasks (lm-evaluation-harness conventions)", setup);

}  // namespace
}  // namespace qeval::cli
