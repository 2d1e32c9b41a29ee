#include "qeval/perf/endpoint.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>

#include "qeval/perf/machine.h"
#include "qeval/util/error.h"

namespace qeval::perf {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

void global_curl_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string completions_url(std::string base) {
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (base.size() >= 3 && base.compare(base.size() - 3, 3, "/v1") == 0) base.resize(base.size() - 3);
  return base + "/v1/completions";
}

// A prompt of roughly n tokens for BPE / SentencePiece vocabularies: common English words,
// each usually one token with its leading space.
std::string synthetic_prompt(int64_t n) {
  static const char* const kWords[] = {"the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "and",
                                       "then", "runs", "into", "the", "green", "forest", "where", "birds", "sing", "all",
                                       "day", "long", "under", "bright", "blue", "sky"};
  std::string s = "Once upon a time";
  for (int64_t i = 4; i < n; ++i) {
    s += ' ';
    s += kWords[i % (sizeof kWords / sizeof kWords[0])];
  }
  return s;
}

struct StreamState {
  Clock::time_point start;
  SseParser* parser = nullptr;
  std::string raw;          // the body as received (error bodies, diagnostics)
  bool http_error = false;  // status >= 400: keep the body, do not parse
};

size_t on_body(char* data, size_t size, size_t nmemb, void* user) {
  auto* st = static_cast<StreamState*>(user);
  const size_t n = size * nmemb;
  if (st->http_error) {
    if (st->raw.size() < 4096) st->raw.append(data, std::min(n, 4096 - st->raw.size()));
  } else {
    st->parser->feed(std::string_view(data, n));
  }
  return n;
}

// The "message" of an OpenAI-style error body, or the body's first line.
std::string error_message(const std::string& body) {
  try {
    const auto j = nlohmann::json::parse(body);
    if (j.contains("error")) {
      const auto& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
      if (e.is_string()) return e.get<std::string>();
    }
  } catch (const nlohmann::json::exception&) {
  }
  std::string first = body.substr(0, body.find('\n'));
  if (first.size() > 200) first.resize(200);
  return first;
}

}  // namespace

void EndpointBenchConfig::validate() const {
  if (url.empty()) fail("bench: --endpoint needs a URL (http://HOST:PORT)");
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    fail("bench: --endpoint '" + url + "': must start with http:// or https://");
  if (model.empty()) fail("bench: --model NAME is required with --endpoint");
  if (concurrency.empty()) fail("bench: --concurrency needs at least one level");
  for (int c : concurrency)
    if (c < 1 || c > 1024) fail(fmt::format("bench: --concurrency levels must be in 1..1024 (got {})", c));
  if (requests < 1) fail(fmt::format("bench: --requests must be >= 1 (got {})", requests));
  if (!(duration_s > 0)) fail("bench: --duration must be > 0 seconds");
  if (prompt_tokens < 1 && prompt.empty()) fail("bench: --prompt must be >= 1");
  if (gen_tokens < 1) fail(fmt::format("bench: --gen must be >= 1 (got {})", gen_tokens));
  if (!(request_timeout_s > 0)) fail("bench: request timeout must be > 0 seconds");
  if (pid < 0) fail(fmt::format("bench: --pid {}: not a process id", pid));
  if (pid > 0 && !std::filesystem::exists("/proc/" + std::to_string(pid)))
    fail(fmt::format("bench: --pid {}: no such process (/proc/{} missing)", pid, pid));
}

