#pragma once
// A small HTTP client for OpenAI-compatible servers (cpp-httplib underneath, kept out of this
// header so users need not match its build flags): JSON requests, streamed responses that the
// caller can hang up on, a bearer token.
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace qeval::serve {

struct HttpResponse {
  int status = 0;       // 0 when no response came (see error)
  std::string body;
  std::string error;    // transport problem ("connection refused", "canceled", ...); empty otherwise
  bool ok() const { return error.empty() && status >= 200 && status < 300; }
};

class HttpClient {
 public:
  // `url`: scheme://host[:port][/prefix]; paths given to the calls are appended to the prefix.
  // Throws qeval::Error for a URL it cannot use.
  explicit HttpClient(const std::string& url, double timeout_seconds = 600);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  void set_bearer_token(const std::string& token);
  const std::string& prefix() const { return prefix_; }
  const std::string& url() const { return url_; }

  HttpResponse get(const std::string& path);
  HttpResponse post(const std::string& path, const std::string& body, const std::string& content_type = "application/json");
  // The body arrives in pieces through on_data; returning false hangs up (error "canceled").
  HttpResponse post_stream(const std::string& path, const std::string& body,
                           const std::function<bool(std::string_view)>& on_data);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string url_, prefix_;
};

}  // namespace qeval::serve
