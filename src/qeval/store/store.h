#pragma once
// The results store: one SQLite database (WAL mode) holding every evaluation cell of every run
// with its provenance, so that results are comparable, reproducible and resumable.
//
// SCHEMA (version 1, in PRAGMA user_version; an older file is upgraded, a newer one refused)
//   runs(id, plan_name, plan_path, plan_hash, command, qeval_version, git_commit, machine_json,
//        started_at, ended_at, status)          status: running | finished | failed (a killed
//                                              run stays "running" with no end time)
//   cells(id, cell_key UNIQUE, run_id, kind, model, model_path, model_hash, architecture, spec,
//         calib_samples, seed, task, task_hash, dataset_hash, dimension, sub_dimension,
//         params_json, qeval_version, git_commit, machine_json, started_at, ended_at, duration_s,
//         extra_json)
//   metrics(cell_id, name, value, stderr, n, ci_low, ci_high, higher_is_better, stderr_method)
//   item_scores(cell_id, metric, scores_json)   per-item scores for paired tests
//   file_hashes(path, size, mtime_ns, sha256)   SHA-256 cache keyed by path, size and mtime
// Times are ISO 8601 UTC ("2026-11-22T20:31:05.123Z").
//
// CONCURRENCY AND CRASHES: every write is one IMMEDIATE transaction with a busy timeout, so two
// processes on one database wait for each other instead of failing or corrupting it. A cell is
// written only when complete, with its metrics and item scores, in one transaction: a killed
// run loses at most the cell it was computing. cell_key is unique: a cell finished by another
// process first is kept, not duplicated.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qeval::store {

inline constexpr int kSchemaVersion = 1;

struct MetricRow {
  std::string name;
  double value = 0;
  std::optional<double> stderr_value;  // absent: no standard error (single measurement)
  int64_t n = 0;                       // items (docs, tokens, repetitions) behind the value
  std::optional<double> ci_low, ci_high;
  bool higher_is_better = true;
  std::string stderr_method;           // "mean", "bootstrap", "spread", ...
  friend bool operator==(const MetricRow&, const MetricRow&) = default;
};

struct RunRecord {
  int64_t id = 0;
  std::string plan_name, plan_path, plan_hash, command;
  std::string qeval_version, git_commit;
  nlohmann::json machine = nlohmann::json::object();
  std::string started_at, ended_at, status;
};

struct CellRecord {
  int64_t id = 0;
  std::string key;   // identifies the cell across runs (resume, --force)
  int64_t run_id = 0;
  std::string kind;  // quantize | task | perplexity | kld | bench | generations
  std::string model, model_path, model_hash, architecture;
  std::string spec;          // canonical QuantSpec string
  int64_t calib_samples = 0; // 0: no calibration set
  int64_t seed = -1;         // -1: the defaults of the task / method
  std::string task, task_hash, dataset_hash;
  std::string dimension, sub_dimension;
  nlohmann::json params = nlohmann::json::object();  // limit, few-shot, ctx, scenario, ...
  std::string qeval_version, git_commit;
  nlohmann::json machine = nlohmann::json::object();
  std::string started_at, ended_at;
  double duration_s = 0;
  nlohmann::json extra = nlohmann::json::object();   // kind-specific details
  std::vector<MetricRow> metrics;
  nlohmann::json items = nlohmann::json::object();   // metric -> [per-item score]

  const MetricRow* metric(const std::string& name) const;
};

struct CellFilter {
  std::string model{}, spec{}, task{}, kind{};  // empty: any
  bool with_items = false;              // also load item scores
};

class Store {
 public:
  // Opens or creates the database. Throws qeval::Error "<path>: <problem>".
  static std::unique_ptr<Store> open(const std::filesystem::path& path);
  // Opens an existing database without creating it (read access for reports and listings).
  static std::unique_ptr<Store> open_existing(const std::filesystem::path& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::filesystem::path& path() const { return path_; }

  int64_t begin_run(const RunRecord& run);  // fills started_at when empty; returns the id
  void end_run(int64_t run_id, const std::string& status);
  std::vector<RunRecord> runs() const;

  bool has_cell(const std::string& key) const;
  std::vector<std::string> cell_keys() const;
  // Writes the whole cell in one transaction. With replace, an existing cell of the same key is
  // deleted in that transaction; without, an existing one is kept and false is returned.
  bool put_cell(const CellRecord& cell, bool replace);
  std::vector<CellRecord> cells(const CellFilter& filter = {}) const;

  // SHA-256 of a file, cached by (absolute path, size, mtime); of a directory: of the sorted
  // list "relative path\0sha256\n" over its regular files (recursively).
  std::string file_hash(const std::filesystem::path& path);

 private:
  explicit Store(std::filesystem::path path);
  struct Db;
  std::unique_ptr<Db> db_;
  std::filesystem::path path_;
};

// Current time as ISO 8601 UTC with milliseconds.
std::string now_iso8601();

}  // namespace qeval::store