RequestResult stream_completion(const EndpointBenchConfig& config, const std::string& prompt) {
  global_curl_init();
  RequestResult r;
  const std::string url = completions_url(config.url);
  nlohmann::json body = {{"model", config.model}, {"prompt", prompt}, {"max_tokens", config.gen_tokens},
                         {"temperature", 0.0},    {"stream", true}};
  if (config.ignore_eos) body["ignore_eos"] = true;
  const std::string payload = body.dump();

  bool done_marker = false, finished = false;
  std::string malformed;
  int64_t usage_completion = -1;
  Clock::time_point start, last_text;
  SseParser parser([&](const std::string& data) {
    if (!malformed.empty() || done_marker) return;
    if (data == "[DONE]") {
      done_marker = true;
      return;
    }
    const Clock::time_point now = Clock::now();
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(data);
    } catch (const nlohmann::json::exception&) {
      malformed = "event data is not JSON: " + data.substr(0, 80);
      return;
    }
    if (!j.is_object()) {
      malformed = "event data is not a JSON object";
      return;
    }
    if (j.contains("error")) {
      malformed = "server error in stream: " + error_message(data);
      return;
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      const auto& u = j["usage"];
      if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
        usage_completion = u["completion_tokens"].get<int64_t>();
      if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
        r.prompt_tokens = u["prompt_tokens"].get<int64_t>();
    }
    if (!j.contains("choices") || !j["choices"].is_array()) {
      if (!j.contains("usage")) malformed = "chunk without \"choices\"";
      return;
    }
    bool has_text = false;
    for (const auto& c : j["choices"]) {
      if (!c.is_object()) {
        malformed = "choice is not an object";
        return;
      }
      if (c.contains("finish_reason") && !c["finish_reason"].is_null()) finished = true;
      // /v1/completions chunks carry "text"; chat-style "delta.content" is accepted too.
      const nlohmann::json* text = nullptr;
      if (c.contains("text")) text = &c["text"];
      else if (c.contains("delta") && c["delta"].is_object() && c["delta"].contains("content")) text = &c["delta"]["content"];
      if (text && !text->is_string() && !text->is_null()) {
        malformed = "choice text is not a string";
        return;
      }
      if (text && text->is_string() && !text->get_ref<const std::string&>().empty()) has_text = true;
    }
    if (!has_text) return;
    if (r.chunks == 0) r.ttft_s = seconds_between(start, now);
    else r.itl_s.push_back(seconds_between(last_text, now));
    last_text = now;
    ++r.chunks;
  });

  StreamState st;
  st.parser = &parser;
  CURL* curl = curl_easy_init();
  if (!curl) {
    r.error_kind = "connection";
    r.error = "curl_easy_init failed";
    return r;
  }
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: text/event-stream");
  if (!config.api_key.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + config.api_key).c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // worker threads: no SIGALRM-based timeouts
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(config.request_timeout_s * 1000.0));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min(config.request_timeout_s, 30.0) * 1000.0));
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  // The status is known before the body: switch an error response to "keep the body".
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION,
                   +[](char* data, size_t size, size_t nmemb, void* user) -> size_t {
                     auto* s = static_cast<StreamState*>(user);
                     const std::string_view line(data, size * nmemb);
                     // "HTTP/1.1 500 Internal Server Error"
                     if (line.rfind("HTTP/", 0) == 0) {
                       const size_t sp = line.find(' ');
                       if (sp != std::string_view::npos && sp + 4 <= line.size()) s->http_error = line[sp + 1] >= '4';
                     }
                     return size * nmemb;
                   });
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &st);

  start = Clock::now();
  const CURLcode rc = curl_easy_perform(curl);
  const Clock::time_point end = Clock::now();
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  r.total_s = seconds_between(start, end);
  if (rc != CURLE_OK) {
    r.error_kind = rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "connection";
    r.error = fmt::format("{}: {}", url, curl_easy_strerror(rc));
    return r;
  }
  if (status >= 400) {
    r.error_kind = fmt::format("http_{}", status);
    r.error = fmt::format("{}: HTTP {}: {}", url, status, error_message(st.raw));
    return r;
  }
  parser.finish();
  if (!malformed.empty()) {
    r.error_kind = "malformed_stream";
    r.error = url + ": " + malformed;
    return r;
  }
  if (!done_marker && !finished) {
    r.error_kind = "malformed_stream";
    r.error = url + ": stream ended without a finish_reason or [DONE]";
    return r;
  }
  if (r.chunks == 0) {
    r.error_kind = "empty";
    r.error = url + ": the stream carried no generated text";
    return r;
  }
  r.completion_tokens = usage_completion >= 0 ? usage_completion : r.chunks;
  r.ok = true;
  return r;
}

