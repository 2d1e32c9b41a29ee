#include "qeval/eval/task/task.h"

#include "qeval/eval/task/language_model.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

namespace qeval::eval::task {

namespace fs = std::filesystem;

const char* output_type_name(OutputType t) {
  switch (t) {
    case OutputType::loglikelihood: return "loglikelihood";
    case OutputType::multiple_choice: return "multiple_choice";
    case OutputType::loglikelihood_rolling: return "loglikelihood_rolling";
    case OutputType::generate_until: return "generate_until";
  }
  return "?";
}

const char* request_type_name(RequestType t) {
  switch (t) {
    case RequestType::loglikelihood: return "loglikelihood";
    case RequestType::loglikelihood_rolling: return "loglikelihood_rolling";
    case RequestType::generate_until: return "generate_until";
  }
  return "?";
}

bool metric_higher_is_better(const std::string& name) {
  static const std::set<std::string> lower = {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte",
                                              "ece"};
  return lower.count(name) == 0;
}

const std::map<std::string, std::vector<std::string>>& known_dimensions() {
  static const std::map<std::string, std::vector<std::string>> dims = {
      {"quality",
       {"knowledge_capacity/language_modeling", "knowledge_capacity/knowledge_qa", "reasoning", "mathematics",
        "summarization", "translation"}},
      {"alignment", {"helpfulness", "honesty", "harmlessness_bias"}},
      {"robustness", {"adversarial", "distribution_shift"}},
  };
  return dims;
}

namespace {

// ---------------------------------------------------------------------------------------------
// YAML with includes: every value remembers the file it came from.

struct Source {
  std::string name;  // as displayed in messages
  std::string text;
};

struct Entry {
  YAML::Node node;
  const Source* src = nullptr;
  bool is_map = false;
  std::vector<std::string> order;    // keys in order (maps)
  std::map<std::string, Entry> map;  // children (maps)
  std::vector<Entry> items;          // children (sequences)
  YAML::Node key_node;               // the key, for its line

  int line() const { return node.Mark().line >= 0 ? node.Mark().line + 1 : 0; }
  std::string where() const { return fmt::format("{}:{}", src->name, line()); }
  const Entry* get(const std::string& k) const {
    auto it = map.find(k);
    return it == map.end() ? nullptr : &it->second;
  }
};

[[noreturn]] void fail_at(const Entry& e, const std::string& problem) { throw Error(fmt::format("{}: {}", e.where(), problem)); }

Entry make_entry(const YAML::Node& node, const Source* src) {
  Entry e;
  e.node = node;
  e.src = src;
  if (node.IsMap()) {
    e.is_map = true;
    for (auto it = node.begin(); it != node.end(); ++it) {
      std::string k;
      try {
        k = it->first.as<std::string>();
      } catch (const YAML::Exception&) {
        throw Error(fmt::format("{}:{}: keys must be strings", src->name, it->first.Mark().line + 1));
      }
      if (e.map.count(k)) throw Error(fmt::format("{}:{}: duplicate key '{}'", src->name, it->first.Mark().line + 1, k));
      Entry child = make_entry(it->second, src);
      child.key_node = it->first;
      e.order.push_back(k);
      e.map.emplace(k, std::move(child));
    }
  } else if (node.IsSequence()) {
    for (const auto& n : node) e.items.push_back(make_entry(n, src));
  }
  return e;
}

// Maps merge key by key (the overriding file wins); anything else is replaced.
void merge_into(Entry& base, const Entry& over) {
  if (!base.is_map || !over.is_map) {
    base = over;
    return;
  }
  for (const std::string& k : over.order) {
    auto it = base.map.find(k);
    if (it == base.map.end()) {
      base.order.push_back(k);
      base.map.emplace(k, over.map.at(k));
    } else {
      merge_into(it->second, over.map.at(k));
    }
  }
}

class TaskFileReader {
 public:
  Entry read(const fs::path& path, const std::string& display, int depth = 0) {
    if (depth > 8) throw Error(fmt::format("{}: includes nested too deeply (a cycle?)", display));
    std::ifstream in(path, std::ios::binary);
    if (!in) fail_file(display, "cannot open task file");
    std::ostringstream ss;
    ss << in.rdbuf();
    sources_.push_back(std::make_unique<Source>(Source{display, ss.str()}));
    const Source* src = sources_.back().get();
    YAML::Node root;
    try {
      root = YAML::Load(src->text);
    } catch (const YAML::Exception& e) {
      throw Error(fmt::format("{}:{}: invalid YAML: {}", display, e.mark.line + 1, e.msg));
    }
    if (!root.IsMap()) throw Error(fmt::format("{}: a task file is a YAML mapping", display));
    Entry top = make_entry(root, src);
    const Entry* inc = top.get("include");
    if (inc == nullptr) return top;
    std::vector<std::string> includes;
    if (inc->node.IsScalar()) {
      includes.push_back(inc->node.as<std::string>());
    } else if (inc->node.IsSequence()) {
      for (const auto& n : inc->node) includes.push_back(n.as<std::string>());
    } else {
      fail_at(*inc, "include: expected a file name or a list of file names");
    }
    Entry merged;
    bool first = true;
    for (const std::string& f : includes) {
      fs::path p = path.parent_path() / f;
      std::string disp = (fs::path(display).parent_path() / f).lexically_normal().string();
      if (!fs::exists(p)) fail_at(*inc, fmt::format("included file '{}' not found", f));
      Entry e = read(p, disp, depth + 1);
      if (first) {
        merged = std::move(e);
        first = false;
      } else {
        merge_into(merged, e);
      }
    }
    // The including file's own keys win.
    Entry self = top;
    self.map.erase("include");
    self.order.erase(std::remove(self.order.begin(), self.order.end(), "include"), self.order.end());
    merge_into(merged, self);
    return merged;
  }

