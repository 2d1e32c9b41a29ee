#include "qeval/eval/task/dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "qeval/eval/metrics/text.h"

namespace qeval::eval::task {

namespace fs = std::filesystem;

void BadRows::add(const std::string& message) {
  ++count;
  if (messages.size() < 20) messages.push_back(message);
}

namespace {

std::string where(const std::string& file, int64_t row) { return fmt::format("{}:{}", file, row); }

// A bad record: fail, or count it and go on.
void bad_record(const std::string& file, int64_t row, const std::string& problem, const DatasetSpec& spec,
                BadRows& bad) {
  std::string msg = fmt::format("{}: {}", where(file, row), problem);
  if (!spec.skip_bad) throw Error(msg);
  bad.add(msg);
}

std::string_view skip_bom(std::string_view s) {
  if (s.size() >= 3 && static_cast<unsigned char>(s[0]) == 0xEF && static_cast<unsigned char>(s[1]) == 0xBB &&
      static_cast<unsigned char>(s[2]) == 0xBF)
    return s.substr(3);
  return s;
}

int64_t line_at(std::string_view s, size_t offset) {
  return 1 + static_cast<int64_t>(std::count(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(std::min(offset, s.size())), '\n'));
}

// Line numbers of increasing offsets, counted incrementally (offsets must not decrease).
class LineCounter {
 public:
  explicit LineCounter(std::string_view s) : s_(s) {}
  int64_t at(size_t offset) {
    offset = std::min(offset, s_.size());
    if (offset < pos_) {  // not monotonic: count again from the start
      pos_ = 0;
      line_ = 1;
    }
    line_ += std::count(s_.begin() + static_cast<std::ptrdiff_t>(pos_), s_.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
    pos_ = offset;
    return line_;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
  int64_t line_ = 1;
};

std::optional<std::string> utf8_problem(std::string_view s) {
  if (auto off = text::find_invalid_utf8(s)) return fmt::format("invalid UTF-8 (byte {} of the record)", *off);
  return std::nullopt;
}

std::string normalize_newlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    out.push_back(s[i]);
  }
  return out;
}

// Lines without their terminators ('\n'; a '\r' before it is kept unless strip_cr), with the
// offset where each starts. A final '\n' does not start a line.
struct Line {
  std::string_view text;
  size_t offset;
};
std::vector<Line> split_lines(std::string_view s, bool strip_cr) {
  std::vector<Line> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find('\n', i);
    size_t end = j == std::string_view::npos ? s.size() : j;
    std::string_view t = s.substr(i, end - i);
    if (strip_cr && !t.empty() && t.back() == '\r') t.remove_suffix(1);
    out.push_back({t, i});
    if (j == std::string_view::npos) break;
    i = j + 1;
  }
  return out;
}

std::string json_type(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "a list";
    case Json::value_t::object: return "an object";
    default: return "a number";
  }
}

// ---- jsonl ----
void read_jsonl(const std::string& file, std::string_view s, const DatasetSpec& spec, BadRows& bad, FileRecords& out) {
  std::vector<Line> lines = split_lines(s, true);
  for (size_t li = 0; li < lines.size(); ++li) {
    const Line& l = lines[li];
    if (strip(l.text).empty()) continue;
    int64_t row = static_cast<int64_t>(li + 1);
    out.rows.push_back(row);
    if (auto p = utf8_problem(l.text)) {
      bad_record(file, row, *p, spec, bad);
      out.records.emplace_back();
      continue;
    }
    Json j;
    try {
      j = Json::parse(l.text);
    } catch (const Json::parse_error& e) {
      std::string what = e.what();
      if (auto k = what.find("] "); k != std::string::npos) what = what.substr(k + 2);
      bad_record(file, row, "invalid JSON: " + what, spec, bad);
      out.records.emplace_back();
      continue;
    }
    if (!j.is_object()) {
      bad_record(file, row, "record is " + json_type(j) + ", not an object", spec, bad);
      out.records.emplace_back();
      continue;
    }
    out.records.emplace_back(std::move(j));
  }
}

