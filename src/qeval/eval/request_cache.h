#pragma once
// On-disk cache of a LanguageModel's answers, keyed by (model, configuration, task, request), so
// that re-running an evaluation makes no model calls.
//
// Layout: <dir>/<namespace>/<task>.json, where <namespace> is a hash of the model identity and
// the configuration (quantization spec, calibration file, engine settings) and the file holds
//   {"format": "qeval-request-cache 1", "model": ..., "config": ..., "task": ...,
//    "entries": {"<request key>": result}}
// A request key is 128 bits (two 64-bit FNV-1a hashes with different offset bases, one over the
// request's fields in order and one over them in reverse) of the request type, context,
// continuation, stop strings and max_gen_toks; an accidental collision is negligible (about
// n^2 / 2^129 for n requests). The file's header is checked on load, so a namespace hash
// collision cannot mix two models.
//
// Writes are atomic (temporary file, then rename): after the answers of each call, and during a
// long call every `flush_seconds`. A file that cannot be parsed, or an entry of the wrong shape,
// is ignored with a warning (and replaced at the next write).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "qeval/eval/task/language_model.h"

namespace qeval::eval {

// $XDG_CACHE_HOME/qeval, else $HOME/.cache/qeval, else .qeval-cache.
std::filesystem::path default_request_cache_dir();

// Identity of a model file or HF checkpoint folder, cheap to compute: canonical path, size and
// modification time of every file, and FNV-1a of each file's first and last MiB. A changed
// file gives a different identity. Throws qeval::Error when the path does not exist.
std::string model_file_identity(const std::filesystem::path& model);

struct RequestCacheOptions {
  std::filesystem::path dir;       // cache root
  std::string model;               // model_file_identity(...) or any other stable identity
  std::string config;              // what else changes the answers: spec, calibration, engine settings
  std::string task;                // task name
  double flush_seconds = 10;       // during a long call, write at most this often
  size_t chunk = 256;              // misses sent to the inner model per call
  std::function<void(const std::string&)> warn;  // default: stderr
};

class CachingLanguageModel : public task::LanguageModel {
 public:
  // Loads the task's cache file (if any).
  CachingLanguageModel(task::LanguageModel& inner, RequestCacheOptions options);

  std::vector<task::LoglikelihoodResult> loglikelihood(const std::vector<task::Request>& requests) override;
  std::vector<task::RollingResult> loglikelihood_rolling(const std::vector<task::Request>& requests) override;
  std::vector<std::string> generate_until(const std::vector<task::Request>& requests) override;

  size_t hits() const { return hits_; }
  size_t misses() const { return misses_; }
  const std::filesystem::path& file() const { return file_; }

  static std::string request_key(const task::Request& r);

 private:
  template <class Result, class Call, class ToJson, class FromJson>
  std::vector<Result> cached(const std::vector<task::Request>& requests, Call call, ToJson to_json, FromJson from_json);
  void load();
  void save();
  void warn(const std::string& message) const;

  task::LanguageModel& inner_;
  RequestCacheOptions opts_;
  std::filesystem::path file_;
  std::map<std::string, std::string> entries_;  // key -> result as compact JSON text
  size_t hits_ = 0, misses_ = 0;
  bool dirty_ = false;
};

}  // namespace qeval::eval
