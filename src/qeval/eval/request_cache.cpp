#include "qeval/eval/request_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"

namespace qeval::eval {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr const char* kFormat = "qeval-request-cache 1";
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
constexpr uint64_t kFnvOffsetA = 0xcbf29ce484222325ULL;  // the standard offset basis
constexpr uint64_t kFnvOffsetB = 0x84222325cbf29ce4ULL;  // a second, different basis

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}

// Length-prefixed, so that field boundaries are part of the hash ("ab","c" != "a","bc").
uint64_t hash_field(uint64_t h, std::string_view s) {
  const uint64_t n = s.size();
  h = fnv1a(h, &n, sizeof(n));
  return fnv1a(h, s.data(), s.size());
}

std::string hex64(uint64_t x) { return fmt::format("{:016x}", x); }

std::vector<std::string> request_fields(const task::Request& r) {
  std::vector<std::string> f;
  f.push_back(task::request_type_name(r.type));
  f.push_back(r.context);
  f.push_back(r.continuation);
  f.push_back(std::to_string(r.until.size()));
  for (const auto& u : r.until) f.push_back(u);
  f.push_back(std::to_string(r.max_gen_toks));
  return f;
}

// Path-safe file name for a task.
std::string safe_name(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.') ? c : '_';
  return out.empty() ? "_" : out;
}

}  // namespace

fs::path default_request_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') return fs::path(x) / "qeval";
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') return fs::path(h) / ".cache" / "qeval";
  return ".qeval-cache";
}

std::string model_file_identity(const fs::path& model) {
  std::error_code ec;
  const fs::path canon = fs::canonical(model, ec);
  if (ec) throw Error(fmt::format("{}: {}", model.string(), ec.message()));
  std::vector<fs::path> files;
  if (fs::is_directory(canon)) {
    for (const auto& e : fs::directory_iterator(canon))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(canon);
  }
  std::string id = canon.string();
  constexpr size_t kEdge = 1 << 20;
  std::vector<char> buf(kEdge);
  for (const auto& f : files) {
    const uintmax_t size = fs::file_size(f);
    const auto mtime = fs::last_write_time(f).time_since_epoch().count();
    uint64_t h = kFnvOffsetA;
    std::ifstream in(f, std::ios::binary);
    if (!in) throw Error(fmt::format("{}: cannot read", f.string()));
    in.read(buf.data(), static_cast<std::streamsize>(std::min<uintmax_t>(size, kEdge)));
    h = fnv1a(h, buf.data(), static_cast<size_t>(in.gcount()));
    if (size > kEdge) {
      in.clear();
      in.seekg(static_cast<std::streamoff>(size - std::min<uintmax_t>(size - kEdge, kEdge)));
      in.read(buf.data(), static_cast<std::streamsize>(std::min<uintmax_t>(size - kEdge, kEdge)));
      h = fnv1a(h, buf.data(), static_cast<size_t>(in.gcount()));
    }
    id += fmt::format("|{}:{}:{}:{}", f.filename().string(), size, static_cast<long long>(mtime), hex64(h));
  }
  return id;
}

std::string CachingLanguageModel::request_key(const task::Request& r) {
  const std::vector<std::string> f = request_fields(r);
  uint64_t a = kFnvOffsetA, b = kFnvOffsetB;
  for (const auto& x : f) a = hash_field(a, x);
  for (auto it = f.rbegin(); it != f.rend(); ++it) b = hash_field(b, *it);
  return hex64(a) + hex64(b);
}

CachingLanguageModel::CachingLanguageModel(task::LanguageModel& inner, RequestCacheOptions options)
    : inner_(inner), opts_(std::move(options)) {
  uint64_t ns = hash_field(kFnvOffsetA, opts_.model);
  ns = hash_field(ns, opts_.config);
  uint64_t ns2 = hash_field(kFnvOffsetB, opts_.config);
  ns2 = hash_field(ns2, opts_.model);
  file_ = opts_.dir / (hex64(ns) + hex64(ns2)) / (safe_name(opts_.task) + ".json");
  if (opts_.chunk == 0) opts_.chunk = 1;
  load();
}

void CachingLanguageModel::warn(const std::string& message) const {
  if (opts_.warn) opts_.warn(message);
  else std::fprintf(stderr, "warning: %s\n", message.c_str());
}