nlohmann::json EndpointLevel::to_json() const {
  nlohmann::json j = {{"concurrency", concurrency},
                      {"requests_started", started},
                      {"requests_succeeded", succeeded},
                      {"requests_failed", failed},
                      {"errors", errors},
                      {"first_error", first_error},
                      {"wall_seconds", wall_seconds},
                      {"stopped_by_duration", stopped_by_duration},
                      {"ttft_seconds", ttft_seconds.to_json()},
                      {"tpot_seconds", tpot_seconds.to_json()},
                      {"itl_seconds", itl_seconds.to_json()},
                      {"request_seconds", request_seconds.to_json()},
                      {"request_tokens_per_second", request_tokens_per_second.to_json()},
                      {"completion_tokens", completion_tokens},
                      {"aggregate_tokens_per_second", aggregate_tokens_per_second},
                      {"requests_per_second", requests_per_second}};
  if (server) j["server"] = server->to_json();
  return j;
}

nlohmann::json EndpointResult::to_json() const {
  nlohmann::json levels_json = nlohmann::json::array();
  for (const EndpointLevel& l : levels) levels_json.push_back(l.to_json());
  return {{"endpoint", config.url},
          {"model", config.model},
          {"api", "/v1/completions (stream)"},
          {"pid", config.pid},
          {"prompt_tokens_requested", config.prompt_tokens},
          {"prompt_chars", prompt.size()},
          {"gen_tokens", config.gen_tokens},
          {"ignore_eos", config.ignore_eos},
          {"requests_per_level", config.requests},
          {"duration_s_per_level", config.duration_s},
          {"levels", levels_json},
          {"client_machine", machine}};
}

EndpointResult run_endpoint_bench(const EndpointBenchConfig& config, const std::function<void(const std::string&)>& progress) {
  config.validate();
  auto say = [&](const std::string& s) {
    if (progress) progress(s);
  };
  EndpointResult res;
  res.config = config;
  res.prompt = config.prompt.empty() ? synthetic_prompt(config.prompt_tokens) : config.prompt;
  const long cores = std::max(1u, std::thread::hardware_concurrency());
  for (int level : config.concurrency) {
    EndpointLevel L;
    L.concurrency = level;
    std::mutex mu;
    std::vector<RequestResult> results;
    std::atomic<int64_t> next{0};
    std::atomic<bool> by_duration{false};
    std::unique_ptr<ResourceSampler> sampler;
    if (config.pid > 0) {
      sampler = std::make_unique<ResourceSampler>(config.pid, static_cast<double>(cores));
      sampler->start();
    }
    const Clock::time_point start = Clock::now();
    const Clock::time_point deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.duration_s));
    std::vector<std::thread> workers;
    for (int w = 0; w < level; ++w) {
      workers.emplace_back([&] {
        for (;;) {
          if (Clock::now() >= deadline) {
            by_duration = true;
            return;
          }
          const int64_t n = next.fetch_add(1);
          if (n >= config.requests) return;
          RequestResult rr = stream_completion(config, res.prompt);
          std::lock_guard lock(mu);
          results.push_back(std::move(rr));
          const int64_t done = static_cast<int64_t>(results.size());
          if (done == 1 || done % 8 == 0 || done == config.requests)
            say(fmt::format("bench: endpoint c{}: {} requests done", level, done));
        }
      });
    }
    for (std::thread& t : workers) t.join();
    L.wall_seconds = seconds_between(start, Clock::now());
    if (sampler) L.server = sampler->stop();
    L.stopped_by_duration = by_duration;
    L.started = static_cast<int64_t>(results.size());
    std::vector<double> ttft, tpot, itl, req_s, req_tps;
    for (const RequestResult& r : results) {
      if (!r.ok) {
        ++L.failed;
        ++L.errors[r.error_kind];
        L.first_error.emplace(r.error_kind, r.error);
        continue;
      }
      ++L.succeeded;
      ttft.push_back(r.ttft_s);
      itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
      req_s.push_back(r.total_s);
      L.completion_tokens += r.completion_tokens;
      if (r.completion_tokens > 1) tpot.push_back((r.total_s - r.ttft_s) / static_cast<double>(r.completion_tokens - 1));
      if (r.total_s > 0) req_tps.push_back(static_cast<double>(r.completion_tokens) / r.total_s);
    }
    if (L.succeeded == 0 && L.errors.size() == 1 && L.errors.count("connection"))
      fail("bench: cannot reach " + config.url + ": " + L.first_error["connection"]);
    L.ttft_seconds = summarize(ttft);
    L.tpot_seconds = summarize(tpot);
    L.itl_seconds = summarize(itl);
    L.request_seconds = summarize(req_s);
    L.request_tokens_per_second = summarize(req_tps);
    L.aggregate_tokens_per_second = L.wall_seconds > 0 ? static_cast<double>(L.completion_tokens) / L.wall_seconds : 0;
    L.requests_per_second = L.wall_seconds > 0 ? static_cast<double>(L.succeeded) / L.wall_seconds : 0;
    say(fmt::format("bench: endpoint c{}: {} ok, {} failed, {:.2f} tokens/s aggregate, TTFT p50 {:.1f} ms", level, L.succeeded,
                    L.failed, L.aggregate_tokens_per_second, L.ttft_seconds.p50 * 1e3));
    res.levels.push_back(std::move(L));
  }
  res.machine = describe_machine(0);
  return res;
}