  const Source* source_of(const Entry& e) const { return e.src; }

 private:
  std::vector<std::unique_ptr<Source>> sources_;
};

void check_keys(const Entry& e, const std::set<std::string>& allowed, const std::string& what) {
  if (!e.is_map) fail_at(e, what + ": expected a mapping");
  for (const std::string& k : e.order) {
    if (allowed.count(k)) continue;
    const Entry& c = e.map.at(k);
    int line = c.key_node.Mark().line + 1;
    throw Error(fmt::format("{}:{}: unknown key '{}'{}", c.src->name, line, k, what.empty() ? "" : " in " + what));
  }
}

std::string scalar(const Entry& e, const std::string& key) {
  if (!e.node.IsScalar()) fail_at(e, key + ": expected a single value");
  return e.node.as<std::string>();
}

int64_t integer(const Entry& e, const std::string& key) {
  std::string s = scalar(e, key);
  try {
    size_t used = 0;
    long long v = std::stoll(s, &used);
    if (used != s.size()) throw std::invalid_argument(s);
    return v;
  } catch (const std::exception&) {
    fail_at(e, fmt::format("{}: expected an integer, found '{}'", key, s));
  }
}

bool boolean(const Entry& e, const std::string& key) {
  std::string s = scalar(e, key);
  if (s == "true" || s == "True" || s == "yes") return true;
  if (s == "false" || s == "False" || s == "no") return false;
  fail_at(e, fmt::format("{}: expected true or false, found '{}'", key, s));
}

std::vector<std::string> string_list(const Entry& e, const std::string& key) {
  std::vector<std::string> out;
  if (e.node.IsScalar()) {
    out.push_back(e.node.as<std::string>());
    return out;
  }
  if (!e.node.IsSequence()) fail_at(e, key + ": expected a list of strings");
  for (const auto& n : e.node) {
    if (!n.IsScalar()) throw Error(fmt::format("{}:{}: {}: expected a string", e.src->name, n.Mark().line + 1, key));
    out.push_back(n.as<std::string>());
  }
  return out;
}

TemplateOrigin origin_of(const YAML::Node& n, const Source* src, const std::string& key) {
  TemplateOrigin o;
  o.file = src->name;
  o.line = n.Mark().line >= 0 ? n.Mark().line + 1 : 0;
  o.key = key;
  const size_t pos = n.Mark().pos >= 0 ? static_cast<size_t>(n.Mark().pos) : std::string::npos;
  o.block = pos < src->text.size() && src->text[pos] == '|';
  return o;
}

bool is_field_path(const std::string& s) {
  if (s.empty()) return false;
  bool start = true;
  for (char c : s) {
    if (c == '.') {
      if (start) return false;
      start = true;
      continue;
    }
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (start && !letter) return false;
    if (!letter && !digit) return false;
    start = false;
  }
  return !start;
}

struct Builder {
  const CustomFilters* custom = nullptr;

