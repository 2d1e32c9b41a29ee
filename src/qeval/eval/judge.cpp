#include "qeval/eval/judge.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "qeval/util/error.h"

namespace qeval::eval {
namespace {

using Json = nlohmann::json;

size_t append_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// curl_global_init is not thread-safe; do it once.
void init_curl() {
  static const bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

// The endpoint's own error message, when the body is OpenAI's {"error": {"message": ...}}.
std::string error_detail(const std::string& body) {
  try {
    const Json j = Json::parse(body);
    if (j.contains("error")) {
      const Json& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
      if (e.is_string()) return e.get<std::string>();
    }
  } catch (const std::exception&) {
  }
  std::string s = body.substr(0, 200);
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

OpenAIChatClient::OpenAIChatClient(OpenAIChatOptions options) : opts_(std::move(options)) {
  if (!(opts_.url.starts_with("http://") || opts_.url.starts_with("https://")))
    throw Error(fmt::format("judge: the URL '{}' is not http:// or https://", opts_.url));
  if (opts_.model.empty()) throw Error("judge: no judge model name");
  if (opts_.max_retries < 0) throw Error("judge: max_retries must be >= 0");
  std::string base = opts_.url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  endpoint_ = base.ends_with("/chat/completions") ? base : base + "/chat/completions";
  if (!opts_.api_key_env.empty()) {
    const char* k = std::getenv(opts_.api_key_env.c_str());
    if (k == nullptr || *k == '\0')
      throw Error(fmt::format("judge: the API key variable {} is not set", opts_.api_key_env));
    key_ = k;
  }
  init_curl();
}

std::string OpenAIChatClient::describe() const { return opts_.model + " at " + endpoint_; }

std::string OpenAIChatClient::complete(const ChatRequest& request) {
  Json body;
  body["model"] = opts_.model;
  Json msgs = Json::array();
  for (const auto& m : request.messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
  body["messages"] = std::move(msgs);
  body["temperature"] = opts_.temperature;
  body["max_tokens"] = request.max_tokens;
  const std::string payload = body.dump();

  std::string last_error;
  double delay = opts_.retry_delay_s;
  for (int attempt = 0; attempt <= opts_.max_retries; ++attempt) {
    if (attempt > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
      delay *= 2;
    }
    std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) throw Error("judge: cannot initialise libcurl");
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    const std::string auth = key_.empty() ? std::string() : "Authorization: Bearer " + key_;
    if (!auth.empty()) headers = curl_slist_append(headers, auth.c_str());
    std::unique_ptr<curl_slist, void (*)(curl_slist*)> header_guard(headers, curl_slist_free_all);
    std::string response;
    curl_easy_setopt(curl.get(), CURLOPT_URL, endpoint_.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opts_.connect_timeout_s * 1000));
    curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(opts_.timeout_s * 1000));
    curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl.get(), CURLOPT_NOPROXY, "127.0.0.1,localhost");
    const CURLcode rc = curl_easy_perform(curl.get());
    if (rc != CURLE_OK) {
      last_error = fmt::format("judge: {}: {}", endpoint_, curl_easy_strerror(rc));
      continue;  // network errors and timeouts are retried
    }
    long status = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
    if (status == 429 || status >= 500) {
      last_error = fmt::format("judge: HTTP {} from {}: {}", status, endpoint_, error_detail(response));
      continue;
    }
    if (status != 200)
      throw Error(fmt::format("judge: HTTP {} from {}: {}", status, endpoint_, error_detail(response)));
    try {
      const Json j = Json::parse(response);
      const Json& content = j.at("choices").at(0).at("message").at("content");
      if (content.is_null()) return "";
      return content.get<std::string>();
    } catch (const std::exception&) {
      throw Error(fmt::format("judge: {} returned a response without choices[0].message.content: {}", endpoint_,
                              error_detail(response)));
    }
  }
  throw Error(fmt::format("{} (gave up after {} attempts)", last_error, opts_.max_retries + 1));
}

std::vector<std::string> OpenAIChatClient::chat(const std::vector<ChatRequest>& requests) {
  std::vector<std::string> out;
  out.reserve(requests.size());
  for (const auto& r : requests) out.push_back(complete(r));
  return out;
}

std::optional<double> parse_judge_rating(std::string_view text, double min, double max) {
  static const std::regex double_brackets(R"(\[\[(\d+\.?\d*)\]\])");
  static const std::regex single_brackets(R"(\[(\d+\.?\d*)\])");
  const std::string s(text);
  std::smatch m;
  if (!std::regex_search(s, m, double_brackets) && !std::regex_search(s, m, single_brackets)) return std::nullopt;
  const double v = std::strtod(m[1].str().c_str(), nullptr);
  if (v < min || v > max) return std::nullopt;
  return v;
}

}  // namespace qeval::eval
