#include "qeval/eval/task/evaluate.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <set>

#include "qeval/eval/metrics/bleu.h"
#include "qeval/eval/metrics/chrf.h"
#include "qeval/eval/metrics/ece.h"
#include "qeval/eval/metrics/rouge.h"
#include "qeval/eval/metrics/squad.h"
#include "qeval/eval/metrics/text.h"
#include "qeval/eval/stats/rng.h"
#include "qeval/eval/stats/summary.h"

namespace qeval::eval::task {

namespace fs = std::filesystem;

const MetricResult* TaskResult::metric(const std::string& name) const {
  for (const auto& m : metrics)
    if (m.name == name) return &m;
  return nullptr;
}

int64_t count_words(std::string_view s) {
  std::u32string u = text::decode_utf8(s);
  int64_t runs = 0;
  bool in_space = false;
  for (char32_t c : u) {
    bool sp = text::is_space(c);
    if (sp && !in_space) ++runs;
    in_space = sp;
  }
  return runs + 1;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Is a missing field missing from one doc (a data problem) or from all of them (a typo)?

class FieldIndex {
 public:
  explicit FieldIndex(const std::vector<Json>& docs) : docs_(docs) {}

  bool any_has(const std::string& path) {
    auto it = cache_.find(path);
    if (it != cache_.end()) return it->second;
    bool found = false;
    auto steps = parse(path);
    for (const Json& d : docs_) {
      if (has(d, steps)) {
        found = true;
        break;
      }
    }
    cache_[path] = found;
    return found;
  }

 private:
  struct Step {
    std::string key;
    long index = -1;
  };
  static std::vector<Step> parse(const std::string& path) {
    std::vector<Step> out;
    size_t i = 0;
    while (i < path.size()) {
      if (path[i] == '.') {
        ++i;
        continue;
      }
      if (path[i] == '[') {
        size_t j = path.find(']', i);
        if (j == std::string::npos) break;
        Step s;
        s.index = std::strtol(path.substr(i + 1, j - i - 1).c_str(), nullptr, 10);
        out.push_back(s);
        i = j + 1;
        continue;
      }
      size_t j = path.find_first_of(".[", i);
      if (j == std::string::npos) j = path.size();
      out.push_back(Step{path.substr(i, j - i), -1});
      i = j;
    }
    return out;
  }
  static bool has(const Json& d, const std::vector<Step>& steps) {
    const Json* cur = &d;
    for (const Step& s : steps) {
      if (s.index >= 0) {
        if (!cur->is_array()) return false;
        long n = static_cast<long>(cur->size());
        long k = s.index < 0 ? s.index + n : s.index;
        if (k < 0 || k >= n) return false;
        cur = &(*cur)[static_cast<size_t>(k)];
        continue;
      }
      if (!cur->is_object()) return false;
      auto it = cur->find(s.key);
      if (it == cur->end()) return false;
      cur = &*it;
    }
    return true;
  }

  const std::vector<Json>& docs_;
  std::map<std::string, bool> cache_;
};

// A problem with one doc: a task-file error when no doc has the missing field, else a data
// error "<file>:<row>: <problem> (<key> at <task file>:<line>)"; skipped under skip_bad.
struct DocIssue {
  std::string message;
};

std::string data_message(const DocSource& src, const std::string& problem, const std::string& key,
                         const std::string& location) {
  if (key.empty()) return fmt::format("{}: {}", src.where(), problem);
  return fmt::format("{}: {} ({} at {})", src.where(), problem, key, location);
}

DocIssue classify(const TemplateError& e, const DocSource& src, FieldIndex& index) {
  if (e.kind == TemplateError::Kind::missing_field && !index.any_has(e.field)) throw Error(e.what());
  std::string problem = e.problem;
  if (e.kind == TemplateError::Kind::missing_field) problem = fmt::format("missing field '{}'", e.field);
  return DocIssue{data_message(src, problem, e.key, e.location)};
}

void record_issue(const DocIssue& issue, bool skip, BadRows& bad) {
  if (!skip) throw Error(issue.message);
  bad.add(issue.message);
}

// Derived fields and the `where` filter over freshly read docs.
void derive(const TaskConfig& task, std::vector<Json>& docs, std::vector<DocSource>& sources, bool skip, BadRows& bad,
            int64_t* filtered, bool apply_where) {
  if (task.fields.empty() && (!task.where || !apply_where)) return;
  std::vector<Json> raw_docs = docs;
  FieldIndex index(raw_docs);
  std::vector<Json> out;
  std::vector<DocSource> out_src;
  for (size_t i = 0; i < docs.size(); ++i) {
    Json doc = std::move(docs[i]);
    try {
      for (const auto& [name, t] : task.fields) doc[name] = t->evaluate(doc);
      if (apply_where && task.where && !truthy(task.where->evaluate(doc))) {
        if (filtered) ++*filtered;
        continue;
      }
    } catch (const TemplateError& e) {
      record_issue(classify(e, sources[i], index), skip, bad);
      continue;
    }
    out.push_back(std::move(doc));
    out_src.push_back(sources[i]);
  }
  docs.swap(out);
  sources.swap(out_src);
}

std::string field_text(const Json& doc, const std::string& path) {
  const Json* cur = &doc;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('.', i);
    std::string key = path.substr(i, j == std::string::npos ? std::string::npos : j - i);
    if (!cur->is_object() || !cur->contains(key)) return std::string();
    cur = &(*cur)[key];
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return to_text(*cur);
}

}  // namespace

TaskData load_task_data(const TaskConfig& task, const fs::path& data_root, const DataOptions& options) {
  TaskData d;
  d.data_root = data_root;
  d.skip_bad = options.skip_bad.value_or(task.skip_bad);
  DatasetSpec spec = task.dataset;
  spec.skip_bad = d.skip_bad;
  RawDataset raw = read_dataset(spec, data_root);
  d.bad = raw.bad;
  d.bound = raw.bound;
  derive(task, raw.docs, raw.sources, d.skip_bad, d.bad, &d.filtered_out, true);
  int64_t limit = -1;
  if (task.limit >= 0) limit = task.limit;
  if (options.limit && *options.limit >= 0) limit = limit < 0 ? *options.limit : std::min(limit, *options.limit);
  if (task.fewshot_dataset) {
    DatasetSpec fs_spec = *task.fewshot_dataset;
    fs_spec.skip_bad = d.skip_bad;
    RawDataset fs_raw = read_dataset(fs_spec, data_root);
    d.bad.count += fs_raw.bad.count;
    for (const auto& m : fs_raw.bad.messages)
      if (d.bad.messages.size() < 20) d.bad.messages.push_back(m);
    derive(task, fs_raw.docs, fs_raw.sources, d.skip_bad, d.bad, nullptr, false);
    d.fewshot_docs = std::move(fs_raw.docs);
    d.fewshot_sources = std::move(fs_raw.sources);
    d.fewshot_bound = fs_raw.bound;
    d.fewshot_is_eval_set = false;
    d.docs = std::move(raw.docs);
    d.sources = std::move(raw.sources);
  } else {
    d.fewshot_docs = raw.docs;
    d.fewshot_sources = raw.sources;
    d.fewshot_bound = raw.bound;
    d.fewshot_is_eval_set = true;
    d.docs = std::move(raw.docs);
    d.sources = std::move(raw.sources);
  }
  if (limit >= 0 && static_cast<size_t>(limit) < d.docs.size()) {
    d.docs.resize(static_cast<size_t>(limit));
    d.sources.resize(static_cast<size_t>(limit));
  }
  return d;
}

// ---------------------------------------------------------------------------------------------
// prepare

namespace {

class Preparer {
 public:
  Preparer(const TaskConfig& task, const TaskData& data, int num_fewshot)
      : task_(task), data_(data), k_(num_fewshot), eval_index_(data.docs), pool_index_(data.fewshot_docs) {
    if (!task.group_by.empty())
      group_by_ = Template::parse("{{ " + task.group_by + " }}", TemplateOrigin{task.file, 0, false, "group_by"});
  }