  TemplatePtr tmpl(const Entry& e, const std::string& key, bool field_shorthand = false) const {
    if (!e.node.IsScalar()) fail_at(e, key + ": expected a template string");
    std::string text = e.node.as<std::string>();
    if (field_shorthand && text.find("{{") == std::string::npos && text.find("{%") == std::string::npos &&
        is_field_path(text) && text != "true" && text != "false")
      text = "{{ " + text + " }}";
    return Template::parse(text, origin_of(e.node, e.src, key), *custom);
  }
};

DatasetSpec parse_dataset(const Entry& e, const std::string& what, bool allow_join, TemplatePtr* where,
                          int64_t* limit, const Builder& b) {
  std::set<std::string> allowed = {"path",     "format",       "records",          "header", "columns",
                                   "field",    "separator",    "doc_start",        "lines_per_doc",
                                   "normalize_newlines",       "skip_bad"};
  if (allow_join) allowed.insert("join");
  if (where != nullptr) allowed.insert("where");
  if (limit != nullptr) allowed.insert("limit");
  check_keys(e, allowed, what);
  DatasetSpec s;
  s.origin = e.where();
  const Entry* p = e.get("path");
  if (p == nullptr) fail_at(e, what + ": missing 'path'");
  s.path = scalar(*p, "path");
  s.origin = p->where();
  if (const Entry* x = e.get("format")) {
    s.format = scalar(*x, "format");
    static const std::set<std::string> formats = {"jsonl", "json", "csv", "text", "lines"};
    if (!formats.count(s.format)) fail_at(*x, fmt::format("unknown format '{}' (jsonl, json, csv, text, lines)", s.format));
  }
  if (const Entry* x = e.get("records")) s.records = scalar(*x, "records");
  if (const Entry* x = e.get("header")) s.header = boolean(*x, "header");
  if (const Entry* x = e.get("columns")) s.columns = string_list(*x, "columns");
  if (const Entry* x = e.get("field")) s.field = scalar(*x, "field");
  if (const Entry* x = e.get("separator")) s.separator = scalar(*x, "separator");
  if (const Entry* x = e.get("doc_start")) s.doc_start = scalar(*x, "doc_start");
  if (const Entry* x = e.get("lines_per_doc")) {
    s.lines_per_doc = static_cast<int>(integer(*x, "lines_per_doc"));
    if (s.lines_per_doc < 1) fail_at(*x, "lines_per_doc must be >= 1");
  }
  if (const Entry* x = e.get("normalize_newlines")) s.normalize_newlines = boolean(*x, "normalize_newlines");
  if (const Entry* x = e.get("skip_bad")) s.skip_bad = boolean(*x, "skip_bad");
  // Check the format now so that a missing one is a task-file error.
  const std::string fmt_name = dataset_format(s);
  if (s.lines_per_doc > 1 && fmt_name != "lines") fail_at(e, "lines_per_doc is for the lines format");
  if (s.lines_per_doc > 1 && s.columns.size() != static_cast<size_t>(s.lines_per_doc))
    fail_at(e, fmt::format("lines_per_doc {} needs {} names in `columns`", s.lines_per_doc, s.lines_per_doc));
  if (!s.records.empty() && fmt_name != "json") fail_at(e, "records is for the json format");
  if (!s.doc_start.empty() && !s.separator.empty()) fail_at(e, "give separator or doc_start, not both");
  if (const Entry* x = e.get("join")) {
    std::vector<const Entry*> items;
    if (x->is_map) {
      items.push_back(x);
    } else if (x->node.IsSequence()) {
      for (const Entry& j : x->items) items.push_back(&j);
    } else {
      fail_at(*x, "join: expected a mapping or a list of mappings");
    }
    for (const Entry* j : items) s.join.push_back(parse_dataset(*j, what + ".join", false, nullptr, nullptr, b));
  }
  if (const Entry* x = e.get("where")) *where = b.tmpl(*x, "dataset.where");
  if (const Entry* x = e.get("limit")) {
    *limit = integer(*x, "limit");
    if (*limit < 0) fail_at(*x, "limit must be >= 0");
  }
  return s;
}

OutputType parse_output_type(const Entry& e) {
  std::string s = scalar(e, "output_type");
  if (s == "loglikelihood") return OutputType::loglikelihood;
  if (s == "multiple_choice") return OutputType::multiple_choice;
  if (s == "loglikelihood_rolling") return OutputType::loglikelihood_rolling;
  if (s == "generate_until") return OutputType::generate_until;
  fail_at(e, fmt::format("unknown output_type '{}' (loglikelihood, multiple_choice, loglikelihood_rolling, generate_until)", s));
}

FilterStep parse_step(const Entry& e) {
  FilterStep st;
  std::string fn;
  if (e.node.IsScalar()) {
    fn = e.node.as<std::string>();
  } else {
    check_keys(e, {"function", "pattern", "select", "group", "fallback"}, "filter step");
    const Entry* f = e.get("function");
    if (f == nullptr) fail_at(e, "filter step: missing 'function'");
    fn = scalar(*f, "function");
  }
  static const std::map<std::string, FilterStep::Kind> kinds = {
      {"regex", FilterStep::Kind::regex},         {"take_first", FilterStep::Kind::take_first},
      {"strip", FilterStep::Kind::strip},         {"lowercase", FilterStep::Kind::lowercase},
      {"uppercase", FilterStep::Kind::uppercase}, {"remove_whitespace", FilterStep::Kind::remove_whitespace}};
  auto it = kinds.find(fn);
  if (it == kinds.end())
    fail_at(e, fmt::format("unknown filter function '{}' (regex, take_first, strip, lowercase, uppercase, remove_whitespace)", fn));
  st.kind = it->second;
  if (st.kind != FilterStep::Kind::regex) {
    if (e.is_map && e.order.size() > 1) fail_at(e, fmt::format("filter function '{}' takes no options", fn));
    return st;
  }
  if (!e.is_map || e.get("pattern") == nullptr) fail_at(e, "regex filter: missing 'pattern'");
  const Entry& p = *e.get("pattern");
  st.pattern = scalar(p, "pattern");
  try {
    st.regex = std::make_shared<const std::regex>(compile_pattern(st.pattern));
  } catch (const std::regex_error& err) {
    fail_at(p, fmt::format("invalid regular expression '{}': {}", st.pattern, err.what()));
  }
  if (const Entry* x = e.get("select")) st.select = static_cast<int>(integer(*x, "select"));
  if (const Entry* x = e.get("group")) {
    st.group = static_cast<int>(integer(*x, "group"));
    if (st.group < 0) fail_at(*x, "group must be >= 0");
  }
  if (const Entry* x = e.get("fallback")) st.fallback = scalar(*x, "fallback");
  return st;
}

const std::vector<Entry>& seq_entries(const Entry& e) {
  if (!e.node.IsSequence()) fail_at(e, "expected a list");
  return e.items;
}

MetricSpec parse_metric(const Entry& e) {
  MetricSpec m;
  if (e.node.IsScalar()) {
    m.name = e.node.as<std::string>();
  } else {
    check_keys(e, {"metric", "ignore_case", "ignore_punctuation", "regexes_to_ignore", "stem", "bins"}, "metric");
    const Entry* n = e.get("metric");
    if (n == nullptr) fail_at(e, "metric_list item: missing 'metric'");
    m.name = scalar(*n, "metric");
    if (const Entry* x = e.get("ignore_case")) m.exact.ignore_case = boolean(*x, "ignore_case");
    if (const Entry* x = e.get("ignore_punctuation")) m.exact.ignore_punctuation = boolean(*x, "ignore_punctuation");
    if (const Entry* x = e.get("regexes_to_ignore")) {
      m.exact.regexes_to_ignore = string_list(*x, "regexes_to_ignore");
      for (const auto& r : m.exact.regexes_to_ignore) {
        try {
          m.exact.compiled.push_back(std::make_shared<const std::regex>(compile_pattern(r)));
        } catch (const std::regex_error& err) {
          fail_at(*x, fmt::format("invalid regular expression '{}': {}", r, err.what()));
        }
      }
    }
    if (const Entry* x = e.get("stem")) m.stem = boolean(*x, "stem");
    if (const Entry* x = e.get("bins")) {
      m.bins = static_cast<int>(integer(*x, "bins"));
      if (m.bins < 1) fail_at(*x, "bins must be >= 1");
    }
  }
  return m;
}

const std::set<std::string> kTaskKeys = {
    "task",          "include",         "tag",               "dataset",           "fewshot_dataset",
    "fields",        "template_filters", "description",      "doc_to_text",       "doc_to_target",
    "doc_to_choice", "doc_to_continuation", "choice_labels", "count_text",        "doc_to_turns",
    "turn_template", "turn_delimiter",  "target_delimiter",  "fewshot_delimiter", "num_fewshot",
    "fewshot_seed",  "fewshot_sampler", "output_type",       "generation_kwargs", "filters",
    "metric_list",   "dimension",       "sub_dimension",     "group_by",          "metadata",
    "judge",         "clean_task",      "clean_paired"};

std::string raw_scalar(const Entry& e, const std::string& key) {
  // Delimiters keep their exact value (YAML "" gives an empty string).
  return scalar(e, key);
}

TaskConfig build_task(const Entry& top, const std::string& display) {
  TaskConfig t;
  t.file = display;
  check_keys(top, kTaskKeys, "");
  const Entry* name = top.get("task");
  if (name == nullptr) throw Error(fmt::format("{}: missing 'task' (the task's name)", display));
  t.name = scalar(*name, "task");
  if (t.name.empty() || t.name.find_first_of(" \t/\\,") != std::string::npos)
    fail_at(*name, fmt::format("invalid task name '{}'", t.name));

  // Filters first: templates may use them.
  Builder b;
  b.custom = &t.template_filters;
  if (const Entry* tf = top.get("template_filters")) {
    if (!tf->is_map) fail_at(*tf, "template_filters: expected a mapping of name: template");
    for (const std::string& k : tf->order) {
      const auto& builtins = builtin_filters();
      if (std::find(builtins.begin(), builtins.end(), k) != builtins.end())
        fail_at(tf->map.at(k), fmt::format("template filter '{}' has the name of a built-in filter", k));
      t.template_filters[k] = b.tmpl(tf->map.at(k), "template_filters." + k);
    }
  }

  const Entry* ot = top.get("output_type");
  if (ot == nullptr) throw Error(fmt::format("{}: missing 'output_type'", display));
  t.output_type = parse_output_type(*ot);
  t.output_type_origin = ot->where();

  const Entry* ds = top.get("dataset");
  if (ds == nullptr) throw Error(fmt::format("{}: missing 'dataset'", display));
  t.dataset = parse_dataset(*ds, "dataset", true, &t.where, &t.limit, b);
  t.skip_bad = t.dataset.skip_bad;
  if (const Entry* fd = top.get("fewshot_dataset")) t.fewshot_dataset = parse_dataset(*fd, "fewshot_dataset", true, nullptr, nullptr, b);

  if (const Entry* f = top.get("fields")) {
    if (!f->is_map) fail_at(*f, "fields: expected a mapping of name: template");
    for (const std::string& k : f->order) {
      const Entry& v = f->map.at(k);
      if (!v.node.IsScalar()) fail_at(v, "fields." + k + ": expected a template string (write a list as '{{ [a, b] }}')");
      t.fields.emplace_back(k, b.tmpl(v, "fields." + k));
    }
  }

  if (const Entry* x = top.get("description")) t.description = b.tmpl(*x, "description");
  if (const Entry* x = top.get("doc_to_text")) t.doc_to_text = b.tmpl(*x, "doc_to_text");
  if (const Entry* x = top.get("doc_to_target")) t.doc_to_target = b.tmpl(*x, "doc_to_target", true);
  if (const Entry* x = top.get("doc_to_choice")) {
    if (x->node.IsSequence()) {
      size_t i = 0;
      for (const auto& n : x->node) {
        if (!n.IsScalar())
          throw Error(fmt::format("{}:{}: doc_to_choice[{}]: expected a template string", x->src->name, n.Mark().line + 1, i));
        t.doc_to_choice_list.push_back(Template::parse(n.as<std::string>(),
                                                       origin_of(n, x->src, fmt::format("doc_to_choice[{}]", i)),
                                                       t.template_filters));
        ++i;
      }
      if (t.doc_to_choice_list.empty()) fail_at(*x, "doc_to_choice: empty list");
    } else {
      t.doc_to_choice = b.tmpl(*x, "doc_to_choice", true);
    }
  }
  if (const Entry* x = top.get("doc_to_continuation")) t.doc_to_continuation = b.tmpl(*x, "doc_to_continuation");
  if (const Entry* x = top.get("choice_labels")) t.choice_labels = b.tmpl(*x, "choice_labels", true);
  if (const Entry* x = top.get("count_text")) t.count_text = b.tmpl(*x, "count_text", true);
  if (const Entry* x = top.get("doc_to_turns")) t.doc_to_turns = b.tmpl(*x, "doc_to_turns", true);
  if (const Entry* x = top.get("turn_template")) t.turn_template = b.tmpl(*x, "turn_template");
  if (const Entry* x = top.get("turn_delimiter")) t.turn_delimiter = raw_scalar(*x, "turn_delimiter");
  if (const Entry* x = top.get("target_delimiter")) t.target_delimiter = raw_scalar(*x, "target_delimiter");
  if (const Entry* x = top.get("fewshot_delimiter")) t.fewshot_delimiter = raw_scalar(*x, "fewshot_delimiter");
  if (const Entry* x = top.get("num_fewshot")) {
    t.num_fewshot = static_cast<int>(integer(*x, "num_fewshot"));
    if (t.num_fewshot < 0) fail_at(*x, "num_fewshot must be >= 0");
  }
  if (const Entry* x = top.get("fewshot_seed")) t.fewshot_seed = static_cast<uint64_t>(integer(*x, "fewshot_seed"));
  if (const Entry* x = top.get("fewshot_sampler")) {
    std::string s = scalar(*x, "fewshot_sampler");
    if (s == "first_n") {
      t.fewshot_first_n = true;
    } else if (s != "random") {
      fail_at(*x, fmt::format("unknown fewshot_sampler '{}' (random, first_n)", s));
    }
  }
  if (const Entry* x = top.get("tag")) t.tags = string_list(*x, "tag");
  if (const Entry* x = top.get("group_by")) {
    t.group_by = scalar(*x, "group_by");
    if (!is_field_path(t.group_by)) fail_at(*x, fmt::format("group_by: '{}' is not a field name", t.group_by));
  }

  // generation
  bool until_given = false;
  if (const Entry* g = top.get("generation_kwargs")) {
    check_keys(*g, {"until", "max_gen_toks", "do_sample", "temperature"}, "generation_kwargs");
    if (const Entry* x = g->get("until")) {
      t.until = string_list(*x, "until");
      until_given = true;
    }
    if (const Entry* x = g->get("max_gen_toks")) {
      t.max_gen_toks = static_cast<int>(integer(*x, "max_gen_toks"));
      if (t.max_gen_toks < 1) fail_at(*x, "max_gen_toks must be >= 1");
    }
    if (const Entry* x = g->get("do_sample"))
      if (boolean(*x, "do_sample")) fail_at(*x, "only greedy decoding is supported (do_sample: false)");
    if (const Entry* x = g->get("temperature")) {
      std::string s = scalar(*x, "temperature");
      if (std::strtod(s.c_str(), nullptr) != 0.0) fail_at(*x, "only greedy decoding is supported (temperature: 0)");
    }
    if (t.output_type != OutputType::generate_until) fail_at(*g, "generation_kwargs is for output_type generate_until");
  }
  if (!until_given) t.until = {t.fewshot_delimiter};

  if (const Entry* x = top.get("clean_task")) {
    t.clean_task = scalar(*x, "clean_task");
    if (t.clean_task.empty() || t.clean_task == t.name) fail_at(*x, "clean_task must name another task");
  }
  if (const Entry* x = top.get("clean_paired")) {
    t.clean_paired = boolean(*x, "clean_paired");
    if (t.clean_task.empty()) fail_at(*x, "clean_paired needs clean_task");
  }
  if (const Entry* j = top.get("judge")) {
    if (t.output_type != OutputType::generate_until) fail_at(*j, "judge is for output_type generate_until");
    check_keys(*j, {"system", "prompt", "max_tokens", "min_score", "max_score"}, "judge");
    JudgeConfig jc;
    if (const Entry* x = j->get("system")) jc.system = b.tmpl(*x, "judge.system");
    const Entry* p = j->get("prompt");
    if (p == nullptr) fail_at(*j, "judge: missing 'prompt'");
    jc.prompt = b.tmpl(*p, "judge.prompt");
    if (const Entry* x = j->get("max_tokens")) {
      jc.max_tokens = static_cast<int>(integer(*x, "max_tokens"));
      if (jc.max_tokens < 1) fail_at(*x, "max_tokens must be >= 1");
    }
    if (const Entry* x = j->get("min_score")) jc.min_score = static_cast<double>(integer(*x, "min_score"));
    if (const Entry* x = j->get("max_score")) jc.max_score = static_cast<double>(integer(*x, "max_score"));
    if (jc.min_score >= jc.max_score) fail_at(*j, "judge: min_score must be below max_score");
    t.judge = std::move(jc);
  }

  if (const Entry* f = top.get("filters")) {
    if (t.output_type != OutputType::generate_until) fail_at(*f, "filters are for output_type generate_until");
    std::set<std::string> names;
    for (const Entry& p : seq_entries(*f)) {
      check_keys(p, {"name", "steps"}, "filters item");
      FilterPipeline fp;
      const Entry* n = p.get("name");
      if (n == nullptr) fail_at(p, "filters item: missing 'name'");
      fp.name = scalar(*n, "name");
      if (!names.insert(fp.name).second) fail_at(*n, fmt::format("duplicate filter name '{}'", fp.name));
      if (const Entry* s = p.get("steps"))
        for (const Entry& st : seq_entries(*s)) fp.steps.push_back(parse_step(st));
      t.filters.push_back(std::move(fp));
    }
    if (t.filters.empty()) fail_at(*f, "filters: empty list");
  } else {
    t.filters.push_back(FilterPipeline{});
  }

  // metrics
  static const std::map<std::string, std::set<OutputType>> metric_types = {
      {"acc", {OutputType::multiple_choice, OutputType::loglikelihood}},
      {"acc_norm", {OutputType::multiple_choice}},
      {"mc2", {OutputType::multiple_choice}},
      {"ece", {OutputType::multiple_choice}},
      {"perplexity", {OutputType::loglikelihood, OutputType::loglikelihood_rolling}},
      {"word_perplexity", {OutputType::loglikelihood_rolling}},
      {"byte_perplexity", {OutputType::loglikelihood_rolling}},
      {"bits_per_byte", {OutputType::loglikelihood_rolling}},
      {"exact_match", {OutputType::generate_until}},
      {"f1", {OutputType::generate_until}},
      {"rouge1", {OutputType::generate_until}},
      {"rouge2", {OutputType::generate_until}},
      {"rougeL", {OutputType::generate_until}},
      {"rougeLsum", {OutputType::generate_until}},
      {"bleu", {OutputType::generate_until}},
      {"chrf", {OutputType::generate_until}},
  };
  if (const Entry* m = top.get("metric_list")) {
    std::set<std::string> seen;
    for (const Entry& me : seq_entries(*m)) {
      MetricSpec spec = parse_metric(me);
      auto it = metric_types.find(spec.name);
      if (it == metric_types.end()) {
        std::string all;
        for (const auto& [k, v] : metric_types) all += (all.empty() ? "" : ", ") + k;
        fail_at(me, fmt::format("unknown metric '{}' ({})", spec.name, all));
      }
      if (!it->second.count(t.output_type))
        fail_at(me, fmt::format("metric '{}' does not apply to output_type {}", spec.name, output_type_name(t.output_type)));
      if (!seen.insert(spec.name).second) fail_at(me, fmt::format("metric '{}' listed twice", spec.name));
      if (spec.name == "mc2" && !t.choice_labels) fail_at(me, "metric 'mc2' needs choice_labels");
      t.metrics.push_back(std::move(spec));
    }
  } else {
    auto add = [&](std::initializer_list<const char*> names) {
      for (const char* n : names) t.metrics.push_back(MetricSpec{n, {}, true, 10});
    };
    switch (t.output_type) {
      case OutputType::multiple_choice: add({"acc", "acc_norm"}); break;
      case OutputType::loglikelihood: add({"acc", "perplexity"}); break;
      case OutputType::loglikelihood_rolling: add({"word_perplexity", "byte_perplexity", "bits_per_byte"}); break;
      case OutputType::generate_until: break;
    }
  }

  // dimensions
  if (const Entry* x = top.get("dimension")) {
    t.dimension = scalar(*x, "dimension");
    if (!known_dimensions().count(t.dimension)) {
      std::string all;
      for (const auto& [k, v] : known_dimensions()) all += (all.empty() ? "" : ", ") + k;
      fail_at(*x, fmt::format("unknown dimension '{}' ({})", t.dimension, all));
    }
  }
  if (const Entry* x = top.get("sub_dimension")) {
    t.sub_dimension = scalar(*x, "sub_dimension");
    if (t.dimension.empty()) fail_at(*x, "sub_dimension without dimension");
    const auto& subs = known_dimensions().at(t.dimension);
    if (std::find(subs.begin(), subs.end(), t.sub_dimension) == subs.end()) {
      std::string all;
      for (const auto& s : subs) all += (all.empty() ? "" : ", ") + s;
      fail_at(*x, fmt::format("unknown sub_dimension '{}' of {} ({})", t.sub_dimension, t.dimension, all));
    }
  }

  // what each output type needs
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) throw Error(fmt::format("{}: output_type {} needs {}", t.output_type_origin, output_type_name(t.output_type), what));
  };
  const bool has_choices = t.doc_to_choice || !t.doc_to_choice_list.empty();
  switch (t.output_type) {
    case OutputType::multiple_choice:
      need(has_choices, "doc_to_choice");
      need(static_cast<bool>(t.doc_to_target), "doc_to_target");
      need(t.doc_to_text || t.doc_to_continuation, "doc_to_text");
      break;
    case OutputType::loglikelihood:
      need(static_cast<bool>(t.doc_to_text), "doc_to_text");
      need(static_cast<bool>(t.doc_to_target), "doc_to_target");
      break;
    case OutputType::loglikelihood_rolling:
      need(static_cast<bool>(t.doc_to_target), "doc_to_target (the text scored)");
      if (t.num_fewshot != 0) need(false, "num_fewshot 0");
      break;
    case OutputType::generate_until:
      need(t.doc_to_text || t.doc_to_turns, "doc_to_text or doc_to_turns");
      bool needs_target = !t.metrics.empty();
      need(!needs_target || t.doc_to_target, "doc_to_target for its metrics");
      break;
  }
  auto only = [&](const TemplatePtr& p, OutputType ty, const char* key) {
    if (p && t.output_type != ty)
      throw Error(fmt::format("{}: {} is for output_type {}", p->location(), key, output_type_name(ty)));
  };
  only(t.doc_to_continuation, OutputType::multiple_choice, "doc_to_continuation");
  only(t.choice_labels, OutputType::multiple_choice, "choice_labels");
  only(t.count_text, OutputType::loglikelihood_rolling, "count_text");
  only(t.doc_to_turns, OutputType::generate_until, "doc_to_turns");
  only(t.turn_template, OutputType::generate_until, "turn_template");
  if (has_choices && t.output_type != OutputType::multiple_choice)
    throw Error(fmt::format("{}: doc_to_choice is for output_type multiple_choice", t.file));
  if (t.turn_template && !t.doc_to_turns)
    throw Error(fmt::format("{}: turn_template needs doc_to_turns", t.turn_template->location()));
  return t;
}

}  // namespace

