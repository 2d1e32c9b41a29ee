#pragma once
// Answer extraction for generate_until tasks (lm-evaluation-harness "filters") and the
// normalisation of its exact_match metric.
//
// A pipeline turns the responses of one doc (one per sample; QEval draws one) into the answer
// that is scored. Steps:
//   regex       all non-overlapping matches of `pattern` in each response; match number `select`
//               (0 = first, -1 = last) is kept. From it: capture group `group` when > 0;
//               with group 0 (default) the whole match when the pattern has no group, the group
//               when it has one, the first non-empty group when it has several. The result is
//               stripped; when there is no such match (or the group is empty with several
//               groups) the answer is `fallback` (default "[invalid]").
//   take_first  keep only the first response.
//   strip, lowercase, uppercase, remove_whitespace (leading whitespace, as lm-eval's
//               remove_whitespace filter)
// Patterns are ECMAScript regular expressions; a leading Python inline flag group "(?s)",
// "(?i)" or "(?si)" is understood ('.' then also matches newlines / case is ignored).
#include <memory>
#include <regex>
#include <string>
#include <vector>

namespace qeval::eval::task {

// Compiles a task file's pattern (ECMAScript plus the leading (?s)/(?i) flags). Throws
// std::regex_error.
std::regex compile_pattern(const std::string& pattern);

struct FilterStep {
  enum class Kind { regex, take_first, strip, lowercase, uppercase, remove_whitespace };
  Kind kind = Kind::take_first;
  std::string pattern;
  std::shared_ptr<const std::regex> regex;
  int select = 0;
  int group = 0;
  std::string fallback = "[invalid]";
};

struct FilterPipeline {
  std::string name = "none";
  std::vector<FilterStep> steps;
};

std::string apply_step(const FilterStep& step, const std::string& response);
// The first response left after every step ("" when there are none).
std::string apply_filters(const FilterPipeline& pipeline, std::vector<std::string> responses);

// lm-eval's exact_match (Hugging Face evaluate): remove every match of each regex, then
// lower-case (ignore_case), then delete ASCII punctuation (ignore_punctuation); the answer and
// the reference are equal after this.
struct ExactMatchOptions {
  bool ignore_case = false;
  bool ignore_punctuation = false;
  std::vector<std::string> regexes_to_ignore;
  std::vector<std::shared_ptr<const std::regex>> compiled;  // filled by the task loader
};
std::string exact_match_normalize(const std::string& s, const ExactMatchOptions& options);

}  // namespace qeval::eval::task