std::string format_endpoint_table(const EndpointResult& r) {
  std::string out = fmt::format("endpoint {} model {} (prompt ~{} tokens, max_tokens {})\n\n", r.config.url, r.config.model,
                                r.config.prompt_tokens, r.config.gen_tokens);
  out += "| concurrency | ok / failed | TTFT p50 / p90 / p99 ms | TPOT ms | ITL p50 / p90 / p99 ms | t/s per request | t/s aggregate | req/s |";
  const bool server = !r.levels.empty() && r.levels.front().server.has_value();
  if (server) out += " server CPU | server peak RSS |";
  out += "\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";
  if (server) out += " ---: | ---: |";
  out += "\n";
  for (const EndpointLevel& l : r.levels) {
    out += fmt::format("| {} | {} / {} | {:.1f} / {:.1f} / {:.1f} | {:.2f} | {:.2f} / {:.2f} / {:.2f} | {:.2f} ± {:.2f} | {:.2f} | {:.2f} |",
                       l.concurrency, l.succeeded, l.failed, l.ttft_seconds.p50 * 1e3, l.ttft_seconds.p90 * 1e3,
                       l.ttft_seconds.p99 * 1e3, l.tpot_seconds.median * 1e3, l.itl_seconds.p50 * 1e3, l.itl_seconds.p90 * 1e3,
                       l.itl_seconds.p99 * 1e3, l.request_tokens_per_second.median, l.request_tokens_per_second.stdev,
                       l.aggregate_tokens_per_second, l.requests_per_second);
    if (server && l.server)
      out += fmt::format(" {:.0f}% of {:.0f} cores | {:.1f} MiB |", l.server->cpu_utilization * 100.0, l.server->cores,
                         static_cast<double>(l.server->rss_peak_bytes) / (1024.0 * 1024.0));
    out += "\n";
    for (const auto& [kind, msg] : l.first_error)
      out += fmt::format("  c{} errors {} x{}: {}\n", l.concurrency, kind, l.errors.at(kind), msg);
  }
  return out;
}

}  // namespace qeval::perf