TaskConfig load_task_file(const fs::path& file) {
  TaskFileReader reader;
  Entry top = reader.read(file, file.string());
  if (top.get("group") != nullptr) throw Error(fmt::format("{}: is a group file, not a task", file.string()));
  return build_task(top, file.string());
}

namespace {

GroupConfig build_group(const Entry& top, const std::string& display) {
  check_keys(top, {"group", "task", "aggregate", "dimension", "sub_dimension", "metadata"}, "group file");
  GroupConfig g;
  g.file = display;
  g.name = scalar(*top.get("group"), "group");
  const Entry* tasks = top.get("task");
  if (tasks == nullptr) throw Error(fmt::format("{}: group file without 'task' (the list of member tasks)", display));
  g.tasks = string_list(*tasks, "task");
  if (g.tasks.empty()) fail_at(*tasks, "task: empty list");
  if (const Entry* a = top.get("aggregate")) {
    std::string s = scalar(*a, "aggregate");
    if (s == "tasks") {
      g.weight_by_docs = false;
    } else if (s != "docs") {
      fail_at(*a, fmt::format("unknown aggregate '{}' (docs, tasks)", s));
    }
  }
  if (const Entry* x = top.get("dimension")) g.dimension = scalar(*x, "dimension");
  if (const Entry* x = top.get("sub_dimension")) g.sub_dimension = scalar(*x, "sub_dimension");
  return g;
}

}  // namespace

