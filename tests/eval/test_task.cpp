// Task files (YAML schema, includes, errors with lines), preparing docs (prompts, few-shot,
// malformed rows), requests, and scoring with a fake language model.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "qeval/eval/metrics/bleu.h"
#include "qeval/eval/metrics/chrf.h"
#include "qeval/eval/metrics/rouge.h"
#include "qeval/eval/task/evaluate.h"
#include "test_support.h"

namespace qeval::eval::task {
namespace {

namespace fs = std::filesystem;


// The message of the qeval::Error thrown by f, or "(no error)".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class TaskDir {
 public:
  std::filesystem::path root() const { return dir_.path() / "data"; }
  std::filesystem::path tasks() const { return dir_.path() / "tasks"; }
  // Writes tasks/<name> and returns its path.
  std::filesystem::path task(const std::string& name, const std::string& yaml) const {
    std::filesystem::create_directories(tasks());
    test::write_bytes(tasks() / name, yaml);
    return tasks() / name;
  }
  // Writes data/<rel> and returns its path.
  std::filesystem::path data(const std::string& rel, const std::string& bytes) const {
    std::filesystem::create_directories((root() / rel).parent_path());
    test::write_bytes(root() / rel, bytes);
    return root() / rel;
  }
  std::string task_path(const std::string& name) const { return (tasks() / name).string(); }
  std::string data_path(const std::string& rel) const { return (root() / rel).string(); }

 private:
  test::TempDir dir_;
};

// Deterministic answers: by default loglikelihood = -(bytes of the continuation), greedy when the
// continuation has fewer than 4 bytes; rolling = -0.5 per byte, one token per 2 bytes; generation
// = "echo: <last line of the context>". Every function can be replaced; every request is kept.
class FakeModel : public LanguageModel {
 public:
  std::function<LoglikelihoodResult(const Request&)> ll = [](const Request& r) {
    return LoglikelihoodResult{-static_cast<double>(r.continuation.size()), r.continuation.size() < 4,
                               static_cast<int64_t>(r.continuation.size())};
  };
  std::function<RollingResult(const Request&)> rolling = [](const Request& r) {
    return RollingResult{-0.5 * static_cast<double>(r.continuation.size()), static_cast<int64_t>(r.continuation.size() / 2)};
  };
  std::function<std::string(const Request&)> gen = [](const Request& r) {
    size_t nl = r.context.rfind('\n');
    return "echo: " + (nl == std::string::npos ? r.context : r.context.substr(nl + 1));
  };
  std::vector<Request> seen;
  int calls = 0;

  std::vector<LoglikelihoodResult> loglikelihood(const std::vector<Request>& requests) override {
    ++calls;
    std::vector<LoglikelihoodResult> out;
    for (const auto& r : requests) {
      seen.push_back(r);
      out.push_back(ll(r));
    }
    return out;
  }
  std::vector<RollingResult> loglikelihood_rolling(const std::vector<Request>& requests) override {
    ++calls;
    std::vector<RollingResult> out;
    for (const auto& r : requests) {
      seen.push_back(r);
      out.push_back(rolling(r));
    }
    return out;
  }
  std::vector<std::string> generate_until(const std::vector<Request>& requests) override {
    ++calls;
    std::vector<std::string> out;
    for (const auto& r : requests) {
      seen.push_back(r);
      out.push_back(gen(r));
    }
    return out;
  }
};

// Log-probabilities looked up by continuation (a missing one fails the test loudly).
inline std::function<LoglikelihoodResult(const Request&)> table(std::map<std::string, double> lp) {
  return [lp](const Request& r) {
    auto it = lp.find(r.continuation);
    if (it == lp.end()) throw Error("fake model: no log-probability for continuation '" + r.continuation + "'");
    return LoglikelihoodResult{it->second, false, 1};
  };
}


// ---------------------------------------------------------------------------------------------
// Task files

const char* kMcTask = R"Y(task: mc
output_type: multiple_choice
dataset:
  path: mc.jsonl
doc_to_text: "Question: {{ q }}\nAnswer:"
doc_to_choice: "{{ choices }}"
doc_to_target: gold
)Y";

const char* kMcData =
    "{\"q\": \"one\", \"choices\": [\"aa\", \"b\"], \"gold\": 0}\n"
    "{\"q\": \"two\", \"choices\": [\"ccc\", \"dd\", \"e\"], \"gold\": 0}\n"
    "{\"q\": \"three\", \"choices\": [\"ffff\", \"g\"], \"gold\": 1}\n";