  PreparedTask run() {
    PreparedTask out;
    out.num_fewshot = k_;
    if (k_ > 0) {
      if (task_.output_type == OutputType::loglikelihood_rolling)
        throw Error(fmt::format("{}: loglikelihood_rolling takes no few-shot examples", task_.file));
      if (task_.doc_to_turns) throw Error(fmt::format("{}: multi-turn generation takes no few-shot examples", task_.file));
      build_pool(out.bad);
    }
    for (size_t i = 0; i < data_.docs.size(); ++i) {
      try {
        out.docs.push_back(prepare_doc(i, data_.docs[i], data_.sources[i]));
      } catch (const TemplateError& e) {
        record_issue(classify(e, data_.sources[i], eval_index_), data_.skip_bad, out.bad);
      } catch (const DocIssue& issue) {
        record_issue(issue, data_.skip_bad, out.bad);
      }
    }
    if (out.docs.empty() && !data_.docs.empty() && !out.bad.messages.empty())
      throw Error(fmt::format("{}: every doc was skipped; the first problem: {}", task_.file, out.bad.messages.front()));
    return out;
  }

 private:
  struct Parts {
    std::string text;
    std::vector<std::string> choices;
    int gold = -1;
    std::string continuation;
    std::vector<std::string> references;
  };

  [[noreturn]] void issue(const DocSource& src, const std::string& problem, const TemplatePtr& t) const {
    throw DocIssue{data_message(src, problem, t ? t->origin().key : "", t ? t->location() : "")};
  }

  std::vector<std::string> choices_of(const Json& doc, const DocSource& src) const {
    std::vector<std::string> out;
    if (!task_.doc_to_choice_list.empty()) {
      for (const auto& t : task_.doc_to_choice_list) out.push_back(t->render(doc));
    } else {
      Json v = task_.doc_to_choice->evaluate(doc);
      if (!v.is_array())
        issue(src, fmt::format("doc_to_choice gave {}, not a list", v.is_string() ? "a string" : v.type_name()),
              task_.doc_to_choice);
      for (const auto& c : v) out.push_back(to_text(c));
    }
    const TemplatePtr& where = task_.doc_to_choice ? task_.doc_to_choice : task_.doc_to_choice_list.front();
    if (out.empty()) issue(src, "no choices", where);
    for (size_t c = 0; c < out.size(); ++c)
      if (out[c].empty()) issue(src, fmt::format("choice {} is empty", c), where);
    return out;
  }

