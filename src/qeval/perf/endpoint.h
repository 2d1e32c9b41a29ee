#pragma once
// Benchmark of an OpenAI-compatible HTTP server (QEval's `qeval serve`, llama.cpp's
// llama-server, vLLM, ...) through streamed /v1/completions (server-sent events):
//   - for each concurrency level C: C client threads issue requests back to back until
//     `requests` have been started or `duration_s` has elapsed (whichever first);
//   - TTFT: request sent -> first chunk carrying generated text; inter-token latency: gaps
//     between later text chunks (a server may pack several tokens in one chunk; the token
//     count is taken from the final "usage" when the server sends one, else from chunks);
//   - per-request throughput (completion tokens / request seconds) and aggregate throughput
//     (all completion tokens / wall time of the level);
//   - error counts by kind (HTTP status, malformed stream, connection failure) with the first
//     message of each kind;
//   - the server's CPU and memory sampled from /proc/PID when a PID is given.
// The prompt is synthetic text of about `prompt_tokens` tokens (a repeated word list); the
// exact count the server saw is taken from "usage.prompt_tokens" when reported.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qeval/perf/sampler.h"
#include "qeval/perf/stats.h"

namespace qeval::perf {

struct EndpointBenchConfig {
  std::string url;                 // base URL: http://127.0.0.1:8080 (a trailing /v1 is accepted)
  std::string model;               // "model" field of the requests
  std::string api_key;             // bearer token; empty: none
  int pid = 0;                     // server process to sample; 0: none
  std::vector<int> concurrency{1};
  int64_t requests = 8;            // per concurrency level (upper bound)
  double duration_s = 60;          // per concurrency level (upper bound; in-flight requests finish)
  int64_t prompt_tokens = 128;
  int64_t gen_tokens = 128;        // max_tokens
  double request_timeout_s = 300;  // per request
  std::string prompt;              // overrides the synthetic prompt when set
  bool ignore_eos = false;         // send "ignore_eos": true (llama-server, vLLM) for full-length runs
  void validate() const;           // throws qeval::Error ("bench: --requests must be >= 1")
};

// One streamed completion.
struct RequestResult {
  bool ok = false;
  std::string error_kind;     // "http_<status>", "malformed_stream", "connection", "timeout", "empty"
  std::string error;          // one line
  double ttft_s = -1;         // -1 when no token arrived
  double total_s = 0;
  int64_t chunks = 0;         // chunks that carried text
  int64_t completion_tokens = 0;
  int64_t prompt_tokens = -1; // from usage; -1 unknown
  std::vector<double> itl_s;  // gaps between consecutive text chunks
};

// Parses server-sent events incrementally: feed() raw bytes as they arrive; complete events'
// "data:" payloads come out through the callback (multi-line data joined by '\n'; comments and
// other fields ignored; CRLF accepted).
class SseParser {
 public:
  explicit SseParser(std::function<void(const std::string& data)> on_event) : on_event_(std::move(on_event)) {}
  void feed(std::string_view bytes);
  void finish();  // dispatches a last event not followed by a blank line
 private:
  void line(std::string_view l);
  std::function<void(const std::string&)> on_event_;
  std::string buf_, data_;
  bool has_data_ = false;
};

// Runs one streamed request (blocking). Never throws for server or network failures: they
// are reported in the result.
RequestResult stream_completion(const EndpointBenchConfig& config, const std::string& prompt);

struct EndpointLevel {
  int concurrency = 1;
  int64_t started = 0, succeeded = 0, failed = 0;
  std::map<std::string, int64_t> errors;           // kind -> count
  std::map<std::string, std::string> first_error;  // kind -> message
  double wall_seconds = 0;
  bool stopped_by_duration = false;
  Summary ttft_seconds, tpot_seconds, itl_seconds, request_seconds;
  Summary request_tokens_per_second;
  int64_t completion_tokens = 0;
  double aggregate_tokens_per_second = 0;
  double requests_per_second = 0;
  std::optional<ResourceUsage> server;  // when a PID was given
  nlohmann::json to_json() const;
};

struct EndpointResult {
  EndpointBenchConfig config;
  std::string prompt;
  std::vector<EndpointLevel> levels;
  nlohmann::json machine;  // the client machine (describe_machine)
  nlohmann::json to_json() const;
};

// Throws qeval::Error when the configuration is bad or the server cannot be reached at all
// (connection refused on the first request is one clear error, not N counted failures).
EndpointResult run_endpoint_bench(const EndpointBenchConfig& config,
                                  const std::function<void(const std::string&)>& progress = {});

std::string format_endpoint_table(const EndpointResult& result);

}  // namespace qeval::perf
