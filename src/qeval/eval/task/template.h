#pragma once
// The prompt template language of task files: a small, Jinja-like language (see docs/TASKS.md
// for the full reference). Text is copied; `{{ expr }}` prints a value; `{% for x in expr %}`
// ... `{% endfor %}` and `{% if expr %}` ... `{% elif expr %}` ... `{% else %}` ... `{% endif %}`
// are the statements; `{# ... #}` is a comment; a '-' inside a delimiter (`{{-`, `-%}`) trims
// the whitespace on that side. Expressions: field paths (`a.b`, `list[0]`, `x["key"]`,
// slices `s[1:-1]`), string/integer/float/bool/none literals, list literals `[a, b]`, filters
// `expr | name` / `expr | name(args)`, `~` (string concatenation), `+ - * /`, comparisons,
// `in`, `and`, `or`, `not`, parentheses. Values are JSON values (docs are JSON objects).
//
// Errors carry the template's origin: "<task file>:<line>: <problem> in <key>", where line is the
// YAML line of the value (for a literal block scalar '|' the exact line inside the block).
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/util/error.h"

namespace qeval::eval::task {

// Docs keep their fields in file order (TruthfulQA's answer maps depend on it).
using Json = nlohmann::ordered_json;

struct TemplateOrigin {
  std::string file;    // task file as the user named it
  int line = 0;        // 1-based line of the YAML value; 0 = unknown
  bool block = false;  // literal block scalar: text line k is file line `line + 1 + k`
  std::string key;     // e.g. "doc_to_text", "doc_to_choice[1]"
};

// A problem met while rendering. kind = missing_field when a name or key path does not exist in
// the doc (field holds the dotted path, e.g. "question.stem"), other otherwise.
class TemplateError : public Error {
 public:
  enum class Kind { missing_field, other };
  TemplateError(const std::string& message, Kind kind, std::string problem, std::string field, std::string location,
                std::string key)
      : Error(message),
        kind(kind),
        problem(std::move(problem)),
        field(std::move(field)),
        location(std::move(location)),
        key(std::move(key)) {}
  Kind kind;
  std::string problem;   // without the location, e.g. "unknown field 'questoin'"
  std::string field;
  std::string location;  // "<file>:<line>"
  std::string key;       // the template's YAML key, e.g. "doc_to_text"
};

class Template;
using TemplatePtr = std::shared_ptr<const Template>;
// User-defined filters (a task's `template_filters`): name -> template rendered with `value`
// bound to the filter's operand.
using CustomFilters = std::map<std::string, TemplatePtr>;

class Template {
 public:
  // Throws qeval::Error "<file>:<line>: <problem> in <key>" on a syntax error or an unknown filter.
  static TemplatePtr parse(std::string_view text, TemplateOrigin origin, const CustomFilters& custom = {});
  ~Template();

  // The rendered text. `vars` (a JSON object or null) adds names that shadow the doc's fields.
  std::string render(const Json& doc, const Json& vars = Json()) const;
  // A template that is exactly one `{{ expr }}` (surrounding whitespace allowed) gives the
  // expression's value (a list, a number, ...); any other template gives its rendered text.
  Json evaluate(const Json& doc, const Json& vars = Json()) const;

  bool is_single_expression() const;
  const std::string& text() const { return text_; }
  const TemplateOrigin& origin() const { return origin_; }
  // "<file>:<line>" of the template's start.
  std::string location() const;

  struct Impl;

 private:
  Template() = default;
  std::string text_;
  TemplateOrigin origin_;
  std::unique_ptr<Impl> impl_;
};

// Helpers shared with the rest of the task module.
// A value as the template language prints it: strings as they are, null as "", true/false as
// "True"/"False", integers in decimal, floats as Python's repr, lists/objects as compact JSON.
std::string to_text(const Json& v);
// Python truthiness: null, false, 0, "", [] and {} are false.
bool truthy(const Json& v);
// Python str.strip() (Unicode whitespace).
std::string strip(std::string_view s);
// lm-evaluation-harness's wikitext detokenizer (see docs/TASKS.md).
std::string wikitext_detokenize(std::string_view s);
// Names of the built-in filters.
const std::vector<std::string>& builtin_filters();

}  // namespace qeval::eval::task