  int gold_of(const Json& doc, const DocSource& src, const std::vector<std::string>& choices) const {
    Json v = task_.doc_to_target->evaluate(doc);
    const int n = static_cast<int>(choices.size());
    auto check = [&](int64_t g) {
      if (g < 0 || g >= n)
        issue(src, fmt::format("label {} out of range ({} choices)", g, n), task_.doc_to_target);
      return static_cast<int>(g);
    };
    if (v.is_number_integer() || v.is_number_unsigned()) return check(v.get<int64_t>());
    if (v.is_string()) {
      std::string s = v.get<std::string>();
      std::string t = strip(s);
      if (!t.empty() && t.size() < 10 && std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return check(std::stoll(t));
      auto it = std::find(choices.begin(), choices.end(), s);
      if (it == choices.end())
        issue(src, fmt::format("target '{}' is not one of the choices", s.size() > 60 ? s.substr(0, 60) + "..." : s),
              task_.doc_to_target);
      return static_cast<int>(it - choices.begin());
    }
    issue(src, fmt::format("doc_to_target gave {}, not a choice index or text", v.type_name()), task_.doc_to_target);
  }

  std::vector<std::string> references_of(const Json& doc, const DocSource& src) const {
    Json v = task_.doc_to_target->evaluate(doc);
    std::vector<std::string> out;
    if (v.is_array()) {
      for (const auto& r : v) out.push_back(to_text(r));
      if (out.empty()) issue(src, "no references (empty list)", task_.doc_to_target);
    } else {
      out.push_back(to_text(v));
    }
    return out;
  }

  // Everything of a doc except the few-shot context.
  Parts parts_of(const Json& doc, const DocSource& src) const {
    Parts p;
    switch (task_.output_type) {
      case OutputType::multiple_choice:
        p.choices = choices_of(doc, src);
        p.gold = gold_of(doc, src, p.choices);
        if (task_.doc_to_text) p.text = task_.doc_to_text->render(doc);
        if (task_.doc_to_continuation) p.continuation = task_.doc_to_continuation->render(doc);
        break;
      case OutputType::loglikelihood:
        p.text = task_.doc_to_text->render(doc);
        p.continuation = task_.doc_to_target->render(doc);
        if (p.continuation.empty()) issue(src, "empty target", task_.doc_to_target);
        break;
      case OutputType::loglikelihood_rolling:
        p.continuation = task_.doc_to_target->render(doc);
        if (p.continuation.empty()) issue(src, "empty text", task_.doc_to_target);
        break;
      case OutputType::generate_until:
        if (task_.doc_to_text) p.text = task_.doc_to_text->render(doc);
        if (task_.doc_to_target) p.references = references_of(doc, src);
        break;
    }
    return p;
  }

  // A few-shot example as it appears in the prompt.
  std::string example_text(const Parts& p) const {
    switch (task_.output_type) {
      case OutputType::multiple_choice:
        if (task_.doc_to_continuation)
          return p.text + p.choices[static_cast<size_t>(p.gold)] + task_.target_delimiter + p.continuation;
        return p.text + task_.target_delimiter + p.choices[static_cast<size_t>(p.gold)];
      case OutputType::loglikelihood: return p.text + task_.target_delimiter + p.continuation;
      case OutputType::generate_until:
        return p.text + task_.target_delimiter + (p.references.empty() ? std::string() : p.references.front());
      case OutputType::loglikelihood_rolling: break;
    }
    return p.text;
  }

  std::string key_of(const Json& doc) const {
    std::string k;
    for (const auto& b : match_fields_) k += field_text(doc, b) + '\x1f';
    return k;
  }

  void build_pool(BadRows& bad) {
    // Few-shot examples come from docs with the same path-bound fields (mmlu: the subject).
    for (const auto& b : data_.bound)
      if (std::find(data_.fewshot_bound.begin(), data_.fewshot_bound.end(), b) != data_.fewshot_bound.end())
        match_fields_.push_back(b);
    examples_.resize(data_.fewshot_docs.size());
    FieldIndex& index = pool_index_;
    for (size_t j = 0; j < data_.fewshot_docs.size(); ++j) {
      const DocSource& src = data_.fewshot_sources[j];
      try {
        examples_[j] = example_text(parts_of(data_.fewshot_docs[j], src));
      } catch (const TemplateError& e) {
        DocIssue is = classify(e, src, index);
        if (data_.fewshot_is_eval_set) continue;  // reported when the doc itself is prepared
        record_issue(is, data_.skip_bad, bad);
        continue;
      } catch (const DocIssue& is) {
        if (data_.fewshot_is_eval_set) continue;
        record_issue(is, data_.skip_bad, bad);
        continue;
      }
      pool_[key_of(data_.fewshot_docs[j])].push_back(j);
    }
  }

  std::string fewshot_context(size_t i, const Json& doc) const {
    std::vector<size_t> empty;
    auto it = pool_.find(key_of(doc));
    const std::vector<size_t>& cand = it == pool_.end() ? empty : it->second;
    const bool self_in = data_.fewshot_is_eval_set && std::binary_search(cand.begin(), cand.end(), i);
    const size_t available = cand.size() - (self_in ? 1 : 0);
    if (static_cast<size_t>(k_) > available) {
      std::string which;
      for (const auto& b : match_fields_) which += fmt::format(" {}='{}'", b, field_text(doc, b));
      throw Error(fmt::format("{}: num_fewshot {} but only {} few-shot example{} available{}{}", task_.file, k_,
                              available, available == 1 ? " is" : "s are", which.empty() ? "" : " for", which));
    }
    std::vector<size_t> chosen;
    if (task_.fewshot_first_n) {
      for (size_t c : cand) {
        if (chosen.size() == static_cast<size_t>(k_)) break;
        if (self_in && c == i) continue;
        chosen.push_back(c);
      }
    } else {
      stats::Rng rng(task_.fewshot_seed + 0x9E3779B97F4A7C15ULL * (static_cast<uint64_t>(i) + 1));
      std::set<size_t> used;
      while (chosen.size() < static_cast<size_t>(k_)) {
        size_t c = cand[static_cast<size_t>(rng.below(cand.size()))];
        if ((self_in && c == i) || !used.insert(c).second) continue;
        chosen.push_back(c);
      }
    }
    std::string s;
    for (size_t c : chosen) s += *examples_[c] + task_.fewshot_delimiter;
    return s;
  }

  PreparedDoc prepare_doc(size_t i, const Json& doc, const DocSource& src) {
    PreparedDoc p;
    p.doc = i;
    if (group_by_) p.group = to_text(group_by_->evaluate(doc));
    Parts parts = parts_of(doc, src);
    std::string preamble = task_.description ? task_.description->render(doc) : std::string();
    if (k_ > 0) preamble += fewshot_context(i, doc);
    p.choices = std::move(parts.choices);
    p.gold = parts.gold;
    p.continuation = std::move(parts.continuation);
    p.references = std::move(parts.references);
    p.context = preamble + parts.text;
    if (task_.output_type == OutputType::multiple_choice && task_.choice_labels) {
      Json v = task_.choice_labels->evaluate(doc);
      if (!v.is_array()) issue(src, "choice_labels did not give a list", task_.choice_labels);
      if (v.size() != p.choices.size())
        issue(src, fmt::format("{} choice labels for {} choices", v.size(), p.choices.size()), task_.choice_labels);
      for (const auto& l : v) p.choice_labels.push_back(truthy(l) ? 1 : 0);
    }
    if (task_.output_type == OutputType::loglikelihood_rolling) {
      std::string counted = task_.count_text ? task_.count_text->render(doc) : p.continuation;
      p.words = count_words(counted);
      p.bytes = static_cast<int64_t>(counted.size());
    }
    if (task_.doc_to_turns) {
      Json v = task_.doc_to_turns->evaluate(doc);
      if (!v.is_array()) issue(src, "doc_to_turns did not give a list", task_.doc_to_turns);
      if (v.empty()) issue(src, "no turns", task_.doc_to_turns);
      for (size_t t = 0; t < v.size(); ++t) {
        if (!task_.turn_template) {
          p.turns.push_back(to_text(v[t]));
          continue;
        }
        Json vars = Json::object();
        vars["turn"] = v[t];
        vars["turn_index"] = static_cast<int64_t>(t);
        p.turns.push_back(task_.turn_template->render(doc, vars));
      }
      p.context = preamble + parts.text + p.turns.front();
    }
    return p;
  }

  const TaskConfig& task_;
  const TaskData& data_;
  int k_;
  FieldIndex eval_index_;
  FieldIndex pool_index_;
  std::vector<std::string> match_fields_;
  std::vector<std::optional<std::string>> examples_;
  std::map<std::string, std::vector<size_t>> pool_;
  TemplatePtr group_by_;
};

}  // namespace

PreparedTask prepare(const TaskConfig& task, const TaskData& data, const PrepareOptions& options) {
  int k = options.num_fewshot.value_or(task.num_fewshot);
  if (k < 0) throw Error(fmt::format("{}: num_fewshot must be >= 0", task.file));
  Preparer p(task, data, k);
  return p.run();
}

// ---------------------------------------------------------------------------------------------
// requests

std::vector<Request> build_requests(const TaskConfig& task, const PreparedTask& prepared) {
  std::vector<Request> out;
  for (size_t d = 0; d < prepared.docs.size(); ++d) {
    const PreparedDoc& p = prepared.docs[d];
    switch (task.output_type) {
      case OutputType::multiple_choice:
        for (size_t c = 0; c < p.choices.size(); ++c) {
          Request r;
          r.type = RequestType::loglikelihood;
          r.doc = d;
          r.choice = static_cast<int>(c);
          if (task.doc_to_continuation) {
            r.context = p.context + p.choices[c];
            r.continuation = task.target_delimiter + p.continuation;
          } else {
            r.context = p.context;
            r.continuation = task.target_delimiter + p.choices[c];
          }
          out.push_back(std::move(r));
        }
        break;
      case OutputType::loglikelihood: {
        Request r;
        r.type = RequestType::loglikelihood;
        r.doc = d;
        r.context = p.context;
        r.continuation = task.target_delimiter + p.continuation;
        out.push_back(std::move(r));
        break;
      }
      case OutputType::loglikelihood_rolling: {
        Request r;
        r.type = RequestType::loglikelihood_rolling;
        r.doc = d;
        r.continuation = p.continuation;
        out.push_back(std::move(r));
        break;
      }
      case OutputType::generate_until: {
        Request r;
        r.type = RequestType::generate_until;
        r.doc = d;
        r.context = p.context;
        r.until = task.until;
        r.max_gen_toks = task.max_gen_toks;
        out.push_back(std::move(r));
        break;
      }
    }
  }
  return out;
}

std::vector<Request> build_turn_requests(const TaskConfig& task, const PreparedTask& prepared, int turn,
                                         const std::vector<std::vector<std::string>>& answers) {
  std::vector<Request> out;
  if (task.output_type != OutputType::generate_until || turn < 1) return out;
  for (size_t d = 0; d < prepared.docs.size(); ++d) {
    const PreparedDoc& p = prepared.docs[d];
    if (static_cast<size_t>(turn) >= p.turns.size()) continue;
    if (d >= answers.size() || answers[d].size() < static_cast<size_t>(turn))
      throw Error(fmt::format("{}: turn {} of doc {} needs the answers of the earlier turns", task.file, turn, d));
    // context of turn 0 = preamble + turns[0]
    std::string ctx = p.context.substr(0, p.context.size() - p.turns.front().size());
    for (int t = 0; t < turn; ++t) ctx += p.turns[static_cast<size_t>(t)] + answers[d][static_cast<size_t>(t)] + task.turn_delimiter;
    ctx += p.turns[static_cast<size_t>(turn)];
    Request r;
    r.type = RequestType::generate_until;
    r.doc = d;
    r.turn = turn;
    r.context = std::move(ctx);
    r.until = task.until;
    r.max_gen_toks = task.max_gen_toks;
    out.push_back(std::move(r));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// scoring

namespace {

int argmax(const std::vector<double>& v) {
  int best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[static_cast<size_t>(best)]) best = static_cast<int>(i);
  return best;
}

double logsumexp(const std::vector<double>& v) {
  double m = -std::numeric_limits<double>::infinity();
  for (double x : v) m = std::max(m, x);
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (double x : v) s += std::exp(x - m);
  return m + std::log(s);
}

std::string metric_key(const std::string& metric, const FilterPipeline& f) {
  return f.name == "none" ? metric : metric + "," + f.name;
}

// Per-doc data the corpus metrics need.
struct CorpusData {
  std::map<std::string, std::vector<BleuStats>> bleu;  // metric key -> per doc
  std::map<std::string, std::vector<ChrfStats>> chrf;
  std::vector<double> confidence;                      // ece
  std::vector<int> correct;
};

MetricResult mean_metric(const std::string& name, const std::vector<double>& values) {
  MetricResult m;
  m.name = name;
  m.n = static_cast<int64_t>(values.size());
  m.higher_is_better = metric_higher_is_better(name.substr(0, name.find(',')));
  m.stderr_method = "mean";
  stats::MeanEstimate e = stats::mean_with_se(values);
  m.value = e.mean;
  m.stderr_value = e.se;
  auto owned = std::make_shared<const std::vector<double>>(values);
  m.statistic = [owned](std::span<const uint32_t> w) { return stats::weighted_mean(*owned, w); };
  return m;
}

MetricResult boot_metric(const std::string& name, size_t n, const stats::Statistic& stat, const ScoreOptions& options) {
  MetricResult m;
  m.name = name;
  m.n = static_cast<int64_t>(n);
  m.higher_is_better = metric_higher_is_better(name.substr(0, name.find(',')));
  m.stderr_method = "bootstrap";
  stats::BootstrapEstimate e = stats::bootstrap(n, stat, options.bootstrap);
  m.value = e.point;
  m.stderr_value = e.se;
  m.statistic = stat;
  return m;
}

// Metrics over the docs `sel` (indices into results).
std::vector<MetricResult> aggregate(const TaskConfig& task, const std::vector<DocResult>& results,
                                    const std::vector<size_t>& sel, const CorpusData& corpus,
                                    const ScoreOptions& options) {
  std::vector<MetricResult> out;
  const size_t n = sel.size();
  if (n == 0) return out;
  auto column = [&](const std::string& key) {
    std::vector<double> v;
    v.reserve(n);
    for (size_t i : sel) v.push_back(results[i].scores.at(key));
    return v;
  };
  for (const MetricSpec& m : task.metrics) {
    const std::string& name = m.name;
    if (task.output_type == OutputType::generate_until) {
      for (const FilterPipeline& f : task.filters) {
        const std::string key = metric_key(name, f);
        if (name == "bleu") {
          auto st = std::make_shared<std::vector<BleuStats>>();
          for (size_t i : sel) st->push_back(corpus.bleu.at(key)[i]);
          out.push_back(boot_metric(key, n, [st](std::span<const uint32_t> w) {
            BleuStats total;
            for (size_t k = 0; k < w.size(); ++k) {
              if (w[k] == 0) continue;
              const BleuStats& s = (*st)[k];
              total.sys_len += w[k] * s.sys_len;
              total.ref_len += w[k] * s.ref_len;
              for (int o = 0; o < kBleuMaxOrder; ++o) {
                total.counts[o] += w[k] * s.counts[o];
                total.totals[o] += w[k] * s.totals[o];
              }
            }
            return bleu_from_stats(total, false).score;
          }, options));
        } else if (name == "chrf") {
          auto st = std::make_shared<std::vector<ChrfStats>>();
          for (size_t i : sel) st->push_back(corpus.chrf.at(key)[i]);
          out.push_back(boot_metric(key, n, [st](std::span<const uint32_t> w) {
            ChrfStats total{};
            for (size_t k = 0; k < w.size(); ++k) {
              if (w[k] == 0) continue;
              for (size_t o = 0; o < total.size(); ++o) total[o] += w[k] * (*st)[k][o];
            }
            return chrf_from_stats(total);
          }, options));
        } else {
          out.push_back(mean_metric(key, column(key)));
        }
      }
      continue;
    }
    if (name == "acc" || name == "acc_norm" || name == "mc2") {
      out.push_back(mean_metric(name, column(name)));
    } else if (name == "ece") {
      auto conf = std::make_shared<std::vector<double>>();
      auto corr = std::make_shared<std::vector<int>>();
      for (size_t i : sel) {
        conf->push_back(corpus.confidence[i]);
        corr->push_back(corpus.correct[i]);
      }
      const int bins = m.bins;
      out.push_back(boot_metric(name, n, [conf, corr, bins](std::span<const uint32_t> w) {
        std::vector<double> c;
        std::vector<int> k;
        for (size_t j = 0; j < w.size(); ++j)
          for (uint32_t r = 0; r < w[j]; ++r) {
            c.push_back((*conf)[j]);
            k.push_back((*corr)[j]);
          }
        return expected_calibration_error(c, k, bins).ece;
      }, options));
    } else {
      // Ratios of weighted sums: exp(-sum logprob / sum denominator), or -sum / sum * scale.
      auto ratio = [&](auto denom, bool exp_form, double scale) {
        auto num = std::make_shared<std::vector<double>>();
        auto den = std::make_shared<std::vector<double>>();
        for (size_t i : sel) {
          num->push_back(results[i].logprob);
          den->push_back(static_cast<double>(denom(results[i])));
        }
        return stats::Statistic([num, den, exp_form, scale](std::span<const uint32_t> w) {
          double s = 0, d = 0;
          for (size_t j = 0; j < w.size(); ++j) {
            s += w[j] * (*num)[j];
            d += w[j] * (*den)[j];
          }
          return exp_form ? std::exp(-s / d) : -s / d * scale;
        });
      };
      if (name == "perplexity" && task.output_type == OutputType::loglikelihood) {
        // lm-eval: exp(-mean of the target log-likelihoods)
        out.push_back(boot_metric(name, n, ratio([](const DocResult&) { return 1; }, true, 1), options));
      } else if (name == "perplexity") {
        out.push_back(boot_metric(name, n, ratio([](const DocResult& r) { return r.tokens; }, true, 1), options));
      } else if (name == "word_perplexity") {
        out.push_back(boot_metric(name, n, ratio([](const DocResult& r) { return r.words; }, true, 1), options));
      } else if (name == "byte_perplexity") {
        out.push_back(boot_metric(name, n, ratio([](const DocResult& r) { return r.bytes; }, true, 1), options));
      } else if (name == "bits_per_byte") {
        out.push_back(
            boot_metric(name, n, ratio([](const DocResult& r) { return r.bytes; }, false, 1 / std::log(2.0)), options));
      }
    }
  }
  return out;
}

// Judge ratings: the mean over the docs that have a valid rating (NaN: none); the statistic
// resamples all docs and skips the NaN ones, so paired comparisons stay aligned by doc.
MetricResult judge_metric(const std::string& name, const std::vector<double>& values) {
  std::vector<double> valid;
  for (double v : values)
    if (!std::isnan(v)) valid.push_back(v);
  MetricResult m;
  m.name = name;
  m.n = static_cast<int64_t>(valid.size());
  m.higher_is_better = true;
  m.stderr_method = "mean";
  if (!valid.empty()) {
    const stats::MeanEstimate e = stats::mean_with_se(valid);
    m.value = e.mean;
    m.stderr_value = e.se;
  } else {
    m.value = m.stderr_value = std::numeric_limits<double>::quiet_NaN();
  }
  auto owned = std::make_shared<const std::vector<double>>(values);
  m.statistic = [owned](std::span<const uint32_t> w) {
    double s = 0, c = 0;
    for (size_t i = 0; i < w.size(); ++i)
      if (!std::isnan((*owned)[i])) {
        s += w[i] * (*owned)[i];
        c += w[i];
      }
    return c > 0 ? s / c : std::numeric_limits<double>::quiet_NaN();
  };
  return m;
}

// judge_turn<k> per turn and judge_score (per doc: the mean of its rated turns).
std::vector<MetricResult> judge_metrics(const std::vector<DocResult>& docs, const std::vector<size_t>& sel) {
  std::vector<MetricResult> out;
  size_t turns = 0;
  for (size_t i : sel) turns = std::max(turns, docs[i].ratings.size());
  if (turns == 0) return out;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> overall;
  for (size_t i : sel) {
    const auto it = docs[i].scores.find("judge_score");
    overall.push_back(it == docs[i].scores.end() ? nan : it->second);
  }
  out.push_back(judge_metric("judge_score", overall));
  for (size_t t = 0; t < turns; ++t) {
    std::vector<double> v;
    for (size_t i : sel) v.push_back(t < docs[i].ratings.size() ? docs[i].ratings[t] : nan);
    out.push_back(judge_metric("judge_turn" + std::to_string(t + 1), v));
  }
  return out;
}

}  // namespace

TaskResult score(const TaskConfig& task, const TaskData& data, const PreparedTask& prepared, const ModelAnswers& answers,
                 const ScoreOptions& options) {
  TaskResult res;
  res.task = task.name;
  res.dimension = task.dimension;
  res.sub_dimension = task.sub_dimension;
  res.output_type = task.output_type;
  res.num_fewshot = prepared.num_fewshot;
  res.n_docs = static_cast<int64_t>(prepared.docs.size());
  res.skipped = data.bad.count + prepared.bad.count;
  res.filtered_out = data.filtered_out;
  res.problems = data.bad.messages;
  res.problems.insert(res.problems.end(), prepared.bad.messages.begin(), prepared.bad.messages.end());

  const size_t nd = prepared.docs.size();
  res.docs.resize(nd);
  for (size_t d = 0; d < nd; ++d) {
    res.docs[d].doc = prepared.docs[d].doc;
    res.docs[d].group = prepared.docs[d].group;
    res.docs[d].gold = prepared.docs[d].gold;
    if (task.output_type == OutputType::multiple_choice) {
      res.docs[d].logprobs.assign(prepared.docs[d].choices.size(), std::numeric_limits<double>::quiet_NaN());
      res.docs[d].greedy.assign(prepared.docs[d].choices.size(), false);
    }
  }
  // Route the answers back to their docs.
  size_t il = 0, ir = 0, ig = 0;
  std::vector<std::vector<bool>> seen(nd);
  for (const Request& r : answers.requests) {
    if (r.doc >= nd) throw Error(fmt::format("{}: a request names doc {} of {}", task.file, r.doc, nd));
    DocResult& dr = res.docs[r.doc];
    switch (r.type) {
      case RequestType::loglikelihood: {
        if (il >= answers.loglikelihood.size()) throw Error(fmt::format("{}: fewer loglikelihood results than requests", task.file));
        const LoglikelihoodResult& a = answers.loglikelihood[il++];
        if (task.output_type == OutputType::multiple_choice) {
          if (r.choice < 0 || static_cast<size_t>(r.choice) >= dr.logprobs.size())
            throw Error(fmt::format("{}: a request names choice {} of doc {}", task.file, r.choice, r.doc));
          dr.logprobs[static_cast<size_t>(r.choice)] = a.logprob;
          dr.greedy[static_cast<size_t>(r.choice)] = a.is_greedy;
        } else {
          dr.logprobs = {a.logprob};
          dr.greedy = {a.is_greedy};
          dr.logprob = a.logprob;
          dr.tokens = a.n_tokens;
        }
        break;
      }
      case RequestType::loglikelihood_rolling: {
        if (ir >= answers.rolling.size()) throw Error(fmt::format("{}: fewer rolling results than requests", task.file));
        const RollingResult& a = answers.rolling[ir++];
        dr.logprob = a.logprob;
        dr.tokens = a.n_tokens;
        break;
      }
      case RequestType::generate_until: {
        if (ig >= answers.generations.size()) throw Error(fmt::format("{}: fewer generations than requests", task.file));
        if (dr.generations.size() <= static_cast<size_t>(r.turn)) dr.generations.resize(static_cast<size_t>(r.turn) + 1);
        dr.generations[static_cast<size_t>(r.turn)] = answers.generations[ig++];
        break;
      }
    }
  }

  CorpusData corpus;
  corpus.confidence.resize(nd);
  corpus.correct.resize(nd);
  for (size_t d = 0; d < nd; ++d) {
    const PreparedDoc& p = prepared.docs[d];
    DocResult& dr = res.docs[d];
    switch (task.output_type) {
      case OutputType::multiple_choice: {
        for (double lp : dr.logprobs)
          if (std::isnan(lp)) throw Error(fmt::format("{}: doc {} is missing the result of a choice", task.file, d));
        dr.predicted = argmax(dr.logprobs);
        const double acc = dr.predicted == p.gold ? 1.0 : 0.0;
        dr.scores["acc"] = acc;
        std::vector<double> norm(dr.logprobs.size());
        for (size_t c = 0; c < norm.size(); ++c) {
          // lm-eval: divide by the length of the choice (the continuation when contexts differ)
          const std::string& ch = task.doc_to_continuation ? p.continuation : p.choices[c];
          norm[c] = dr.logprobs[c] / static_cast<double>(std::max<size_t>(1, ch.size()));
        }
        dr.scores["acc_norm"] = argmax(norm) == p.gold ? 1.0 : 0.0;
        const double lse = logsumexp(dr.logprobs);
        if (!p.choice_labels.empty()) {
          double mass = 0;
          for (size_t c = 0; c < dr.logprobs.size(); ++c)
            if (p.choice_labels[c]) mass += std::exp(dr.logprobs[c] - lse);
          dr.scores["mc2"] = mass;
        }
        double conf = std::exp(dr.logprobs[static_cast<size_t>(dr.predicted)] - lse);
        corpus.confidence[d] = std::clamp(conf, 0.0, 1.0);
        corpus.correct[d] = static_cast<int>(acc);
        break;
      }
      case OutputType::loglikelihood:
        if (dr.logprobs.empty()) throw Error(fmt::format("{}: doc {} has no result", task.file, d));
        dr.scores["acc"] = dr.greedy.front() ? 1.0 : 0.0;
        break;
      case OutputType::loglikelihood_rolling:
        dr.words = p.words;
        dr.bytes = p.bytes;
        break;
      case OutputType::generate_until: {
        if (dr.generations.empty()) throw Error(fmt::format("{}: doc {} has no generation", task.file, d));
        for (const FilterPipeline& f : task.filters) {
          std::string ans = apply_filters(f, {dr.generations.back()});
          dr.answers[f.name] = ans;
          for (const MetricSpec& m : task.metrics) {
            const std::string key = metric_key(m.name, f);
            const std::vector<std::string>& refs = p.references;
            if (m.name == "exact_match") {
              const std::string a = exact_match_normalize(ans, m.exact);
              double em = 0;
              for (const auto& r : refs)
                if (exact_match_normalize(r, m.exact) == a) em = 1;
              dr.scores[key] = em;
            } else if (m.name == "f1") {
              dr.scores[key] = squad_score(ans, refs).f1;
            } else if (m.name.starts_with("rouge")) {
              RougeScores rs = rouge_multi(ans, refs, m.stem);
              const RougeScore& pick = m.name == "rouge1"   ? rs.rouge1
                                       : m.name == "rouge2" ? rs.rouge2
                                       : m.name == "rougeL" ? rs.rougeL
                                                            : rs.rougeLsum;
              dr.scores[key] = pick.fmeasure;
            } else if (m.name == "bleu") {
              BleuStats st = bleu_segment_stats(ans, refs);
              corpus.bleu[key].push_back(st);
              dr.scores[key] = bleu_from_stats(st, true).score;  // sentence BLEU (effective order)
            } else if (m.name == "chrf") {
              ChrfStats st = chrf_segment_stats(ans, refs);
              corpus.chrf[key].push_back(st);
              dr.scores[key] = chrf_from_stats(st);
            }
          }
        }
        break;
      }
    }
  }

  const bool judged = task.judge && !answers.judged.empty();
  if (judged) {
    if (answers.judgments.size() != answers.judged.size())
      throw Error(fmt::format("{}: {} judge answers for {} judge requests", task.file, answers.judgments.size(),
                              answers.judged.size()));
    res.judge = answers.judge;
    for (size_t i = 0; i < answers.judged.size(); ++i) {
      const auto [d, turn] = answers.judged[i];
      if (d >= nd || turn < 0) throw Error(fmt::format("{}: a judge answer names doc {} of {}", task.file, d, nd));
      DocResult& dr = res.docs[d];
      const auto t = static_cast<size_t>(turn);
      if (dr.judgments.size() <= t) {
        dr.judgments.resize(t + 1);
        dr.ratings.resize(t + 1, std::numeric_limits<double>::quiet_NaN());
      }
      dr.judgments[t] = answers.judgments[i];
      const auto r = parse_judge_rating(answers.judgments[i], task.judge->min_score, task.judge->max_score);
      if (r) dr.ratings[t] = *r;
      else ++res.judge_invalid;
    }
    for (DocResult& dr : res.docs) {
      double s = 0;
      int c = 0;
      for (double r : dr.ratings)
        if (!std::isnan(r)) {
          s += r;
          ++c;
        }
      if (c > 0) dr.scores["judge_score"] = s / c;
      for (size_t t = 0; t < dr.ratings.size(); ++t)
        if (!std::isnan(dr.ratings[t])) dr.scores["judge_turn" + std::to_string(t + 1)] = dr.ratings[t];
    }
  }

  std::vector<size_t> all(nd);
  for (size_t d = 0; d < nd; ++d) all[d] = d;
  res.metrics = aggregate(task, res.docs, all, corpus, options);
  if (judged)
    for (auto& m : judge_metrics(res.docs, all)) res.metrics.push_back(std::move(m));
  if (!task.group_by.empty()) {
    std::map<std::string, std::vector<size_t>> by;
    for (size_t d = 0; d < nd; ++d) by[res.docs[d].group].push_back(d);
    for (const auto& [g, sel] : by) {
      res.groups[g] = aggregate(task, res.docs, sel, corpus, options);
      if (judged)
        for (auto& m : judge_metrics(res.docs, sel)) res.groups[g].push_back(std::move(m));
    }
  }
  return res;
}

TaskResult evaluate(const TaskConfig& task, const TaskData& data, LanguageModel& model, const EvalOptions& options) {
  PrepareOptions po;
  po.num_fewshot = options.num_fewshot;
  PreparedTask prepared = prepare(task, data, po);
  ModelAnswers answers;
  auto run = [&](const std::vector<Request>& reqs) {
    std::vector<Request> ll, roll, gen;
    for (const Request& r : reqs) {
      if (r.type == RequestType::loglikelihood) ll.push_back(r);
      if (r.type == RequestType::loglikelihood_rolling) roll.push_back(r);
      if (r.type == RequestType::generate_until) gen.push_back(r);
    }
    auto check = [&](size_t got, size_t want, const char* what) {
      if (got != want) throw Error(fmt::format("{}: the model returned {} {} results for {} requests", task.file, got, what, want));
    };
    // Requests of one kind keep their relative order, so the answers can be appended per kind.
    if (!ll.empty()) {
      auto a = model.loglikelihood(ll);
      check(a.size(), ll.size(), "loglikelihood");
      answers.loglikelihood.insert(answers.loglikelihood.end(), a.begin(), a.end());
    }
    if (!roll.empty()) {
      auto a = model.loglikelihood_rolling(roll);
      check(a.size(), roll.size(), "loglikelihood_rolling");
      answers.rolling.insert(answers.rolling.end(), a.begin(), a.end());
    }
    if (!gen.empty()) {
      auto a = model.generate_until(gen);
      check(a.size(), gen.size(), "generate_until");
      answers.generations.insert(answers.generations.end(), a.begin(), a.end());
    }
    // Keep requests grouped by kind in the same order as the answers.
    answers.requests.insert(answers.requests.end(), ll.begin(), ll.end());
    answers.requests.insert(answers.requests.end(), roll.begin(), roll.end());
    answers.requests.insert(answers.requests.end(), gen.begin(), gen.end());
    return gen;
  };
  std::vector<Request> first = build_requests(task, prepared);
  std::vector<Request> gen = run(first);
  if (task.doc_to_turns) {
    std::vector<std::vector<std::string>> turns(prepared.docs.size());
    size_t max_turns = 0;
    for (const auto& p : prepared.docs) max_turns = std::max(max_turns, p.turns.size());
    size_t offset = answers.generations.size() - gen.size();
    for (size_t k = 0; k < gen.size(); ++k) turns[gen[k].doc].push_back(answers.generations[offset + k]);
    for (size_t t = 1; t < max_turns; ++t) {
      std::vector<Request> next = build_turn_requests(task, prepared, static_cast<int>(t), turns);
      if (next.empty()) break;
      offset = answers.generations.size();
      std::vector<Request> sent = run(next);
      for (size_t k = 0; k < sent.size(); ++k) turns[sent[k].doc].push_back(answers.generations[offset + k]);
    }
  }
  if (task.judge && options.judge != nullptr) {
    std::vector<std::vector<std::string>> generations(prepared.docs.size());
    size_t ig = 0;
    for (const Request& r : answers.requests) {
      if (r.type != RequestType::generate_until) continue;
      auto& g = generations[r.doc];
      if (g.size() <= static_cast<size_t>(r.turn)) g.resize(static_cast<size_t>(r.turn) + 1);
      g[static_cast<size_t>(r.turn)] = answers.generations[ig++];
    }
    const std::vector<ChatRequest> jr = build_judge_requests(task, data, prepared, generations, answers.judged);
    answers.judgments = options.judge->chat(jr);
    if (answers.judgments.size() != jr.size())
      throw Error(fmt::format("{}: the judge returned {} answers for {} requests", task.file, answers.judgments.size(),
                              jr.size()));
    answers.judge = options.judge->describe();
  }
  return score(task, data, prepared, answers, options.scoring);
}

std::vector<ChatRequest> build_judge_requests(const TaskConfig& task, const TaskData& data, const PreparedTask& prepared,
                                              const std::vector<std::vector<std::string>>& generations,
                                              std::vector<std::pair<size_t, int>>& judged) {
  std::vector<ChatRequest> out;
  judged.clear();
  if (!task.judge) return out;
  if (generations.size() != prepared.docs.size())
    throw Error(fmt::format("{}: generations for {} docs, {} prepared", task.file, generations.size(), prepared.docs.size()));
  for (size_t d = 0; d < prepared.docs.size(); ++d) {
    const Json& doc = data.docs[prepared.docs[d].doc];
    Json questions = Json::array();
    if (task.doc_to_turns) {
      questions = task.doc_to_turns->evaluate(doc);
    } else if (task.doc_to_text) {
      questions.push_back(task.doc_to_text->render(doc));
    }
    Json answers = Json::array();
    for (size_t t = 0; t < generations[d].size(); ++t) {
      answers.push_back(generations[d][t]);
      Json vars = Json::object();
      vars["turn_index"] = static_cast<int64_t>(t);
      vars["questions"] = questions;
      vars["answers"] = answers;
      ChatRequest r;
      r.max_tokens = task.judge->max_tokens;
      if (task.judge->system) r.messages.push_back({"system", task.judge->system->render(doc, vars)});
      r.messages.push_back({"user", task.judge->prompt->render(doc, vars)});
      out.push_back(std::move(r));
      judged.emplace_back(d, static_cast<int>(t));
    }
  }
  return out;
}

std::vector<MetricResult> aggregate_tasks(const std::vector<TaskResult>& results, bool weight_by_docs) {
  std::vector<MetricResult> out;
  if (results.empty()) return out;
  for (const MetricResult& first : results.front().metrics) {
    std::vector<const MetricResult*> ms;
    for (const TaskResult& r : results) {
      const MetricResult* m = r.metric(first.name);
      if (m == nullptr) break;
      ms.push_back(m);
    }
    if (ms.size() != results.size()) continue;
    MetricResult g;
    g.name = first.name;
    g.higher_is_better = first.higher_is_better;
    g.stderr_method = "combined";
    double total = 0;
    for (const auto* m : ms) total += static_cast<double>(m->n);
    double v = 0, var = 0;
    for (const auto* m : ms) {
      double w = weight_by_docs ? (total > 0 ? static_cast<double>(m->n) / total : 0) : 1.0 / static_cast<double>(ms.size());
      v += w * m->value;
      var += w * w * m->stderr_value * m->stderr_value;
      g.n += m->n;
    }
    g.value = v;
    g.stderr_value = std::sqrt(var);
    out.push_back(g);
  }
  return out;
}

}  // namespace qeval::eval::task
