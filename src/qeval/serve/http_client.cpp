#include "qeval/serve/http_client.h"

#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <regex>

#include "qeval/util/error.h"

namespace qeval::serve {

struct HttpClient::Impl {
  explicit Impl(const std::string& origin) : client(origin) {}
  httplib::Client client;
  std::string token;
};

HttpClient::HttpClient(const std::string& url, double timeout_seconds) : url_(url) {
  static const std::regex re(R"(^(https?)://([^/?#]+)(/[^?#]*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) throw Error(url + ": not an http:// or https:// URL");
  prefix_ = m[3].matched ? m[3].str() : std::string();
  while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  // Writing to a server that hung up must fail the call, not kill the process.
  ::signal(SIGPIPE, SIG_IGN);
  impl_ = std::make_unique<Impl>(m[1].str() + "://" + m[2].str());
  if (!impl_->client.is_valid()) throw Error(url + ": cannot create an HTTP client for this URL");
  const auto secs = static_cast<time_t>(timeout_seconds);
  const auto usecs = static_cast<time_t>((timeout_seconds - std::floor(timeout_seconds)) * 1e6);
  impl_->client.set_read_timeout(secs, usecs);
  impl_->client.set_write_timeout(secs, usecs);
  // Connecting gets 1..10 s whatever the read timeout, so a short read timeout still reaches the server.
  const double connect = std::clamp(timeout_seconds, 1.0, 10.0);
  impl_->client.set_connection_timeout(static_cast<time_t>(connect),
                                       static_cast<time_t>((connect - std::floor(connect)) * 1e6));
  impl_->client.set_keep_alive(true);
}

HttpClient::~HttpClient() = default;

void HttpClient::set_bearer_token(const std::string& token) {
  impl_->token = token;
  impl_->client.set_bearer_token_auth(token);
}

namespace {
HttpResponse from_result(const httplib::Result& r) {
  HttpResponse out;
  if (!r) {
    out.error = httplib::to_string(r.error());
    return out;
  }
  out.status = r->status;
  out.body = r->body;
  return out;
}
}  // namespace

HttpResponse HttpClient::get(const std::string& path) { return from_result(impl_->client.Get((prefix_ + path).c_str())); }

HttpResponse HttpClient::post(const std::string& path, const std::string& body, const std::string& content_type) {
  return from_result(impl_->client.Post((prefix_ + path).c_str(), body, content_type.c_str()));
}

HttpResponse HttpClient::post_stream(const std::string& path, const std::string& body,
                                     const std::function<bool(std::string_view)>& on_data) {
  httplib::Request req;
  req.method = "POST";
  req.path = prefix_ + path;
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  HttpResponse out;
  int status = 0;
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  // Error bodies (status >= 400) are collected rather than streamed.
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (status >= 400) {
      out.body.append(data, n);
      return true;
    }
    return on_data(std::string_view(data, n));
  };
  auto res = impl_->client.send(req);
  out.status = status;
  if (!res) {
    out.error = httplib::to_string(res.error());
    return out;
  }
  out.status = res->status;
  return out;
}

}  // namespace qeval::serve