// ---- json: where the elements of the records array start ----
class JsonScanner {
 public:
  explicit JsonScanner(std::string_view s) : s_(s) {}

  // Offsets of the elements of the array at `path` (empty when it cannot be found).
  std::vector<size_t> element_offsets(const std::vector<std::string>& path) {
    std::vector<size_t> out;
    try {
      ws();
      for (const std::string& key : path) {
        if (!find_key(key)) return {};
      }
      ws();
      if (peek() != '[') return {};
      ++i_;
      ws();
      if (peek() == ']') return out;
      while (true) {
        ws();
        out.push_back(i_);
        skip_value();
        ws();
        char c = next();
        if (c == ']') break;
        if (c != ',') return {};
      }
    } catch (const std::out_of_range&) {
      return {};
    }
    return out;
  }

 private:
  char peek() const {
    if (i_ >= s_.size()) throw std::out_of_range("json");
    return s_[i_];
  }
  char next() {
    char c = peek();
    ++i_;
    return c;
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  std::string string() {
    std::string out;
    if (next() != '"') throw std::out_of_range("json");
    while (true) {
      char c = next();
      if (c == '"') return out;
      if (c == '\\') {
        out.push_back(c);
        c = next();
      }
      out.push_back(c);
    }
  }
  void skip_value() {
    ws();
    char c = peek();
    if (c == '"') {
      string();
      return;
    }
    if (c == '{' || c == '[') {
      int depth = 0;
      while (true) {
        char d = peek();
        if (d == '"') {
          string();
          continue;
        }
        ++i_;
        if (d == '{' || d == '[') ++depth;
        if (d == '}' || d == ']') {
          if (--depth == 0) return;
        }
      }
    }
    while (i_ < s_.size() && s_[i_] != ',' && s_[i_] != '}' && s_[i_] != ']') ++i_;
  }
  // Inside the current object value, moves to the value of `key`.
  bool find_key(const std::string& key) {
    ws();
    if (next() != '{') return false;
    while (true) {
      ws();
      if (peek() == '}') return false;
      std::string k = string();
      ws();
      if (next() != ':') return false;
      ws();
      if (k == key) return true;
      skip_value();
      ws();
      if (next() != ',') return false;
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

std::vector<std::string> split_path(const std::string& p) {
  std::vector<std::string> out;
  if (p.empty()) return out;
  size_t i = 0;
  while (true) {
    size_t j = p.find('.', i);
    out.push_back(p.substr(i, j == std::string::npos ? std::string::npos : j - i));
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return out;
}

void read_json(const std::string& file, std::string_view s, const DatasetSpec& spec, BadRows& bad, FileRecords& out) {
  if (auto off = text::find_invalid_utf8(s)) throw Error(fmt::format("{}: invalid UTF-8", where(file, line_at(s, *off))));
  Json top;
  try {
    top = Json::parse(s);
  } catch (const Json::parse_error& e) {
    std::string what = e.what();
    if (auto k = what.find("] "); k != std::string::npos) what = what.substr(k + 2);
    fail_file(file, "invalid JSON: " + what);
  }
  const std::vector<std::string> path = split_path(spec.records);
  Json* arr = &top;
  std::string walked;
  for (const std::string& key : path) {
    if (!arr->is_object() || !arr->contains(key))
      fail_file(file, fmt::format("no key '{}'{} (records: {})", key, walked.empty() ? "" : " in '" + walked + "'",
                                  spec.records));
    arr = &(*arr)[key];
    walked += (walked.empty() ? "" : ".") + key;
  }
  if (!arr->is_array()) {
    if (path.empty() && arr->is_object()) {
      std::string keys;
      for (auto it = arr->begin(); it != arr->end() && keys.size() < 60; ++it) keys += (keys.empty() ? "" : ", ") + it.key();
      fail_file(file, fmt::format("the top level is an object (keys: {}); name the array of records with `records`", keys));
    }
    fail_file(file, fmt::format("{} is {}, not a list of records", walked.empty() ? "the top level" : "'" + walked + "'",
                                json_type(*arr)));
  }
  std::vector<size_t> offsets = JsonScanner(s).element_offsets(path);
  const bool have_lines = offsets.size() == arr->size();
  LineCounter lines(s);
  for (size_t i = 0; i < arr->size(); ++i) {
    // Row: the element's line when it could be located, else its 1-based index.
    int64_t row = have_lines ? lines.at(offsets[i]) : static_cast<int64_t>(i + 1);
    out.rows.push_back(row);
    Json& rec = (*arr)[i];
    if (!rec.is_object()) {
      bad_record(file, row, "record is " + json_type(rec) + ", not an object", spec, bad);
      out.records.emplace_back();
      continue;
    }
    out.records.emplace_back(std::move(rec));
  }
}

// ---- csv ----
struct CsvRow {
  std::vector<std::string> fields;
  int64_t line = 0;
};

std::vector<CsvRow> parse_csv(const std::string& file, std::string_view s) {
  std::vector<CsvRow> rows;
  size_t i = 0;
  int64_t line = 1;
  while (i < s.size()) {
    CsvRow row;
    row.line = line;
    std::string field;
    bool row_done = false;
    // Blank line: skip.
    if (s[i] == '\n' || (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) {
      i += s[i] == '\n' ? 1 : 2;
      ++line;
      continue;
    }
    while (!row_done) {
      field.clear();
      if (i < s.size() && s[i] == '"') {
        int64_t open_line = line;
        ++i;
        while (true) {
          if (i >= s.size()) throw Error(fmt::format("{}: unterminated quoted field", where(file, open_line)));
          char c = s[i++];
          if (c == '"') {
            if (i < s.size() && s[i] == '"') {
              field.push_back('"');
              ++i;
              continue;
            }
            break;
          }
          if (c == '\n') ++line;
          field.push_back(c);
        }
        // After the closing quote: ',' or end of line / file.
        if (i < s.size() && s[i] != ',' && s[i] != '\n' && !(s[i] == '\r' && (i + 1 == s.size() || s[i + 1] == '\n')))
          throw Error(fmt::format("{}: unexpected character after a closing quote", where(file, line)));
      } else {
        while (i < s.size() && s[i] != ',' && s[i] != '\n') {
          if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] == '\n')) {
            ++i;
            continue;
          }
          field.push_back(s[i++]);
        }
      }
      if (i < s.size() && s[i] == '\r') ++i;
      row.fields.push_back(field);
      if (i >= s.size()) {
        row_done = true;
      } else if (s[i] == ',') {
        ++i;
      } else if (s[i] == '\n') {
        ++i;
        ++line;
        row_done = true;
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

void read_csv(const std::string& file, std::string_view s, const DatasetSpec& spec, BadRows& bad, FileRecords& out) {
  std::vector<CsvRow> rows = parse_csv(file, s);
  const bool header = spec.header.value_or(spec.columns.empty());
  std::vector<std::string> names = spec.columns;
  size_t first = 0;
  if (header) {
    if (rows.empty()) fail_file(file, "no header row");
    if (names.empty()) names = rows[0].fields;
    first = 1;
  }
  if (names.empty()) fail_file(file, "no field names (no header and no `columns`)");
  std::set<std::string> seen;
  for (const auto& n : names) {
    if (!seen.insert(n).second) fail_file(file, fmt::format("field name '{}' appears twice", n));
    if (auto p = text::find_invalid_utf8(n)) fail_file(file, "invalid UTF-8 in the header");
  }
  for (size_t r = first; r < rows.size(); ++r) {
    const CsvRow& row = rows[r];
    out.rows.push_back(row.line);
    if (row.fields.size() != names.size()) {
      bad_record(file, row.line,
                 fmt::format("expected {} fields, found {}", names.size(), row.fields.size()), spec, bad);
      out.records.emplace_back();
      continue;
    }
    Json doc = Json::object();
    bool ok = true;
    for (size_t k = 0; k < names.size(); ++k) {
      if (auto p = text::find_invalid_utf8(row.fields[k])) {
        bad_record(file, row.line, fmt::format("invalid UTF-8 in field '{}'", names[k]), spec, bad);
        ok = false;
        break;
      }
      doc[names[k]] = row.fields[k];
    }
    if (!ok) {
      out.records.emplace_back();
      continue;
    }
    out.records.emplace_back(std::move(doc));
  }
}

// ---- text ----
void read_text(const std::string& file, std::string_view raw, const DatasetSpec& spec, BadRows& bad, FileRecords& out) {
  std::string owned;
  std::string_view s = raw;
  if (spec.normalize_newlines) {
    owned = normalize_newlines(raw);
    s = owned;
  }
  LineCounter lines(s);
  auto add = [&](std::string_view piece, size_t offset) {
    int64_t row = lines.at(offset);
    out.rows.push_back(row);
    if (auto p = utf8_problem(piece)) {
      bad_record(file, row, *p, spec, bad);
      out.records.emplace_back();
      return;
    }
    Json doc = Json::object();
    doc[spec.field] = std::string(piece);
    out.records.emplace_back(std::move(doc));
  };
  if (!spec.separator.empty()) {
    std::string_view t = s;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.remove_suffix(1);
    size_t i = 0;
    while (i <= t.size()) {
      size_t j = t.find(spec.separator, i);
      size_t end = j == std::string_view::npos ? t.size() : j;
      if (end > i) add(t.substr(i, end - i), i);
      if (j == std::string_view::npos) break;
      i = j + spec.separator.size();
    }
    return;
  }
  if (!spec.doc_start.empty()) {
    std::regex start;
    try {
      start = std::regex(spec.doc_start, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw Error(fmt::format("{}: invalid doc_start regular expression: {}", spec.origin, e.what()));
    }
    std::vector<Line> all_lines = split_lines(s, false);
    size_t doc_begin = 0;
    bool open = false;
    auto close_doc = [&](size_t end_offset) {
      // Exact bytes up to end_offset without the final line break.
      std::string_view piece = s.substr(doc_begin, end_offset - doc_begin);
      if (!piece.empty() && piece.back() == '\n') piece.remove_suffix(1);
      if (!piece.empty() && piece.back() == '\r') piece.remove_suffix(1);
      if (!piece.empty()) add(piece, doc_begin);
    };
    for (const Line& l : all_lines) {
      std::string_view t = l.text;
      if (!t.empty() && t.back() == '\r') t.remove_suffix(1);
      if (std::regex_search(t.begin(), t.end(), start)) {
        if (open || l.offset > 0) close_doc(l.offset);
        doc_begin = l.offset;
        open = true;
      }
    }
    close_doc(s.size());
    return;
  }
  std::string_view t = s;
  add(t, 0);
}

// ---- lines ----
void read_lines(const std::string& file, std::string_view raw, const DatasetSpec& spec, BadRows& bad, FileRecords& out) {
  std::string owned;
  std::string_view s = raw;
  if (spec.normalize_newlines) {
    owned = normalize_newlines(raw);
    s = owned;
  }
  std::vector<Line> lines = split_lines(s, true);
  const size_t n = static_cast<size_t>(spec.lines_per_doc);
  if (n > 1 && spec.columns.size() != n)
    throw Error(fmt::format("{}: lines_per_doc {} needs {} `columns` names", spec.origin, n, n));
  if (lines.size() % n != 0)
    fail_file(file, fmt::format("{} lines is not a multiple of lines_per_doc ({})", lines.size(), n));
  for (size_t r = 0; r < lines.size(); r += n) {
    int64_t row = static_cast<int64_t>(r + 1);
    out.rows.push_back(row);
    Json doc = Json::object();
    bool ok = true;
    for (size_t k = 0; k < n; ++k) {
      std::string_view t = lines[r + k].text;
      if (auto p = text::find_invalid_utf8(t)) {
        bad_record(file, static_cast<int64_t>(r + k + 1), "invalid UTF-8", spec, bad);
        ok = false;
        break;
      }
      doc[n > 1 ? spec.columns[k] : (spec.columns.size() == 1 ? spec.columns[0] : spec.field)] = std::string(t);
    }
    if (!ok) {
      out.records.emplace_back();
      continue;
    }
    out.records.emplace_back(std::move(doc));
  }
}

std::string read_file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail_file(p.string(), "cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool has_wildcard(std::string_view s) { return s.find('*') != std::string_view::npos || s.find('{') != std::string_view::npos; }

void check_relative(const DatasetSpec& spec) {
  if (spec.path.empty()) throw Error(fmt::format("{}: dataset path is empty", spec.origin));
  fs::path p(spec.path);
  if (p.is_absolute())
    throw Error(fmt::format("{}: dataset path '{}' must be relative to the data root (--data-dir / QEVAL_DATA)",
                            spec.origin, spec.path));
  for (const auto& part : p)
    if (part == "..") throw Error(fmt::format("{}: dataset path '{}' must not contain '..'", spec.origin, spec.path));
}

std::string substitute(const std::string& pattern, const std::vector<std::pair<std::string, std::string>>& bound,
                       const std::string& origin) {
  std::string out;
  size_t i = 0;
  while (i < pattern.size()) {
    if (pattern[i] == '{') {
      size_t j = pattern.find('}', i);
      if (j == std::string::npos) throw Error(fmt::format("{}: unclosed '{{' in path '{}'", origin, pattern));
      std::string name = pattern.substr(i + 1, j - i - 1);
      auto it = std::find_if(bound.begin(), bound.end(), [&](const auto& b) { return b.first == name; });
      if (it == bound.end())
        throw Error(fmt::format("{}: '{{{}}}' in join path '{}' is not bound by the main path", origin, name, pattern));
      out += it->second;
      i = j + 1;
    } else {
      out.push_back(pattern[i++]);
    }
  }
  return out;
}

}  // namespace

std::string dataset_format(const DatasetSpec& spec) {
  if (!spec.format.empty()) return spec.format;
  std::string ext = fs::path(spec.path).extension().string();
  if (ext == ".jsonl") return "jsonl";
  if (ext == ".json") return "json";
  if (ext == ".csv") return "csv";
  if (ext == ".txt" || ext == ".raw") return "text";
  if (ext == ".lst") return "lines";
  throw Error(fmt::format("{}: no `format` given and none implied by the extension of '{}' (jsonl, json, csv, text, lines)",
                          spec.origin, spec.path));
}

FileRecords read_records(const std::string& display_path, std::string_view bytes, const DatasetSpec& spec,
                         BadRows& bad) {
  FileRecords out;
  std::string_view s = skip_bom(bytes);
  const std::string fmt_name = dataset_format(spec);
  if (fmt_name == "jsonl") {
    read_jsonl(display_path, s, spec, bad, out);
  } else if (fmt_name == "json") {
    read_json(display_path, s, spec, bad, out);
  } else if (fmt_name == "csv") {
    read_csv(display_path, s, spec, bad, out);
  } else if (fmt_name == "text") {
    read_text(display_path, s, spec, bad, out);
  } else if (fmt_name == "lines") {
    read_lines(display_path, s, spec, bad, out);
  } else {
    throw Error(fmt::format("{}: unknown dataset format '{}' (jsonl, json, csv, text, lines)", spec.origin, fmt_name));
  }
  return out;
}

std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> expand_dataset_path(
    const DatasetSpec& spec, const fs::path& data_root) {
  check_relative(spec);
  fs::path rel(spec.path);
  std::string name = rel.filename().string();
  fs::path dir = rel.parent_path();
  if (has_wildcard(dir.string()))
    throw Error(fmt::format("{}: wildcards are only allowed in the file name ('{}')", spec.origin, spec.path));
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> out;
  if (!has_wildcard(name)) {
    if (!fs::exists(data_root / rel)) fail_file((data_root / rel).string(), "not found");
    out.push_back({rel.generic_string(), {}});
    return out;
  }
  // File-name pattern -> regex with one group per {name}.
  std::string re = "^";
  std::vector<std::string> names;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == '*') {
      re += ".*";
    } else if (c == '{') {
      size_t j = name.find('}', i);
      if (j == std::string::npos) throw Error(fmt::format("{}: unclosed '{{' in path '{}'", spec.origin, spec.path));
      std::string n = name.substr(i + 1, j - i - 1);
      if (n.empty()) throw Error(fmt::format("{}: empty '{{}}' in path '{}'", spec.origin, spec.path));
      names.push_back(n);
      re += "(.+)";
      i = j;
    } else {
      if (std::string_view("\\^$.|?+()[]{}").find(c) != std::string_view::npos) re.push_back('\\');
      re.push_back(c);
    }
  }
  re += "$";
  std::regex pattern(re);
  fs::path full_dir = data_root / dir;
  if (!fs::is_directory(full_dir)) fail_file(full_dir.string(), "directory not found");
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(full_dir))
    if (e.is_regular_file()) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::smatch m;
    if (!std::regex_match(f, m, pattern)) continue;
    std::vector<std::pair<std::string, std::string>> bound;
    for (size_t k = 0; k < names.size(); ++k) bound.emplace_back(names[k], m[k + 1].str());
    out.push_back({(dir / f).generic_string(), std::move(bound)});
  }
  if (out.empty()) fail_file((data_root / rel).string(), "no file matches");
  return out;
}

RawDataset read_dataset(const DatasetSpec& spec, const fs::path& data_root) {
  RawDataset ds;
  auto files = expand_dataset_path(spec, data_root);
  for (const auto& [rel, bound] : files) {
    if (ds.bound.empty())
      for (const auto& b : bound) ds.bound.push_back(b.first);
    const std::string display = (data_root / rel).string();
    FileRecords main = read_records(display, read_file_bytes(data_root / rel), spec, ds.bad);
    struct Joined {
      std::string display;
      FileRecords recs;
    };
    std::vector<Joined> joins;
    for (const DatasetSpec& j : spec.join) {
      DatasetSpec js = j;
      js.skip_bad = spec.skip_bad;
      js.path = substitute(j.path, bound, j.origin);
      check_relative(js);
      Joined jd;
      jd.display = (data_root / js.path).string();
      if (!fs::exists(data_root / js.path)) fail_file(jd.display, "not found");
      jd.recs = read_records(jd.display, read_file_bytes(data_root / js.path), js, ds.bad);
      if (jd.recs.records.size() != main.records.size())
        fail_file(jd.display, fmt::format("{} records, but {} has {} (join needs aligned files)", jd.recs.records.size(),
                                          display, main.records.size()));
      joins.push_back(std::move(jd));
    }
    for (size_t i = 0; i < main.records.size(); ++i) {
      if (!main.records[i]) continue;
      bool ok = true;
      for (const auto& jd : joins)
        if (!jd.recs.records[i]) ok = false;
      if (!ok) continue;
      Json doc = std::move(*main.records[i]);
      for (const auto& [k, v] : bound) {
        if (doc.contains(k))
          fail_file(display, fmt::format("field '{}' bound by the path pattern is also a field of the records", k));
        doc[k] = v;
      }
      for (const auto& jd : joins) {
        for (auto it = jd.recs.records[i]->begin(); it != jd.recs.records[i]->end(); ++it) {
          if (doc.contains(it.key()))
            fail_file(jd.display, fmt::format("joined field '{}' is already a field of {}", it.key(), display));
          doc[it.key()] = it.value();
        }
      }
      ds.docs.push_back(std::move(doc));
      ds.sources.push_back({display, main.rows[i]});
    }
  }
  return ds;
}

fs::path resolve_data_root(const std::optional<std::string>& cli_value, const fs::path& fallback) {
  if (cli_value && !cli_value->empty()) return *cli_value;
  if (const char* d = std::getenv("QEVAL_DATA"); d != nullptr && *d != '\0') return d;
  if (const char* s = std::getenv("QEVAL_SHARED"); s != nullptr && *s != '\0') return fs::path(s) / "data";
  return fallback;
}

}  // namespace qeval::eval::task