void CachingLanguageModel::load() {
  std::error_code ec;
  if (!fs::exists(file_, ec)) return;
  std::ifstream in(file_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  Json j;
  try {
    j = Json::parse(ss.str());
  } catch (const std::exception& e) {
    warn(fmt::format("{}: ignoring a corrupt cache file ({})", file_.string(), e.what()));
    return;
  }
  if (!j.is_object() || j.value("format", "") != kFormat || !j.contains("entries") || !j["entries"].is_object()) {
    warn(fmt::format("{}: ignoring a cache file of another format", file_.string()));
    return;
  }
  if (j.value("model", "") != opts_.model || j.value("config", "") != opts_.config || j.value("task", "") != opts_.task) {
    warn(fmt::format("{}: ignoring a cache file of another model or configuration", file_.string()));
    return;
  }
  size_t bad = 0;
  for (const auto& [k, v] : j["entries"].items()) {
    if (k.size() != 32 || !(v.is_object() || v.is_string())) {
      ++bad;
      continue;
    }
    entries_[k] = v.dump();
  }
  if (bad > 0) warn(fmt::format("{}: ignoring {} malformed cache entries", file_.string(), bad));
}

void CachingLanguageModel::save() {
  if (!dirty_) return;
  Json j;
  j["format"] = kFormat;
  j["model"] = opts_.model;
  j["config"] = opts_.config;
  j["task"] = opts_.task;
  Json e = Json::object();
  for (const auto& [k, v] : entries_) e[k] = Json::parse(v);
  j["entries"] = std::move(e);
  std::error_code ec;
  fs::create_directories(file_.parent_path(), ec);
  if (ec) throw Error(fmt::format("{}: cannot create the cache folder: {}", file_.parent_path().string(), ec.message()));
  write_file_atomic(file_.string(), j.dump() + "\n");
  dirty_ = false;
}

template <class Result, class Call, class ToJson, class FromJson>
std::vector<Result> CachingLanguageModel::cached(const std::vector<task::Request>& requests, Call call, ToJson to_json,
                                                 FromJson from_json) {
  std::vector<Result> out(requests.size());
  std::vector<size_t> missing;
  std::vector<std::string> keys(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    keys[i] = request_key(requests[i]);
    auto it = entries_.find(keys[i]);
    bool hit = false;
    if (it != entries_.end()) {
      try {
        out[i] = from_json(Json::parse(it->second));
        hit = true;
      } catch (const std::exception& e) {
        warn(fmt::format("{}: ignoring a malformed cache entry ({})", file_.string(), e.what()));
        entries_.erase(it);
      }
    }
    if (hit) ++hits_;
    else missing.push_back(i);
  }
  misses_ += missing.size();
  auto last_flush = std::chrono::steady_clock::now();
  for (size_t start = 0; start < missing.size(); start += opts_.chunk) {
    const size_t m = std::min(opts_.chunk, missing.size() - start);
    std::vector<task::Request> batch;
    batch.reserve(m);
    for (size_t k = 0; k < m; ++k) batch.push_back(requests[missing[start + k]]);
    std::vector<Result> got = call(batch);
    if (got.size() != m)
      throw Error(fmt::format("request cache: the model returned {} results for {} requests", got.size(), m));
    for (size_t k = 0; k < m; ++k) {
      const size_t i = missing[start + k];
      out[i] = got[k];
      entries_[keys[i]] = to_json(got[k]).dump();
    }
    dirty_ = true;
    const auto now = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(now - last_flush).count() >= opts_.flush_seconds) {
      save();
      last_flush = now;
    }
  }
  save();
  return out;
}

std::vector<task::LoglikelihoodResult> CachingLanguageModel::loglikelihood(const std::vector<task::Request>& requests) {
  return cached<task::LoglikelihoodResult>(
      requests, [&](const std::vector<task::Request>& b) { return inner_.loglikelihood(b); },
      [](const task::LoglikelihoodResult& r) { return Json{{"logprob", r.logprob}, {"greedy", r.is_greedy}, {"tokens", r.n_tokens}}; },
      [](const Json& j) {
        return task::LoglikelihoodResult{j.at("logprob").get<double>(), j.at("greedy").get<bool>(),
                                         j.at("tokens").get<int64_t>()};
      });
}

std::vector<task::RollingResult> CachingLanguageModel::loglikelihood_rolling(const std::vector<task::Request>& requests) {
  return cached<task::RollingResult>(
      requests, [&](const std::vector<task::Request>& b) { return inner_.loglikelihood_rolling(b); },
      [](const task::RollingResult& r) { return Json{{"logprob", r.logprob}, {"tokens", r.n_tokens}}; },
      [](const Json& j) { return task::RollingResult{j.at("logprob").get<double>(), j.at("tokens").get<int64_t>()}; });
}

std::vector<std::string> CachingLanguageModel::generate_until(const std::vector<task::Request>& requests) {
  return cached<std::string>(
      requests, [&](const std::vector<task::Request>& b) { return inner_.generate_until(b); },
      [](const std::string& r) { return Json(r); }, [](const Json& j) { return j.get<std::string>(); });
}

}  // namespace qeval::eval