TEST(TaskFile, LoadsTheSchema) {
  TaskDir d;
  auto f = d.task("t.yaml", R"Y(task: demo
tag: [x, y]
dimension: quality
sub_dimension: reasoning
output_type: generate_until
dataset:
  path: a/b.jsonl
  where: "{{ keep }}"
  limit: 10
  skip_bad: true
num_fewshot: 2
fewshot_seed: 7
fewshot_sampler: first_n
target_delimiter: ""
fewshot_delimiter: "\n###\n"
description: "Intro\n"
doc_to_text: "Q: {{ q }}"
doc_to_target: a
generation_kwargs:
  until: ["\n", "Q:"]
  max_gen_toks: 32
  do_sample: false
  temperature: 0
filters:
  - name: strict
    steps:
      - function: regex
        pattern: "#### (\\d+)"
        select: -1
        group: 1
        fallback: none
      - take_first
      - strip
metric_list:
  - exact_match
  - metric: f1
group_by: kind
)Y");
  TaskConfig t = load_task_file(f);
  EXPECT_EQ(t.name, "demo");
  EXPECT_EQ(t.tags, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(t.dimension, "quality");
  EXPECT_EQ(t.sub_dimension, "reasoning");
  EXPECT_EQ(t.output_type, OutputType::generate_until);
  EXPECT_EQ(t.dataset.path, "a/b.jsonl");
  EXPECT_EQ(t.limit, 10);
  EXPECT_TRUE(t.skip_bad);
  EXPECT_TRUE(t.where);
  EXPECT_EQ(t.num_fewshot, 2);
  EXPECT_EQ(t.fewshot_seed, 7u);
  EXPECT_TRUE(t.fewshot_first_n);
  EXPECT_EQ(t.target_delimiter, "");
  EXPECT_EQ(t.fewshot_delimiter, "\n###\n");
  EXPECT_EQ(t.until, (std::vector<std::string>{"\n", "Q:"}));
  EXPECT_EQ(t.max_gen_toks, 32);
  ASSERT_EQ(t.filters.size(), 1u);
  EXPECT_EQ(t.filters[0].name, "strict");
  ASSERT_EQ(t.filters[0].steps.size(), 3u);
  EXPECT_EQ(t.filters[0].steps[0].select, -1);
  EXPECT_EQ(t.filters[0].steps[0].group, 1);
  EXPECT_EQ(t.filters[0].steps[0].fallback, "none");
  ASSERT_EQ(t.metrics.size(), 2u);
  EXPECT_EQ(t.metrics[1].name, "f1");
  EXPECT_EQ(t.group_by, "kind");
  // A plain field name as doc_to_target is the field.
  EXPECT_EQ(t.doc_to_target->render(Json{{"a", "yes"}}), "yes");
}

TEST(TaskFile, DefaultsPerOutputType) {
  TaskDir d;
  TaskConfig mc = load_task_file(d.task("mc.yaml", kMcTask));
  ASSERT_EQ(mc.metrics.size(), 2u);
  EXPECT_EQ(mc.metrics[0].name, "acc");
  EXPECT_EQ(mc.metrics[1].name, "acc_norm");
  EXPECT_EQ(mc.target_delimiter, " ");
  EXPECT_EQ(mc.fewshot_delimiter, "\n\n");
  EXPECT_EQ(mc.num_fewshot, 0);
  TaskConfig g = load_task_file(d.task("g.yaml", "task: g\noutput_type: generate_until\ndataset: {path: a.jsonl}\ndoc_to_text: x\n"));
  EXPECT_EQ(g.until, std::vector<std::string>{"\n\n"});  // lm-eval: the few-shot delimiter
  EXPECT_TRUE(g.metrics.empty());
  ASSERT_EQ(g.filters.size(), 1u);
  EXPECT_EQ(g.filters[0].name, "none");
}

TEST(TaskFile, IncludeMergesMappingsAndOverrides) {
  TaskDir d;
  d.task("_base.yaml", R"Y(output_type: multiple_choice
dataset:
  path: base.jsonl
  format: jsonl
doc_to_text: "{{ q }}"
doc_to_choice: ["a", "b"]
doc_to_target: label
metric_list: [acc, acc_norm]
)Y");
  auto f = d.task("child.yaml", R"Y(include: _base.yaml
task: child
dataset:
  path: child.jsonl
metric_list: [acc]
)Y");
  TaskConfig t = load_task_file(f);
  EXPECT_EQ(t.name, "child");
  EXPECT_EQ(t.dataset.path, "child.jsonl");
  EXPECT_EQ(t.dataset.format, "jsonl");
  ASSERT_EQ(t.metrics.size(), 1u);
  ASSERT_EQ(t.doc_to_choice_list.size(), 2u);
  // Errors in included templates name the included file.
  d.task("_bad.yaml", "output_type: multiple_choice\ndataset: {path: x.jsonl}\ndoc_to_text: \"{{ q | nofilter }}\"\n");
  EXPECT_EQ(error_of([&] { load_task_file(d.task("c2.yaml", "include: _bad.yaml\ntask: c2\n")); }),
            d.task_path("_bad.yaml") + ":3: unknown filter 'nofilter' in doc_to_text");
  EXPECT_EQ(error_of([&] { load_task_file(d.task("c3.yaml", "include: nothere.yaml\ntask: c3\n")); }),
            d.task_path("c3.yaml") + ":1: included file 'nothere.yaml' not found");
}

TEST(TaskFile, ErrorsNameFileAndLine) {
  TaskDir d;
  auto err = [&](const std::string& yaml) {
    auto f = d.task("e.yaml", yaml);
    return error_of([&] { load_task_file(f); });
  };
  const std::string p = d.task_path("e.yaml");
  const std::string base = "task: e\noutput_type: multiple_choice\ndataset:\n  path: x.jsonl\n";
  EXPECT_EQ(err(base + "doc_to_txt: x\n"), p + ":5: unknown key 'doc_to_txt'");
  EXPECT_EQ(err("task: e\noutput_type: multiple_choice\ndataset:\n  path: x.jsonl\n  formatt: csv\n"),
            p + ":5: unknown key 'formatt' in dataset");
  EXPECT_EQ(err("output_type: multiple_choice\n"), p + ": missing 'task' (the task's name)");
  EXPECT_EQ(err("task: e\noutput_type: multiple_guess\n"),
            p + ":2: unknown output_type 'multiple_guess' (loglikelihood, multiple_choice, loglikelihood_rolling, generate_until)");
  EXPECT_EQ(err(base + "doc_to_text: q\ndoc_to_choice: [a]\n"), p + ":2: output_type multiple_choice needs doc_to_target");
  EXPECT_EQ(err(base + "doc_to_text: q\ndoc_to_choice: [a]\ndoc_to_target: t\nmetric_list: [bleu]\n"),
            p + ":8: metric 'bleu' does not apply to output_type multiple_choice");
  EXPECT_EQ(err(base + "doc_to_text: q\ndoc_to_choice: [a]\ndoc_to_target: t\nmetric_list: [accuracy]\n").rfind(
                p + ":8: unknown metric 'accuracy' (", 0),
            0u);
  EXPECT_EQ(err(base + "doc_to_text: q\ndoc_to_choice: [a]\ndoc_to_target: t\nmetric_list: [mc2]\n"),
            p + ":8: metric 'mc2' needs choice_labels");
  EXPECT_EQ(err(base + "doc_to_text: q\ndoc_to_choice: [a]\ndoc_to_target: t\ndimension: speed\n"),
            p + ":8: unknown dimension 'speed' (alignment, quality, robustness)");
  EXPECT_EQ(err(base + "doc_to_text: q\ndoc_to_choice: [a]\ndoc_to_target: t\ndimension: alignment\nsub_dimension: reasoning\n"),
            p + ":9: unknown sub_dimension 'reasoning' of alignment (helpfulness, honesty, harmlessness_bias)");
  EXPECT_EQ(err(base + "doc_to_text: q\ndoc_to_choice: [a]\ndoc_to_target: t\nnum_fewshot: many\n"),
            p + ":8: num_fewshot: expected an integer, found 'many'");
  EXPECT_EQ(err(base + "doc_to_text: \"{{ q \"\ndoc_to_choice: [a]\ndoc_to_target: t\n"), p + ":5: missing '}}' in doc_to_text");
  EXPECT_EQ(err(base + "doc_to_text: q\ndoc_to_choice:\n  - \"{{ a }}\"\n  - \"{{ b | letterz }}\"\ndoc_to_target: t\n"),
            p + ":8: unknown filter 'letterz' in doc_to_choice[1]");
  EXPECT_EQ(err("task: e\noutput_type: generate_until\ndataset: {path: x.jsonl}\ndoc_to_text: q\ngeneration_kwargs: {do_sample: true}\n"),
            p + ":5: only greedy decoding is supported (do_sample: false)");
  EXPECT_EQ(err("task: e\noutput_type: generate_until\ndataset: {path: x.jsonl}\ndoc_to_text: q\nfilters:\n  - name: f\n    steps: [regex]\n"),
            p + ":7: regex filter: missing 'pattern'");
  EXPECT_EQ(err("task: e\noutput_type: generate_until\ndataset: {path: x.jsonl}\ndoc_to_text: q\nfilters:\n  - name: f\n    steps:\n      - {function: regex, pattern: \"(\"}\n").rfind(
                p + ":8: invalid regular expression '(': ", 0),
            0u);
  EXPECT_EQ(err("task: e\noutput_type: loglikelihood_rolling\ndataset: {path: x.txt}\ndoc_to_target: text\nnum_fewshot: 1\n"),
            p + ":2: output_type loglikelihood_rolling needs num_fewshot 0");
  EXPECT_EQ(err("task: e\noutput_type: multiple_choice\ndataset: {path: x.de}\n"),
            p + ":3: no `format` given and none implied by the extension of 'x.de' (jsonl, json, csv, text, lines)");
  std::string yaml_error = err("task: [e\n");
  EXPECT_EQ(yaml_error.rfind(p + ":", 0), 0u) << yaml_error;
  EXPECT_NE(yaml_error.find(": invalid YAML: "), std::string::npos) << yaml_error;
}

// A template error inside a '|' block names the exact line.
TEST(TaskFile, TemplateErrorLinesInBlocks) {
  TaskDir d;
  d.data("x.jsonl", "{\"question\": \"q1\", \"label\": 0}\n{\"question\": \"q2\", \"label\": 1}\n");
  auto f = d.task("arc.yaml", R"Y(task: arc
output_type: multiple_choice
dataset:
  path: x.jsonl
doc_to_text: |
  Question:
  {{ questoin }}
  Answer:
doc_to_choice: ["yes", "no"]
doc_to_target: label
)Y");
  TaskConfig t = load_task_file(f);
  TaskData data = load_task_data(t, d.root());
  EXPECT_EQ(error_of([&] { prepare(t, data); }), d.task_path("arc.yaml") + ":7: unknown field 'questoin' in doc_to_text");
}

// ---------------------------------------------------------------------------------------------
// Prepare: prompts, malformed docs

TEST(Prepare, MultipleChoiceRequests) {
  TaskDir d;
  d.data("mc.jsonl", kMcData);
  TaskConfig t = load_task_file(d.task("mc.yaml", kMcTask));
  TaskData data = load_task_data(t, d.root());
  ASSERT_EQ(data.docs.size(), 3u);
  EXPECT_EQ(data.sources[1].row, 2);
  PreparedTask p = prepare(t, data);
  ASSERT_EQ(p.docs.size(), 3u);
  EXPECT_EQ(p.docs[1].context, "Question: two\nAnswer:");
  EXPECT_EQ(p.docs[1].choices, (std::vector<std::string>{"ccc", "dd", "e"}));
  EXPECT_EQ(p.docs[2].gold, 1);
  std::vector<Request> reqs = build_requests(t, p);
  ASSERT_EQ(reqs.size(), 7u);
  EXPECT_EQ(reqs[2].type, RequestType::loglikelihood);
  EXPECT_EQ(reqs[2].context, "Question: two\nAnswer:");
  EXPECT_EQ(reqs[2].continuation, " ccc");
  EXPECT_EQ(reqs[2].doc, 1u);
  EXPECT_EQ(reqs[2].choice, 0);
  EXPECT_EQ(reqs[6].continuation, " g");
  EXPECT_EQ(reqs[6].choice, 1);
  // limit
  EXPECT_EQ(load_task_data(t, d.root(), {.limit = 2, .skip_bad = std::nullopt}).docs.size(), 2u);
}

TEST(Prepare, TargetsAsIndexDigitsOrChoiceText) {
  TaskDir d;
  d.data("t.jsonl",
         "{\"c\": [\"x\", \"y\"], \"t\": 1}\n{\"c\": [\"x\", \"y\"], \"t\": \"0\"}\n{\"c\": [\"x\", \"y\"], \"t\": \"y\"}\n");
  TaskConfig t = load_task_file(d.task("t.yaml",
                                       "task: t\noutput_type: multiple_choice\ndataset: {path: t.jsonl}\ndoc_to_text: q\n"
                                       "doc_to_choice: c\ndoc_to_target: t\n"));
  PreparedTask p = prepare(t, load_task_data(t, d.root()));
  ASSERT_EQ(p.docs.size(), 3u);
  EXPECT_EQ(p.docs[0].gold, 1);
  EXPECT_EQ(p.docs[1].gold, 0);
  EXPECT_EQ(p.docs[2].gold, 1);
}

class MalformedRows : public ::testing::Test {
 protected:
  void SetUp() override {
    d.data("m.jsonl",
           "{\"q\": \"fine\", \"c\": [\"a\", \"b\"], \"t\": 0}\n"
           "{\"q\": \"bad label\", \"c\": [\"a\", \"b\"], \"t\": 5}\n"
           "{\"q\": \"no choices\", \"c\": [], \"t\": 0}\n"
           "{\"c\": [\"a\", \"b\"], \"t\": 1}\n"
           "{\"q\": \"empty choice\", \"c\": [\"a\", \"\"], \"t\": 0}\n"
           "{\"q\": \"bad utf8 \xe2\x82\", \"c\": [\"a\", \"b\"], \"t\": 0}\n"
           "{\"q\": \"not in choices\", \"c\": [\"a\", \"b\"], \"t\": \"z\"}\n"
           "{\"q\": \"fine too\", \"c\": [\"a\", \"b\"], \"t\": 1}\n");
    yaml = "task: m\noutput_type: multiple_choice\ndataset:\n  path: m.jsonl\n";
  }
  std::string run(const std::string& extra, const std::string& text = "\"{{ q }}\"") {
    TaskConfig t = load_task_file(d.task("m.yaml", yaml + extra + "doc_to_text: " + text + "\ndoc_to_choice: c\ndoc_to_target: t\n"));
    return error_of([&] { prepare(t, load_task_data(t, d.root())); });
  }
  TaskDir d;
  std::string yaml;
};

TEST_F(MalformedRows, FirstProblemStopsWithFileAndRow) {
  // Bad UTF-8 is found while reading, before any template runs.
  EXPECT_EQ(run(""), d.data_path("m.jsonl") + ":6: invalid UTF-8 (byte 16 of the record)");
}

TEST_F(MalformedRows, EachKindOfProblem) {
  d.data("m.jsonl",
         "{\"q\": \"fine\", \"c\": [\"a\", \"b\"], \"t\": 0}\n"
         "{\"q\": \"bad label\", \"c\": [\"a\", \"b\"], \"t\": 5}\n");
  const std::string task = d.task_path("m.yaml");
  EXPECT_EQ(run(""), d.data_path("m.jsonl") + ":2: label 5 out of range (2 choices) (doc_to_target at " + task + ":7)");
  d.data("m.jsonl", "{\"q\": \"x\", \"c\": [\"a\"], \"t\": 0}\n{\"q\": \"no choices\", \"c\": [], \"t\": 0}\n");
  EXPECT_EQ(run(""), d.data_path("m.jsonl") + ":2: no choices (doc_to_choice at " + task + ":6)");
  d.data("m.jsonl", "{\"q\": \"x\", \"c\": [\"a\"], \"t\": 0}\n{\"c\": [\"a\"], \"t\": 0}\n");
  EXPECT_EQ(run(""), d.data_path("m.jsonl") + ":2: missing field 'q' (doc_to_text at " + task + ":5)");
  d.data("m.jsonl", "{\"q\": \"x\", \"c\": [\"a\", \"\"], \"t\": 0}\n");
  EXPECT_EQ(run(""), d.data_path("m.jsonl") + ":1: choice 1 is empty (doc_to_choice at " + task + ":6)");
  d.data("m.jsonl", "{\"q\": \"x\", \"c\": [\"a\", \"b\"], \"t\": \"z\"}\n");
  EXPECT_EQ(run(""), d.data_path("m.jsonl") + ":1: target 'z' is not one of the choices (doc_to_target at " + task + ":7)");
  // A field that no doc has is a mistake in the task file.
  d.data("m.jsonl", "{\"q\": \"x\", \"c\": [\"a\", \"b\"], \"t\": 0}\n");
  EXPECT_EQ(run("", "\"{{ qq }}\""), task + ":5: unknown field 'qq' in doc_to_text");
}

TEST_F(MalformedRows, SkipBadSkipsAndCounts) {
  TaskConfig t = load_task_file(d.task("m.yaml", yaml + "  skip_bad: true\ndoc_to_text: \"{{ q }}\"\ndoc_to_choice: c\ndoc_to_target: t\n"));
  TaskData data = load_task_data(t, d.root());
  EXPECT_EQ(data.bad.count, 1);  // the UTF-8 record
  PreparedTask p = prepare(t, data);
  EXPECT_EQ(p.bad.count, 5);     // label, no choices, missing field, empty choice, target text
  ASSERT_EQ(p.docs.size(), 2u);
  EXPECT_EQ(p.docs[0].context, "fine");
  EXPECT_EQ(p.docs[1].context, "fine too");
  EXPECT_EQ(data.sources[p.docs[1].doc].row, 8);
  FakeModel m;
  TaskResult r = evaluate(t, data, m);
  EXPECT_EQ(r.n_docs, 2);
  EXPECT_EQ(r.skipped, 6);
  EXPECT_EQ(r.problems.size(), 6u);
  // skip_bad can be switched off from outside.
  EXPECT_EQ(error_of([&] { load_task_data(t, d.root(), {.limit = std::nullopt, .skip_bad = false}); }),
            d.data_path("m.jsonl") + ":6: invalid UTF-8 (byte 16 of the record)");
}

TEST(Prepare, WhereAndDerivedFields) {
  TaskDir d;
  d.data("s.jsonl", "{\"p\": \"a\", \"g\": \"x\"}\n{\"p\": \"b\", \"g\": \"-\"}\n{\"p\": \"c\", \"g\": \"y\"}\n");
  TaskConfig t = load_task_file(d.task("s.yaml", R"Y(task: s
output_type: generate_until
dataset:
  path: s.jsonl
  where: "{{ g != '-' }}"
fields:
  upper: "{{ p | upper }}"
  both: "{{ [p, g] }}"
doc_to_text: "{{ upper }}{{ both | join('+') }}"
doc_to_target: g
)Y"));
  TaskData data = load_task_data(t, d.root());
  EXPECT_EQ(data.filtered_out, 1);
  ASSERT_EQ(data.docs.size(), 2u);
  EXPECT_EQ(data.docs[1]["both"], Json::parse(R"Y(["c", "y"])Y"));
  PreparedTask p = prepare(t, data);
  EXPECT_EQ(p.docs[1].context, "Cc+y");
  EXPECT_EQ(p.docs[1].references, std::vector<std::string>{"y"});
  EXPECT_EQ(data.sources[1].row, 3);
}

// ---------------------------------------------------------------------------------------------
// Few-shot

TEST(Fewshot, SameSetRandomExcludesTheDocAndIsDeterministic) {
  TaskDir d;
  std::string data;
  for (int i = 0; i < 12; ++i) data += "{\"q\": \"q" + std::to_string(i) + "\", \"a\": \"a" + std::to_string(i) + "\"}\n";
  d.data("g.jsonl", data);
  const std::string yaml =
      "task: g\noutput_type: generate_until\ndataset: {path: g.jsonl}\ndoc_to_text: \"Q: {{ q }}\\nA:\"\n"
      "doc_to_target: a\nnum_fewshot: 3\ndescription: \"D\\n\"\n";
  TaskConfig t = load_task_file(d.task("g.yaml", yaml));
  TaskData td = load_task_data(t, d.root());
  PreparedTask p = prepare(t, td);
  ASSERT_EQ(p.docs.size(), 12u);
  for (size_t i = 0; i < p.docs.size(); ++i) {
    const std::string& c = p.docs[i].context;
    ASSERT_EQ(c.rfind("D\n", 0), 0u);
    const std::string own = "Q: q" + std::to_string(i) + "\nA:";
    ASSERT_TRUE(c.ends_with("\n\n" + own)) << c;
    // exactly 3 examples "Q: qK\nA: aK" with K != i, each followed by the delimiter
    int examples = 0;
    for (int k = 0; k < 12; ++k) {
      const std::string ex = "Q: q" + std::to_string(k) + "\nA: a" + std::to_string(k) + "\n\n";
      if (c.find(ex) != std::string::npos) {
        ++examples;
        EXPECT_NE(static_cast<size_t>(k), i);
      }
    }
    EXPECT_EQ(examples, 3) << c;
  }
  // Deterministic, independent of limit, and the seed matters.
  PreparedTask again = prepare(t, load_task_data(t, d.root(), {.limit = 4, .skip_bad = std::nullopt}));
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(again.docs[i].context, p.docs[i].context);
  TaskConfig t2 = load_task_file(d.task("g2.yaml", yaml + "fewshot_seed: 99\n"));
  PreparedTask other = prepare(t2, load_task_data(t2, d.root()));
  int differ = 0;
  for (size_t i = 0; i < 12; ++i) differ += other.docs[i].context != p.docs[i].context;
  EXPECT_GT(differ, 0);
  // num_fewshot override, and too many
  PreparedTask zero = prepare(t, td, {.num_fewshot = 0});
  EXPECT_EQ(zero.docs[5].context, "D\nQ: q5\nA:");
  EXPECT_EQ(error_of([&] { prepare(t, td, {.num_fewshot = 12}); }),
            d.task_path("g.yaml") + ": num_fewshot 12 but only 11 few-shot examples are available");
}

TEST(Fewshot, SeparateSetMatchedOnPathFieldsFirstN) {
  TaskDir d;
  d.data("mm/test/alg_test.csv", "question,answer\nT1,0\nT2,1\n");
  d.data("mm/test/bio_test.csv", "question,answer\nT3,1\n");
  d.data("mm/dev/alg_dev.csv", "question,answer\nD1,1\nD2,0\nD3,1\n");
  d.data("mm/dev/bio_dev.csv", "question,answer\nD4,0\nD5,1\n");
  TaskConfig t = load_task_file(d.task("mm.yaml", R"Y(task: mm
output_type: multiple_choice
dataset:
  path: mm/test/{subject}_test.csv
fewshot_dataset:
  path: mm/dev/{subject}_dev.csv
fewshot_sampler: first_n
num_fewshot: 2
group_by: subject
description: "About {{ subject }}.\n\n"
doc_to_text: "{{ question }}\nAnswer:"
doc_to_choice: ["A", "B"]
doc_to_target: answer
)Y"));
  TaskData data = load_task_data(t, d.root());
  EXPECT_FALSE(data.fewshot_is_eval_set);
  PreparedTask p = prepare(t, data);
  ASSERT_EQ(p.docs.size(), 3u);
  EXPECT_EQ(p.docs[0].context, "About alg.\n\nD1\nAnswer: B\n\nD2\nAnswer: A\n\nT1\nAnswer:");
  EXPECT_EQ(p.docs[1].context, p.docs[0].context.substr(0, p.docs[0].context.size() - 10) + "T2\nAnswer:");
  EXPECT_EQ(p.docs[2].context, "About bio.\n\nD4\nAnswer: A\n\nD5\nAnswer: B\n\nT3\nAnswer:");
  EXPECT_EQ(p.docs[2].group, "bio");
  EXPECT_EQ(error_of([&] { prepare(t, data, {.num_fewshot = 3}); }),
            d.task_path("mm.yaml") + ": num_fewshot 3 but only 2 few-shot examples are available for subject='bio'");
}

TEST(Fewshot, PartialEvaluationExamples) {
  TaskDir d;
  d.data("w.jsonl",
         "{\"s\": \"A beat B so _ won.\", \"o1\": \"A\", \"o2\": \"B\", \"ans\": \"1\"}\n"
         "{\"s\": \"C met D and _ left.\", \"o1\": \"C\", \"o2\": \"D\", \"ans\": \"2\"}\n");
  TaskConfig t = load_task_file(d.task("w.yaml", R"Y(task: w
output_type: multiple_choice
dataset: {path: w.jsonl}
doc_to_choice:
  - "{{ (s | split('_'))[0] }}{{ o1 }}"
  - "{{ (s | split('_'))[0] }}{{ o2 }}"
doc_to_continuation: "{{ (s | split('_'))[1] | trim }}"
doc_to_target: "{{ (ans | int) - 1 }}"
fewshot_sampler: first_n
)Y"));
  TaskData data = load_task_data(t, d.root());
  PreparedTask p = prepare(t, data);
  auto reqs = build_requests(t, p);
  ASSERT_EQ(reqs.size(), 4u);
  EXPECT_EQ(reqs[0].context, "A beat B so A");
  EXPECT_EQ(reqs[1].context, "A beat B so B");
  EXPECT_EQ(reqs[0].continuation, " won.");
  EXPECT_EQ(reqs[1].continuation, " won.");
  EXPECT_EQ(p.docs[1].gold, 1);
  PreparedTask one = prepare(t, data, {.num_fewshot = 1});
  auto r1 = build_requests(t, one);
  EXPECT_EQ(r1[2].context, "A beat B so A won.\n\nC met D and C");
}

// ---------------------------------------------------------------------------------------------
// Scoring with a fake model

TEST(Score, AccuracyAndNormalisedAccuracy) {
  TaskDir d;
  d.data("mc.jsonl", std::string(kMcData) + "{\"q\": \"four\", \"choices\": [\"a\", \"bbbb\"], \"gold\": 1}\n");
  TaskConfig t = load_task_file(d.task("mc.yaml", std::string(kMcTask) + "metric_list: [acc, acc_norm, ece]\n"));
  TaskData data = load_task_data(t, d.root());
  FakeModel m;
  // doc 1: argmax " b" (wrong), normalised " aa" -2/2 > -1.5/1 (right)
  // doc 2: argmax " dd" (wrong), normalised " ccc" -1 (right)
  // doc 3: argmax " g" (right), normalised " ffff" -0.5 > -1 (wrong)
  // doc 4: argmax " a" (wrong), normalised by the choice's bytes " bbbb" -3.5/4 > -1/1 (right); dividing by
  //        the continuation's bytes (with the delimiter) would pick " a" (-1/2 > -3.5/5)
  m.ll = table({{" aa", -2.0}, {" b", -1.5}, {" ccc", -3.0}, {" dd", -2.5}, {" e", -2.9}, {" ffff", -2.0}, {" g", -1.0},
                {" a", -1.0}, {" bbbb", -3.5}});
  TaskResult r = evaluate(t, data, m);
  EXPECT_EQ(m.calls, 1);  // one batch
  EXPECT_EQ(r.n_docs, 4);
  ASSERT_TRUE(r.metric("acc"));
  EXPECT_NEAR(r.metric("acc")->value, 0.25, 1e-12);
  EXPECT_NEAR(r.metric("acc")->stderr_value, 0.25, 1e-12);  // sample sd 0.5, n = 4
  EXPECT_EQ(r.metric("acc")->n, 4);
  EXPECT_NEAR(r.metric("acc_norm")->value, 0.75, 1e-12);
  EXPECT_TRUE(r.metric("acc")->higher_is_better);
  // ECE over the softmax confidence of the chosen answer: bins 6, 4, 7 and 9, one doc each.
  EXPECT_NEAR(r.metric("ece")->value, 0.5636864304131788, 1e-9);
  EXPECT_FALSE(r.metric("ece")->higher_is_better);
  ASSERT_EQ(r.docs.size(), 4u);
  EXPECT_EQ(r.docs[0].predicted, 1);
  EXPECT_EQ(r.docs[0].scores.at("acc"), 0.0);
  EXPECT_EQ(r.docs[0].scores.at("acc_norm"), 1.0);
  EXPECT_EQ(r.docs[3].scores.at("acc_norm"), 1.0);
  EXPECT_EQ(r.docs[2].logprobs, (std::vector<double>{-2.0, -1.0}));
}

TEST(Score, Mc2IsTheProbabilityMassOfTrueAnswers) {
  TaskDir d;
  d.data("tq.json",
         R"Y([{"question": "Q", "mc2_targets": {"t1": 1, "t2": 1, "f1": 0}},
             {"question": "R", "mc2_targets": {"f2": 0, "t3": 1}}])Y");
  TaskConfig t = load_task_file(d.task("tq.yaml", R"Y(task: tq
output_type: multiple_choice
dataset: {path: tq.json}
doc_to_text: "Q: {{ question }}\nA:"
doc_to_choice: "{{ mc2_targets | keys }}"
choice_labels: "{{ mc2_targets | values }}"
doc_to_target: "{{ mc2_targets | values | index_of(1) }}"
metric_list: [mc2, acc]
)Y"));
  FakeModel m;
  m.ll = table({{" t1", -1.0}, {" t2", -2.0}, {" f1", -0.5}, {" f2", -1.0}, {" t3", -1.0}});
  TaskResult r = evaluate(t, load_task_data(t, d.root()), m);
  EXPECT_NEAR(r.docs[0].scores.at("mc2"), 0.4534506127338204, 1e-12);
  EXPECT_NEAR(r.docs[1].scores.at("mc2"), 0.5, 1e-12);
  EXPECT_NEAR(r.metric("mc2")->value, (0.4534506127338204 + 0.5) / 2, 1e-12);
  EXPECT_EQ(r.docs[1].gold, 1);
}

TEST(Score, LoglikelihoodAccuracyAndPerplexity) {
  TaskDir d;
  d.data("l.txt", "a b c\ndd ee\n");
  TaskConfig t = load_task_file(d.task("l.yaml", R"Y(task: l
output_type: loglikelihood
dataset: {path: l.txt, format: lines}
doc_to_text: "{{ (text | split(' '))[:-1] | join(' ') }}"
doc_to_target: "{{ ' ' ~ (text | split(' '))[-1] }}"
target_delimiter: ""
)Y"));
  FakeModel m;
  m.ll = [](const Request& r) {
    return LoglikelihoodResult{-static_cast<double>(r.continuation.size()), r.continuation.size() < 3, 1};
  };
  TaskResult r = evaluate(t, load_task_data(t, d.root()), m);
  ASSERT_EQ(m.seen.size(), 2u);
  EXPECT_EQ(m.seen[0].context, "a b");
  EXPECT_EQ(m.seen[0].continuation, " c");
  EXPECT_EQ(m.seen[1].continuation, " ee");
  EXPECT_NEAR(r.metric("acc")->value, 0.5, 1e-12);
  EXPECT_NEAR(r.metric("perplexity")->value, 12.182493960703473, 1e-9);  // exp(-(-2 - 3) / 2)
  EXPECT_EQ(r.metric("perplexity")->stderr_method, "bootstrap");
  EXPECT_GT(r.metric("perplexity")->stderr_value, 0);
}

TEST(Score, RollingPerplexities) {
  TaskDir d;
  d.data("r.txt", "a b c\n x  y\n");
  TaskConfig t = load_task_file(d.task("r.yaml", R"Y(task: r
output_type: loglikelihood_rolling
dataset: {path: r.txt, format: lines}
doc_to_target: text
metric_list: [word_perplexity, byte_perplexity, bits_per_byte, perplexity]
)Y"));
  FakeModel m;  // -0.5 per byte, one token per 2 bytes
  TaskResult r = evaluate(t, load_task_data(t, d.root()), m);
  ASSERT_EQ(m.seen.size(), 2u);
  EXPECT_EQ(m.seen[1].type, RequestType::loglikelihood_rolling);
  EXPECT_EQ(m.seen[1].context, "");
  EXPECT_EQ(m.seen[1].continuation, " x  y");
  EXPECT_EQ(r.docs[1].words, 3);  // re.split(r"\s+", " x  y") = ['', 'x', 'y']
  EXPECT_EQ(r.docs[1].bytes, 5);
  EXPECT_NEAR(r.metric("word_perplexity")->value, 2.300975890892825, 1e-9);   // exp(5 / 6)
  EXPECT_NEAR(r.metric("byte_perplexity")->value, 1.6487212707001282, 1e-9);  // exp(5 / 10)
  EXPECT_NEAR(r.metric("bits_per_byte")->value, 0.7213475204444817, 1e-9);    // 0.5 / ln 2
  EXPECT_NEAR(r.metric("perplexity")->value, 3.4903429574618414, 1e-9);       // exp(5 / 4)
  EXPECT_FALSE(r.metric("word_perplexity")->higher_is_better);
  EXPECT_EQ(count_words("a b c"), 3);
  EXPECT_EQ(count_words(""), 1);
  EXPECT_EQ(count_words("a\u3000b\n"), 3);
}

TEST(Score, GenerationFiltersAndExactMatch) {
  TaskDir d;
  d.data("g.jsonl",
         "{\"question\": \"q1\", \"answer\": \"work\\n#### 1,234\"}\n"
         "{\"question\": \"q2\", \"answer\": \"#### 78\"}\n"
         "{\"question\": \"q3\", \"answer\": \"#### 10\"}\n");
  TaskConfig t = load_task_file(d.task("g.yaml", R"Y(task: g
output_type: generate_until
dataset: {path: g.jsonl}
doc_to_text: "Question: {{ question }}\nAnswer:"
doc_to_target: answer
generation_kwargs:
  until: ["Question:"]
  max_gen_toks: 16
filters:
  - name: strict-match
    steps:
      - {function: regex, pattern: "#### (\\-?[0-9\\.\\,]+)"}
      - take_first
  - name: flexible-extract
    steps:
      - {function: regex, pattern: "(-?[$0-9.,]{2,})|(-?[0-9]+)", select: -1}
      - take_first
metric_list:
  - metric: exact_match
    ignore_case: true
    regexes_to_ignore: [",", "\\$", "(?s).*#### ", "\\.$"]
)Y"));
  FakeModel m;
  std::map<std::string, std::string> answers = {{"q1", "So 1234.\n#### 1,234"}, {"q2", "I think 56 and then 78"}, {"q3", "#### 9"}};
  m.gen = [&](const Request& r) {
    EXPECT_EQ(r.until, std::vector<std::string>{"Question:"});
    EXPECT_EQ(r.max_gen_toks, 16);
    return answers.at(r.context.substr(10, 2));
  };
  TaskResult r = evaluate(t, load_task_data(t, d.root()), m);
  EXPECT_NEAR(r.metric("exact_match,strict-match")->value, 1.0 / 3, 1e-12);
  EXPECT_NEAR(r.metric("exact_match,flexible-extract")->value, 2.0 / 3, 1e-12);
  EXPECT_EQ(r.docs[1].answers.at("strict-match"), "[invalid]");
  EXPECT_EQ(r.docs[1].answers.at("flexible-extract"), "78");
  EXPECT_EQ(r.docs[0].answers.at("strict-match"), "1,234");
  EXPECT_EQ(r.docs[2].answers.at("flexible-extract"), "9");
  EXPECT_EQ(r.docs[0].generations, std::vector<std::string>{"So 1234.\n#### 1,234"});
}

TEST(Score, FilterSteps) {
  FilterStep re;
  re.kind = FilterStep::Kind::regex;
  re.regex = std::make_shared<const std::regex>(compile_pattern("(a)(b)?|(c)"));
  EXPECT_EQ(apply_step(re, "xx c a"), "c");  // first non-empty group of the first match
  re.select = -1;
  EXPECT_EQ(apply_step(re, "xx c ab"), "a");
  re.group = 2;
  EXPECT_EQ(apply_step(re, "xx c ab"), "b");
  re.select = 5;
  EXPECT_EQ(apply_step(re, "ab"), "[invalid]");
  FilterPipeline p;
  p.steps.push_back(FilterStep{FilterStep::Kind::take_first, "", nullptr, 0, 0, ""});
  p.steps.push_back(FilterStep{FilterStep::Kind::lowercase, "", nullptr, 0, 0, ""});
  p.steps.push_back(FilterStep{FilterStep::Kind::strip, "", nullptr, 0, 0, ""});
  EXPECT_EQ(apply_filters(p, {"  HeLLo ", "second"}), "hello");
  EXPECT_TRUE(std::regex_search(std::string("a\nb"), compile_pattern("(?s)a.b")));
  EXPECT_FALSE(std::regex_search(std::string("a\nb"), compile_pattern("a.b")));
  EXPECT_TRUE(std::regex_search(std::string("ABC"), compile_pattern("(?i)abc")));
  ExactMatchOptions em;
  em.ignore_case = true;
  em.ignore_punctuation = true;
  EXPECT_EQ(exact_match_normalize("Hello, World!", em), "hello world");
}

TEST(Score, SummaryAndTranslationMetrics) {
  TaskDir d;
  d.data("s.jsonl", "{\"src\": \"one\", \"ref\": \"the cat sat on the mat\"}\n{\"src\": \"two\", \"ref\": \"a dog ran in the park\"}\n");
  TaskConfig t = load_task_file(d.task("s.yaml", R"Y(task: s
output_type: generate_until
dataset: {path: s.jsonl}
doc_to_text: "{{ src }}:"
doc_to_target: ref
filters:
  - name: none
    steps: [strip]
metric_list: [rouge1, rouge2, rougeL, rougeLsum, bleu, chrf, f1, exact_match]
)Y"));
  std::vector<std::string> hyp = {"the cat sat on a mat", "a dog ran in the park"};
  FakeModel m;
  m.gen = [&](const Request& r) { return "  " + hyp[r.context == "one:" ? 0 : 1] + "\n"; };
  TaskResult r = evaluate(t, load_task_data(t, d.root()), m);
  std::vector<std::vector<std::string>> refs = {{"the cat sat on the mat"}, {"a dog ran in the park"}};
  EXPECT_NEAR(r.metric("bleu")->value, corpus_bleu(hyp, refs).score, 1e-9);
  EXPECT_NEAR(r.metric("chrf")->value, corpus_chrf(hyp, refs).score, 1e-9);
  EXPECT_NEAR(r.metric("rouge1")->value, (rouge(hyp[0], refs[0][0], true).rouge1.fmeasure + 1.0) / 2, 1e-12);
  EXPECT_NEAR(r.metric("rougeL")->value, (rouge(hyp[0], refs[0][0], true).rougeL.fmeasure + 1.0) / 2, 1e-12);
  EXPECT_NEAR(r.metric("exact_match")->value, 0.5, 1e-12);
  EXPECT_NEAR(r.docs[1].scores.at("f1"), 1.0, 1e-12);
  EXPECT_LT(r.docs[0].scores.at("bleu"), 100.0);
  EXPECT_EQ(r.metric("bleu")->stderr_method, "bootstrap");
}

TEST(Score, GroupByGivesSubResults) {
  TaskDir d;
  d.data("g.jsonl",
         "{\"k\": \"x\", \"c\": [\"aa\", \"b\"], \"t\": 0}\n{\"k\": \"y\", \"c\": [\"aa\", \"b\"], \"t\": 1}\n"
         "{\"k\": \"y\", \"c\": [\"aa\", \"b\"], \"t\": 1}\n");
  TaskConfig t = load_task_file(d.task("g.yaml",
                                       "task: g\noutput_type: multiple_choice\ndataset: {path: g.jsonl}\ndoc_to_text: q\n"
                                       "doc_to_choice: c\ndoc_to_target: t\ngroup_by: k\nmetric_list: [acc]\n"));
  FakeModel m;  // -(bytes): " b" always wins
  TaskResult r = evaluate(t, load_task_data(t, d.root()), m);
  EXPECT_NEAR(r.metric("acc")->value, 2.0 / 3, 1e-12);
  ASSERT_EQ(r.groups.size(), 2u);
  EXPECT_NEAR(r.groups.at("x").front().value, 0.0, 1e-12);
  EXPECT_NEAR(r.groups.at("y").front().value, 1.0, 1e-12);
  EXPECT_EQ(r.groups.at("y").front().n, 2);
  // groups of tasks
  TaskResult other = r;
  other.metrics.front().value = 0.0;
  other.metrics.front().n = 1;
  auto agg = aggregate_tasks({r, other}, true);
  ASSERT_EQ(agg.size(), 1u);
  EXPECT_NEAR(agg[0].value, (2.0 / 3 * 3 + 0) / 4, 1e-12);
  EXPECT_NEAR(aggregate_tasks({r, other}, false)[0].value, (2.0 / 3) / 2, 1e-12);
}

TEST(Score, MultiTurnGeneration) {
  TaskDir d;
  d.data("mt.jsonl", "{\"id\": 1, \"turns\": [\"Hi\", \"More\"]}\n{\"id\": 2, \"turns\": [\"Solo\"]}\n");
  TaskConfig t = load_task_file(d.task("mt.yaml", R"Y(task: mt
output_type: generate_until
dataset: {path: mt.jsonl}
description: "SYS\n"
doc_to_turns: turns
turn_template: "U{{ turn_index }}: {{ turn }}\nA:"
turn_delimiter: "\n"
generation_kwargs: {until: ["U"], max_gen_toks: 8}
)Y"));
  FakeModel m;
  m.gen = [](const Request& r) { return " ans" + std::to_string(r.turn); };
  TaskResult r = evaluate(t, load_task_data(t, d.root()), m);
  ASSERT_EQ(m.seen.size(), 3u);
  EXPECT_EQ(m.calls, 2);
  EXPECT_EQ(m.seen[0].context, "SYS\nU0: Hi\nA:");
  EXPECT_EQ(m.seen[1].context, "SYS\nU0: Solo\nA:");
  EXPECT_EQ(m.seen[2].turn, 1);
  EXPECT_EQ(m.seen[2].context, "SYS\nU0: Hi\nA: ans0\nU1: More\nA:");
  EXPECT_EQ(r.docs[0].generations, (std::vector<std::string>{" ans0", " ans1"}));
  EXPECT_EQ(r.docs[1].generations, std::vector<std::string>{" ans0"});
  EXPECT_TRUE(r.metrics.empty());
}

TEST(Score, ModelAnswerCountsAreChecked) {
  TaskDir d;
  d.data("mc.jsonl", kMcData);
  TaskConfig t = load_task_file(d.task("mc.yaml", kMcTask));
  class Short : public FakeModel {
   public:
    std::vector<LoglikelihoodResult> loglikelihood(const std::vector<Request>& r) override {
      auto out = FakeModel::loglikelihood(r);
      out.pop_back();
      return out;
    }
  } m;
  EXPECT_EQ(error_of([&] { evaluate(t, load_task_data(t, d.root()), m); }),
            d.task_path("mc.yaml") + ": the model returned 6 loglikelihood results for 7 requests");
}

// ---------------------------------------------------------------------------------------------
// Registry

TEST(Registry, TasksGroupsAndIncludeOnlyFiles) {
  TaskDir d;
  d.task("_base.yaml", "output_type: multiple_choice\n");
  d.task("a.yaml", std::string(kMcTask));
  d.task("b.yaml", "include: a.yaml\ntask: b\n");
  d.task("grp.yaml", "group: grp\ntask: [mc, b]\naggregate: tasks\n");
  d.task("outer.yaml", "group: outer\ntask: [grp, mc]\n");
  TaskRegistry reg(d.tasks());
  EXPECT_EQ(reg.task_names(), (std::vector<std::string>{"b", "mc"}));
  EXPECT_EQ(reg.group_names(), (std::vector<std::string>{"grp", "outer"}));
  EXPECT_FALSE(reg.group("grp").weight_by_docs);
  EXPECT_EQ(reg.load("b").name, "b");
  EXPECT_EQ(reg.expand("outer"), (std::vector<std::string>{"mc", "b"}));
  EXPECT_EQ(reg.expand("mc"), std::vector<std::string>{"mc"});
  EXPECT_EQ(error_of([&] { reg.expand("nope"); }), d.tasks().string() + ": no task or group named 'nope'");
  d.task("bad_group.yaml", "group: bg\ntask: [mc, zz]\n");
  EXPECT_EQ(error_of([&] { TaskRegistry r2(d.tasks()); }), d.task_path("bad_group.yaml") + ": group 'bg' names unknown task 'zz'");
  std::filesystem::remove(d.tasks() / "bad_group.yaml");
  d.task("dup.yaml", "task: b\noutput_type: multiple_choice\n");
  EXPECT_EQ(error_of([&] { TaskRegistry r3(d.tasks()); }).find("name 'b' is also defined in"), d.task_path("dup.yaml").size() + 2);
}

}  // namespace
}  // namespace qeval::eval::task
