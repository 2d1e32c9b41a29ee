#pragma once
// Task definitions (one YAML file per benchmark under tasks/; format in docs/TASKS.md), the
// registry of a tasks folder, and loading a task's documents from the data root.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qeval/eval/task/dataset.h"
#include "qeval/eval/task/filters.h"
#include "qeval/eval/task/template.h"

namespace qeval::eval::task {

enum class OutputType { loglikelihood, multiple_choice, loglikelihood_rolling, generate_until };
const char* output_type_name(OutputType t);

struct MetricSpec {
  std::string name;          // acc, acc_norm, mc2, ece, perplexity, word_perplexity, byte_perplexity,
                             // bits_per_byte, exact_match, f1, rouge1, rouge2, rougeL, rougeLsum, bleu, chrf
  ExactMatchOptions exact;   // exact_match
  bool stem = true;          // rouge*: Porter stemmer
  int bins = 10;             // ece
};
// Whether a larger value of the metric is better.
bool metric_higher_is_better(const std::string& name);

// Sub-dimensions per dimension, for the coverage framework (docs/TASKS.md).
const std::map<std::string, std::vector<std::string>>& known_dimensions();

// LLM-as-judge grading of generations (MT-Bench single-answer grading), run when the caller
// gives a judge (EvalOptions::judge). For each doc and turn k the judge gets `system` and
// `prompt` rendered with the doc's fields plus `turn_index` (k, 0-based), `questions` (the raw
// user turns, doc_to_turns) and `answers` (the model's answers to turns 0..k), and must answer
// with a rating "[[x]]" in [min_score, max_score].
struct JudgeConfig {
  TemplatePtr system;        // optional
  TemplatePtr prompt;        // required
  int max_tokens = 1024;     // of the judge's answer
  double min_score = 1, max_score = 10;
};

struct TaskConfig {
  std::string name;
  std::string file;                      // the task file as named by the caller
  std::string output_type_origin;        // "<file>:<line>" of output_type
  OutputType output_type = OutputType::multiple_choice;

  DatasetSpec dataset;
  std::optional<DatasetSpec> fewshot_dataset;  // absent: few-shot examples come from the evaluated set
  TemplatePtr where;                           // dataset.where: docs where it is false are dropped
  int64_t limit = -1;                          // dataset.limit
  std::vector<std::pair<std::string, TemplatePtr>> fields;  // derived fields, in order
  CustomFilters template_filters;

  TemplatePtr description;
  TemplatePtr doc_to_text;
  TemplatePtr doc_to_target;
  std::vector<TemplatePtr> doc_to_choice_list;  // a YAML list: one template per choice
  TemplatePtr doc_to_choice;                    // or one template giving a list
  TemplatePtr doc_to_continuation;              // partial evaluation (winogrande)
  TemplatePtr choice_labels;                    // mc2: 1/0 (true/false) per choice
  TemplatePtr count_text;                       // rolling: text whose words/bytes are counted
  TemplatePtr doc_to_turns;                     // multi-turn generation: list of user turns
  TemplatePtr turn_template;                    // formats one turn (`turn`, `turn_index` in scope)
  std::string target_delimiter = " ";
  std::string fewshot_delimiter = "\n\n";
  std::string turn_delimiter = "\n\n";

  int num_fewshot = 0;
  uint64_t fewshot_seed = 1234;
  bool fewshot_first_n = false;  // fewshot_sampler: first_n (else random)

  std::vector<std::string> until;
  int max_gen_toks = 256;

  std::vector<FilterPipeline> filters;  // generate_until; at least one ("none", no steps)
  std::vector<MetricSpec> metrics;
  std::optional<JudgeConfig> judge;     // generate_until: grade the answers with an LLM judge
  // Robustness: the clean counterpart of this (adversarial / shifted) task; the runner reports
  // the drop of every shared metric from it (robustness.h). clean_paired: doc i of both tasks is
  // the same item (paired tests); otherwise the two are independent samples.
  std::string clean_task;
  bool clean_paired = false;

  std::string dimension, sub_dimension;
  std::string group_by;                 // field whose value splits the results into subtasks
  std::vector<std::string> tags;
  bool skip_bad = false;                // dataset.skip_bad
};

// Reads and checks a task file (and the files it includes). Throws qeval::Error
// "<file>:<line>: <problem>" for anything wrong in it. Does not read the dataset.
TaskConfig load_task_file(const std::filesystem::path& file);

// A group file: `group: NAME`, `task: [names]`, optional `aggregate: docs|tasks`.
struct GroupConfig {
  std::string name;
  std::string file;
  std::vector<std::string> tasks;
  bool weight_by_docs = true;  // aggregate: docs (pool the docs) or tasks (mean of task scores)
  std::string dimension, sub_dimension;
};

class TaskRegistry {
 public:
  // Every *.yaml in `dir` (not recursive; names starting with '_' are include-only files).
  explicit TaskRegistry(const std::filesystem::path& dir);
  std::vector<std::string> task_names() const;
  std::vector<std::string> group_names() const;
  bool has_task(const std::string& name) const { return tasks_.count(name) != 0; }
  bool has_group(const std::string& name) const { return groups_.count(name) != 0; }
  std::filesystem::path task_file(const std::string& name) const;
  TaskConfig load(const std::string& name) const;
  const GroupConfig& group(const std::string& name) const;
  // Task names of a task or group (groups expanded recursively, duplicates removed).
  std::vector<std::string> expand(const std::string& name) const;

 private:
  std::filesystem::path dir_;
  std::map<std::string, std::filesystem::path> tasks_;
  std::map<std::string, GroupConfig> groups_;
};

// The tasks folder: `cli_value`, else $QEVAL_TASKS, else `fallback`.
std::filesystem::path resolve_tasks_dir(const std::optional<std::string>& cli_value,
                                        const std::filesystem::path& fallback = "tasks");

// ---- documents ----

struct DataOptions {
  std::optional<int64_t> limit;    // evaluate only the first N docs (after `where`)
  std::optional<bool> skip_bad;    // overrides the task's dataset.skip_bad
};

struct TaskData {
  std::filesystem::path data_root;
  std::vector<Json> docs;                  // the evaluated docs, in order
  std::vector<DocSource> sources;
  std::vector<Json> fewshot_docs;          // the few-shot pool
  std::vector<DocSource> fewshot_sources;
  bool fewshot_is_eval_set = true;         // pool = the evaluated set (docs[i] is fewshot_docs[i])
  std::vector<std::string> bound;          // fields bound by the path pattern (few-shot matching)
  std::vector<std::string> fewshot_bound;
  BadRows bad;                             // records skipped under skip_bad
  int64_t filtered_out = 0;                // docs dropped by `where`
  bool skip_bad = false;
};

TaskData load_task_data(const TaskConfig& task, const std::filesystem::path& data_root, const DataOptions& options = {});

}  // namespace qeval::eval::task
