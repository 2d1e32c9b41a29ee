#include "qeval/eval/task/filters.h"

#include "qeval/eval/metrics/text.h"
#include "qeval/eval/task/template.h"

namespace qeval::eval::task {

std::regex compile_pattern(const std::string& pattern) {
  std::string p = pattern;
  bool dotall = false, icase = false;
  if (p.starts_with("(?")) {
    size_t close = p.find(')');
    std::string flags = close == std::string::npos ? "" : p.substr(2, close - 2);
    bool only_flags = !flags.empty() && flags.find_first_not_of("si") == std::string::npos;
    if (only_flags) {
      dotall = flags.find('s') != std::string::npos;
      icase = flags.find('i') != std::string::npos;
      p = p.substr(close + 1);
    }
  }
  if (dotall) {
    // '.' outside a bracket expression and not escaped -> [\s\S]
    std::string out;
    bool in_class = false;
    for (size_t i = 0; i < p.size(); ++i) {
      char c = p[i];
      if (c == '\\' && i + 1 < p.size()) {
        out.push_back(c);
        out.push_back(p[++i]);
        continue;
      }
      if (in_class) {
        if (c == ']') in_class = false;
        out.push_back(c);
        continue;
      }
      if (c == '[') {
        in_class = true;
        out.push_back(c);
        if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
        if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
        continue;
      }
      if (c == '.') {
        out += "[\\s\\S]";
        continue;
      }
      out.push_back(c);
    }
    p = out;
  }
  auto flags = std::regex::ECMAScript;
  if (icase) flags |= std::regex::icase;
  return std::regex(p, flags);
}

std::string apply_step(const FilterStep& step, const std::string& response) {
  switch (step.kind) {
    case FilterStep::Kind::strip: return strip(response);
    case FilterStep::Kind::lowercase: {
      return text::encode_utf8(text::lower(text::decode_utf8(response)));
    }
    case FilterStep::Kind::uppercase: {
      std::string s = response;
      for (char& c : s)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      return s;
    }
    case FilterStep::Kind::remove_whitespace: {
      size_t i = 0;
      while (i < response.size() && (response[i] == ' ' || response[i] == '\t' || response[i] == '\n' ||
                                     response[i] == '\r'))
        ++i;
      return response.substr(i);
    }
    case FilterStep::Kind::take_first: return response;
    case FilterStep::Kind::regex: {
      const std::regex& re = *step.regex;
      std::vector<std::smatch> matches;
      for (auto it = std::sregex_iterator(response.begin(), response.end(), re); it != std::sregex_iterator(); ++it)
        matches.push_back(*it);
      if (matches.empty()) return step.fallback;
      const int n = static_cast<int>(matches.size());
      int k = step.select < 0 ? step.select + n : step.select;
      if (k < 0 || k >= n) return step.fallback;
      const std::smatch& m = matches[static_cast<size_t>(k)];
      const size_t groups = m.size() - 1;
      std::string out;
      if (step.group > 0) {
        if (static_cast<size_t>(step.group) > groups) return step.fallback;
        out = m[static_cast<size_t>(step.group)].str();
      } else if (groups == 0) {
        out = m[0].str();
      } else if (groups == 1) {
        out = m[1].str();
      } else {
        bool found = false;
        for (size_t g = 1; g <= groups; ++g) {
          if (m[g].matched && m[g].length() > 0) {
            out = m[g].str();
            found = true;
            break;
          }
        }
        if (!found) return step.fallback;
      }
      return strip(out);
    }
  }
  return response;
}

std::string apply_filters(const FilterPipeline& pipeline, std::vector<std::string> responses) {
  for (const FilterStep& step : pipeline.steps) {
    if (step.kind == FilterStep::Kind::take_first) {
      if (responses.size() > 1) responses.resize(1);
      continue;
    }
    for (auto& r : responses) r = apply_step(step, r);
  }
  return responses.empty() ? std::string() : responses.front();
}

std::string exact_match_normalize(const std::string& s, const ExactMatchOptions& options) {
  std::string out = s;
  for (const auto& re : options.compiled) out = std::regex_replace(out, *re, "");
  if (options.ignore_case) out = text::encode_utf8(text::lower(text::decode_utf8(out)));
  if (options.ignore_punctuation) {
    std::string t;
    t.reserve(out.size());
    static const std::string kPunct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    for (char c : out)
      if (kPunct.find(c) == std::string::npos) t.push_back(c);
    out.swap(t);
  }
  return out;
}

}  // namespace qeval::eval::task
