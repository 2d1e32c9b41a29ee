#pragma once
// From a task and its docs to requests, and from the model's answers to scores.
//
//   TaskConfig task = load_task_file("tasks/arc_easy.yaml");        // or TaskRegistry::load
//   TaskData data = load_task_data(task, data_root, {.limit = 100});
//   TaskResult r = evaluate(task, data, model, {});                  // prepare + requests + score
//
// or step by step (tests, the engine's batching):
//   PreparedTask p = prepare(task, data);        // prompts, choices, golds; bad docs stop or are skipped
//   std::vector<Request> reqs = build_requests(task, p);
//   ... answers ...
//   TaskResult r = score(task, data, p, answers);
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qeval/eval/judge.h"
#include "qeval/eval/stats/bootstrap.h"
#include "qeval/eval/task/language_model.h"
#include "qeval/eval/task/task.h"

namespace qeval::eval::task {

struct PreparedDoc {
  size_t doc = 0;                      // index into TaskData::docs
  std::string group;                   // value of group_by ("" without)
  std::string context;                 // description + few-shot examples + doc_to_text
  std::vector<std::string> choices;    // multiple_choice (partial evaluation: the contexts' endings)
  int gold = -1;                       // multiple_choice: index of the right choice
  std::vector<int> choice_labels;      // mc2: 1 = true answer
  std::string continuation;            // loglikelihood: target; partial evaluation: the shared ending;
                                       // loglikelihood_rolling: the text scored
  std::vector<std::string> references; // generate_until: doc_to_target (one or several)
  int64_t words = 0, bytes = 0;        // loglikelihood_rolling: of count_text (default: the text)
  std::vector<std::string> turns;      // multi-turn generation: the user turns (formatted)
};

struct PreparedTask {
  std::vector<PreparedDoc> docs;
  BadRows bad;                         // docs skipped under skip_bad (bad fields, labels, choices)
  int num_fewshot = 0;
};

struct PrepareOptions {
  std::optional<int> num_fewshot;      // overrides the task's num_fewshot
};

// Renders every doc. A bad doc (missing field, label out of range, no choices, empty choice)
// stops with "<data file>:<row>: <problem> (<key> at <task file>:<line>)", or is skipped and
// counted when data.skip_bad; a field that no doc has is a task-file error
// "<task file>:<line>: unknown field 'x' in <key>".
PreparedTask prepare(const TaskConfig& task, const TaskData& data, const PrepareOptions& options = {});

// The first round of requests: every loglikelihood / rolling / generate request of the task
// (for multi-turn generation, the first turn). Request::doc indexes PreparedTask::docs.
std::vector<Request> build_requests(const TaskConfig& task, const PreparedTask& prepared);
// generate_until, turn `turn` >= 1 of every doc that has it, given the answers of turns 0..turn-1
// (answers[d][t]).
std::vector<Request> build_turn_requests(const TaskConfig& task, const PreparedTask& prepared, int turn,
                                         const std::vector<std::vector<std::string>>& answers);

// The model's answers, aligned with the requests that produced them.
struct ModelAnswers {
  std::vector<Request> requests;                   // every request sent, all rounds
  std::vector<LoglikelihoodResult> loglikelihood;  // for the loglikelihood requests, in order
  std::vector<RollingResult> rolling;              // for the loglikelihood_rolling requests
  std::vector<std::string> generations;            // for the generate_until requests
  // LLM-as-judge (task.judge): the judge's answers, judgments[i] for (doc, turn) judged[i].
  std::vector<std::pair<size_t, int>> judged;
  std::vector<std::string> judgments;
  std::string judge;                               // ChatModel::describe()
};

// The judge requests of a task whose generations are known: one per doc and turn (docs and
// turns in order), rendered from task.judge (JudgeConfig). `generations[d][t]` is the model's
// answer to turn t of prepared doc d. `judged` receives the (doc, turn) of each request.
std::vector<ChatRequest> build_judge_requests(const TaskConfig& task, const TaskData& data, const PreparedTask& prepared,
                                              const std::vector<std::vector<std::string>>& generations,
                                              std::vector<std::pair<size_t, int>>& judged);

struct DocResult {
  size_t doc = 0;                            // index into TaskData::docs
  std::string group;
  std::map<std::string, double> scores;      // per-doc value of every per-doc metric
  std::vector<double> logprobs;              // per choice (multiple_choice) or one (loglikelihood)
  std::vector<bool> greedy;
  int gold = -1;
  int predicted = -1;                        // argmax (multiple_choice)
  std::vector<std::string> generations;      // generate_until, one per turn
  std::map<std::string, std::string> answers;  // filter pipeline -> extracted answer
  std::vector<std::string> judgments;        // the judge's answer per turn (task.judge)
  std::vector<double> ratings;               // parsed rating per turn; NaN when there is none
  double logprob = 0;                        // loglikelihood / rolling
  int64_t tokens = 0, words = 0, bytes = 0;  // rolling
};

struct MetricResult {
  std::string name;          // "acc", "exact_match,strict-match", ...
  double value = 0;
  double stderr_value = 0;   // standard error (closed form for means, bootstrap otherwise)
  int64_t n = 0;             // docs
  bool higher_is_better = true;
  std::string stderr_method; // "mean" or "bootstrap"
  // The metric as a function of doc multiplicities (weights[i] for the i-th doc the metric was
  // computed on, in TaskResult::docs order; all ones gives `value`). Owns its data, so paired
  // comparisons can resample two results on the same docs (compare.h).
  stats::Statistic statistic;
};

struct TaskResult {
  std::string task;
  std::string dimension, sub_dimension;
  OutputType output_type = OutputType::multiple_choice;
  int num_fewshot = 0;
  int64_t n_docs = 0;
  int64_t skipped = 0;       // bad records and bad docs skipped
  int64_t filtered_out = 0;  // docs dropped by `where`
  std::vector<std::string> problems;               // messages of the skipped records / docs
  std::vector<MetricResult> metrics;
  std::map<std::string, std::vector<MetricResult>> groups;  // group_by value -> metrics
  std::vector<DocResult> docs;                     // per-item scores, for paired tests
  std::string judge;                               // the judge model, when the task was judged
  int64_t judge_invalid = 0;                       // judge answers without a valid rating
  const MetricResult* metric(const std::string& name) const;
};

struct ScoreOptions {
  stats::BootstrapOptions bootstrap{};  // for corpus metrics and perplexities
};

TaskResult score(const TaskConfig& task, const TaskData& data, const PreparedTask& prepared,
                 const ModelAnswers& answers, const ScoreOptions& options = {});

struct EvalOptions {
  std::optional<int> num_fewshot;
  ScoreOptions scoring{};
  // Grades generate_until answers of tasks with a `judge` section (MT-Bench); without one such
  // tasks report no judge metrics.
  ChatModel* judge = nullptr;
};

// prepare + build_requests + the model (turn by turn for multi-turn generation) + score.
TaskResult evaluate(const TaskConfig& task, const TaskData& data, LanguageModel& model, const EvalOptions& options = {});

// Combines the results of several tasks (a group file): per metric present in every task, the
// doc-weighted mean (weight_by_docs) or the plain mean of the task values; the standard error
// combines the tasks' as independent estimates.
std::vector<MetricResult> aggregate_tasks(const std::vector<TaskResult>& results, bool weight_by_docs);

// Whitespace-separated pieces as Python's len(re.split(r"\s+", text)) counts them (leading and
// trailing whitespace each add an empty piece), as lm-eval's word_perplexity does.
int64_t count_words(std::string_view text);

}  // namespace qeval::eval::task