TaskRegistry::TaskRegistry(const fs::path& dir) : dir_(dir) {
  if (!fs::is_directory(dir)) fail_file(dir.string(), "tasks folder not found");
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".yaml") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::map<std::string, std::string> where;
  for (const fs::path& f : files) {
    if (f.filename().string().starts_with("_")) continue;
    TaskFileReader reader;
    Entry top = reader.read(f, f.string());
    std::string name;
    if (top.get("group") != nullptr) {
      GroupConfig gc = build_group(top, f.string());
      name = gc.name;
      if (where.count(name)) throw Error(fmt::format("{}: name '{}' is also defined in {}", f.string(), name, where[name]));
      groups_.emplace(name, std::move(gc));
    } else if (const Entry* t = top.get("task")) {
      name = scalar(*t, "task");
      if (where.count(name)) throw Error(fmt::format("{}: name '{}' is also defined in {}", f.string(), name, where[name]));
      tasks_.emplace(name, f);
    } else {
      throw Error(fmt::format("{}: neither 'task' nor 'group' (include-only files start with '_')", f.string()));
    }
    where[name] = f.string();
  }
  for (const auto& [name, g] : groups_)
    for (const auto& m : g.tasks)
      if (!tasks_.count(m) && !groups_.count(m))
        throw Error(fmt::format("{}: group '{}' names unknown task '{}'", g.file, name, m));
}

