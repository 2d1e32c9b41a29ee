#pragma once
// Dataset readers: files under a data root turned into docs (JSON objects), each with the file
// and row it came from.
//
// Formats (DatasetSpec::format; when empty, implied by the extension: .jsonl, .json, .csv,
// .txt/.raw = text, .lst = lines):
//   jsonl  one JSON object per line (blank lines are ignored); row = line number.
//   json   an array of objects, at the top level or at the dot-separated key path `records`;
//          row = line where the element starts.
//   csv    RFC 4180 (quoted fields may hold commas, quotes as "" and newlines); the header row
//          names the fields, or `columns` does (then there is no header unless header = true,
//          which skips it); every value is a string; row = line where the record starts.
//   text   the whole file as one doc (field `field`), or split on the string `separator`
//          (trailing newlines of the file removed first, empty pieces dropped), or split before
//          every line matching the regex `doc_start` (lines before the first match, if any, form
//          a doc); a doc's text is its exact bytes without the final line break.
//   lines  one doc per line (field `field`), or `lines_per_doc` consecutive lines per doc named
//          by `columns`; a final line break does not start a line, a trailing '\r' is dropped.
// A leading UTF-8 byte-order mark is skipped; every file must be valid UTF-8.
//
// Paths are relative to the data root (absolute paths and ".." are refused). The file name may
// hold wildcards: '*' matches anything, `{name}` matches anything and adds the matched text to
// every doc as the string field `name` (mmlu/test/{subject}_test.csv). Files are read in name
// order. `join` lists files aligned record by record with the main one (their fields are added
// to each doc; a `{name}` in their path is replaced by the main file's match); they must have as
// many records as the main file.
//
// A malformed record (bad JSON, wrong field count, invalid UTF-8, not an object) stops the load
// with qeval::Error "<file>:<row>: <problem>"; with skip_bad it is skipped and counted instead
// (its joined records too).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qeval/eval/task/template.h"

namespace qeval::eval::task {

struct DatasetSpec {
  std::string path;
  std::string format;
  std::string records;                // json
  std::optional<bool> header;         // csv; default: true unless `columns` is given
  std::vector<std::string> columns;   // csv, lines
  std::string field = "text";         // text, lines
  std::string separator;              // text
  std::string doc_start;              // text
  int lines_per_doc = 1;              // lines
  bool normalize_newlines = false;    // text, lines: "\r\n" -> "\n" first
  std::vector<DatasetSpec> join;
  bool skip_bad = false;
  std::string origin;                 // "<task file>:<line>" of the spec, for messages
};

struct DocSource {
  std::string file;  // data root / relative path
  int64_t row = 0;   // 1-based
  std::string where() const { return file + ":" + std::to_string(row); }
};

// Records skipped under skip_bad.
struct BadRows {
  int64_t count = 0;
  std::vector<std::string> messages;  // the first 20, "<file>:<row>: <problem>"
  void add(const std::string& message);
};

struct RawDataset {
  std::vector<Json> docs;
  std::vector<DocSource> sources;
  std::vector<std::string> bound;  // field names bound by `{name}` in the path
  BadRows bad;
};

// The records of one file: one entry per record in file order, nullopt where a bad record was
// skipped (only with skip_bad; bad then counts it). rows[i] is record i's row.
struct FileRecords {
  std::vector<std::optional<Json>> records;
  std::vector<int64_t> rows;
};

// The format a spec reads (its `format`, or the one implied by the path's extension).
std::string dataset_format(const DatasetSpec& spec);

FileRecords read_records(const std::string& display_path, std::string_view bytes, const DatasetSpec& spec,
                         BadRows& bad);

// A relative path pattern's matches: (relative path, bound names and values), in name order.
std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> expand_dataset_path(
    const DatasetSpec& spec, const std::filesystem::path& data_root);

RawDataset read_dataset(const DatasetSpec& spec, const std::filesystem::path& data_root);

// The data root: `cli_value` when given, else $QEVAL_DATA, else $QEVAL_SHARED/data, else
// `fallback` (the caller's default, e.g. ../shared/data).
std::filesystem::path resolve_data_root(const std::optional<std::string>& cli_value,
                                        const std::filesystem::path& fallback = "../shared/data");

}  // namespace qeval::eval::task