std::vector<std::string> TaskRegistry::task_names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : tasks_) out.push_back(k);
  return out;
}

std::vector<std::string> TaskRegistry::group_names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : groups_) out.push_back(k);
  return out;
}

fs::path TaskRegistry::task_file(const std::string& name) const {
  auto it = tasks_.find(name);
  if (it == tasks_.end()) fail_file(dir_.string(), fmt::format("no task named '{}'", name));
  return it->second;
}

TaskConfig TaskRegistry::load(const std::string& name) const { return load_task_file(task_file(name)); }

const GroupConfig& TaskRegistry::group(const std::string& name) const {
  auto it = groups_.find(name);
  if (it == groups_.end()) fail_file(dir_.string(), fmt::format("no group named '{}'", name));
  return it->second;
}

std::vector<std::string> TaskRegistry::expand(const std::string& name) const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  std::function<void(const std::string&, int)> walk = [&](const std::string& n, int depth) {
    if (depth > 16) fail_file(dir_.string(), fmt::format("groups nested too deeply at '{}' (a cycle?)", n));
    if (tasks_.count(n)) {
      if (seen.insert(n).second) out.push_back(n);
      return;
    }
    auto it = groups_.find(n);
    if (it == groups_.end()) fail_file(dir_.string(), fmt::format("no task or group named '{}'", n));
    for (const auto& m : it->second.tasks) walk(m, depth + 1);
  };
  walk(name, 0);
  return out;
}

fs::path resolve_tasks_dir(const std::optional<std::string>& cli_value, const fs::path& fallback) {
  if (cli_value && !cli_value->empty()) return *cli_value;
  if (const char* d = std::getenv("QEVAL_TASKS"); d != nullptr && *d != '\0') return d;
  return fallback;
}

}  // namespace qeval::eval::task
