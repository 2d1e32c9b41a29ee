#include "qeval/serve/server.h"

#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <random>

#include "qeval/serve/api_error.h"
#include "qeval/serve/connection_watch.h"
#include "qeval/serve/request.h"
#include "qeval/serve/text_offsets.h"
#include "qeval/util/error.h"

namespace qeval::serve {

// Ordered: keys go out in the order written (top_logprobs most likely first, as OpenAI sends them).
using json = nlohmann::ordered_json;

namespace {

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned>(static_cast<unsigned char>(a[i]) ^ (i < b.size() ? static_cast<unsigned char>(b[i]) : 0u));
  return diff == 0;
}

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// OpenAI's legacy completions logprobs: parallel lists per token.
class LegacyLogprobs {
 public:
  explicit LegacyLogprobs(const Tokenizer& tok) : tok_(tok) {}
  void add(const TokenLogprob& t, size_t text_offset) {
    tokens_.push_back(token_display(tok_, t.id));
    token_logprobs_.push_back(number_or_null(t.logprob));
    if (std::isfinite(t.logprob)) {
      json top = json::object();
      for (const auto& x : t.top) {
        const std::string s = token_display(tok_, x.id);
        if (!top.contains(s)) top[s] = x.logprob;  // two ids with one text: keep the likelier
      }
      top_.push_back(std::move(top));
    } else {
      top_.push_back(nullptr);
    }
    offsets_.push_back(text_offset);
  }
  json to_json() const {
    return json{{"tokens", tokens_}, {"token_logprobs", token_logprobs_}, {"top_logprobs", top_}, {"text_offset", offsets_}};
  }
  void clear() { tokens_ = token_logprobs_ = top_ = offsets_ = json::array(); }

 private:
  const Tokenizer& tok_;
  json tokens_ = json::array(), token_logprobs_ = json::array(), top_ = json::array(), offsets_ = json::array();
};

struct PreparedPrompt {
  std::vector<TokenId> tokens;
  std::string text;  // as given, or the decoding of given token ids
};

// Writes server-sent events; remembers the first failed write (the client is gone).
class EventStream {
 public:
  explicit EventStream(httplib::DataSink& sink) : sink_(sink) {}
  bool send(const json& j) { return write("data: " + dump_json(j) + "\n\n"); }
  bool done() { return write("data: [DONE]\n\n"); }
  bool ok() const { return ok_; }
  // Runs the body of a streamed response: an error becomes an OpenAI-style error event, and the
  // stream always ends with [DONE]. The body returns false when the client is gone (then
  // nothing more is written). Returns whether the stream is still healthy.
  template <typename Body>
  bool run(Body&& body) {
    try {
      if (!body()) return false;
    } catch (const ApiError& e) {
      send(error_body(e));
    } catch (const std::exception& e) {
      send(error_body(ApiError(500, e.what(), "server_error")));
    }
    done();
    sink_.done();
    return ok();
  }

 private:
  bool write(const std::string& s) {
    if (ok_) ok_ = sink_.write(s.data(), s.size());
    return ok_;
  }
  httplib::DataSink& sink_;
  bool ok_ = true;
};

}  // namespace

struct OpenAIServer::Impl {
  ServedModel& model;
  ServerOptions opt;
  httplib::Server http;
  std::atomic<int> in_flight{0};
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> request_counter{0};
  uint64_t id_base = 0;
  std::time_t started = std::time(nullptr);
  bool bound = false;

  Impl(ServedModel& m, ServerOptions o) : model(m), opt(std::move(o)) {
    id_base = std::random_device{}();
    setup();
  }

  // Released when the request's last user (handler or stream provider) lets go.
  struct Admission {
    std::atomic<int>& n;
    ~Admission() { --n; }
  };
  std::shared_ptr<Admission> admit() {
    if (in_flight.fetch_add(1) >= opt.max_concurrency) {
      --in_flight;
      throw ApiError(429,
                     "server busy: " + std::to_string(opt.max_concurrency) +
                         " requests are already in progress (--max-concurrency); retry later",
                     "rate_limit_error", {}, "rate_limit_exceeded");
    }
    return std::shared_ptr<Admission>(new Admission{in_flight});
  }

  std::string new_id(const char* prefix) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s-%016llx", prefix,
                  static_cast<unsigned long long>(id_base + request_counter.fetch_add(1)));
    return buf;
  }

  static void send_json(httplib::Response& res, int status, const json& j) {
    res.status = status;
    res.set_content(dump_json(j), "application/json");
  }
  static void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status(), error_body(e)); }

  // With an API key, every /v1/* request must carry it. Checked in the handler, after the body
  // has been read, so that a rejected request leaves its keep-alive connection usable.
  void check_auth(const httplib::Request& req) const {
    if (opt.api_key.empty()) return;
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.empty())
      throw ApiError(401, "missing API key: send 'Authorization: Bearer KEY'", "invalid_request_error", {},
                     "invalid_api_key");
    if (auth.rfind(prefix, 0) != 0 || !constant_time_equal(std::string_view(auth).substr(prefix.size()), opt.api_key))
      throw ApiError(401, "incorrect API key provided", "invalid_request_error", {}, "invalid_api_key");
  }

  template <class F>
  httplib::Server::Handler guarded(F f) {
    return [this, f](const httplib::Request& req, httplib::Response& res) {
      try {
        check_auth(req);
        f(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const Error& e) {
        send_error(res, ApiError(400, e.what()));
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, std::string("internal error: ") + e.what(), "server_error"));
      }
    };
  }

  void check_model(const std::string& name) const {
    if (!name.empty() && name != model.id())
      throw ApiError(404, "The model '" + name + "' does not exist; this server serves '" + model.id() + "'",
                     "invalid_request_error", "model", "model_not_found");
  }

  void check_size(const httplib::Request& req) const {
    if (req.body.size() > opt.max_request_bytes) throw too_large();
  }
  ApiError too_large() const {
    return ApiError(413, "request body exceeds the limit of " + std::to_string(opt.max_request_bytes) +
                             " bytes (--max-request-bytes)",
                    "invalid_request_error", {}, "request_too_large");
  }

  json model_object() const {
    return json{{"id", model.id()},
                {"object", "model"},
                {"created", static_cast<int64_t>(started)},
                {"owned_by", "qeval"},
                {"context_length", model.context_length()}};
  }

  void log_cancel(const std::string& id, size_t generated) const {
    if (opt.log_requests)
      std::fprintf(stderr, "serve: %s cancelled after %zu generated tokens (%s)\n", id.c_str(), generated,
                   stopping.load() ? "server stopping" : "client disconnected");
  }

  // Generation continues while this holds: the server runs and the client is connected.
  bool keep_going(ConnectionWatch& watch) { return !stopping.load() && !watch.closed(); }

  void setup();
  void completions(const httplib::Request& req, httplib::Response& res);
  void chat(const httplib::Request& req, httplib::Response& res);

  // One completion choice; with `stream`, its text (and logprobs) also go out as events.
  json complete_one(ServedModel::Lease& lease, const CompletionRequest& r, const PreparedPrompt& p, size_t index,
                    const std::string& id, ConnectionWatch& watch, EventStream* stream, int64_t& completion_tokens,
                    bool& cancelled);
  json completion_chunk(const std::string& id, size_t index, const std::string& text, const json& logprobs,
                        const json& finish) const {
    return json{{"id", id},
                {"object", "text_completion"},
                {"created", static_cast<int64_t>(std::time(nullptr))},
                {"model", model.id()},
                {"choices", json::array({json{{"index", index}, {"text", text}, {"logprobs", logprobs}, {"finish_reason", finish}}})}};
  }
  json chat_chunk(const std::string& id, const json& delta, const json& finish) const {
    return json{{"id", id},
                {"object", "chat.completion.chunk"},
                {"created", static_cast<int64_t>(std::time(nullptr))},
                {"model", model.id()},
                {"choices", json::array({json{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", finish}}})}};
  }
  static json usage(int64_t prompt, int64_t completion) {
    return json{{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
  }
  // The last chunk of a stream with stream_options.include_usage: no choices, the token counts.
  static void send_usage(EventStream& events, json chunk, int64_t prompt, int64_t completion) {
    chunk["choices"] = json::array();
    chunk["usage"] = usage(prompt, completion);
    events.send(chunk);
  }
};

void OpenAIServer::Impl::setup() {
  // A client that vanishes mid-response must not kill the server with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  const size_t threads = static_cast<size_t>(std::max(1, opt.max_concurrency)) + 4;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(opt.max_request_bytes);
  http.set_keep_alive_timeout(5);

  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (res.status == 413) {
      send_error(res, too_large());
    } else if (res.status == 404) {
      send_error(res, ApiError(404, "no such endpoint: " + req.method + " " + req.path, "invalid_request_error", {},
                               "not_found"));
    } else {
      send_error(res, ApiError(res.status, "HTTP error " + std::to_string(res.status),
                               res.status >= 500 ? "server_error" : "invalid_request_error"));
    }
    return httplib::Server::HandlerResponse::Handled;
  }));

  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "internal error: " + what, "server_error"));
  });

  if (opt.log_requests)
    http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      // Headers (the API key among them) and bodies are never logged.
      std::fprintf(stderr, "serve: %s:%d %s %s %d (%zu bytes in)\n", req.remote_addr.c_str(), req.remote_port,
                   req.method.c_str(), req.path.c_str(), res.status, req.body.size());
    });

  http.Get("/health", [](const httplib::Request&, httplib::Response& res) { send_json(res, 200, json{{"status", "ok"}}); });
  http.Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& res) {
             send_json(res, 200, json{{"object", "list"}, {"data", json::array({model_object()})}});
           }));
  http.Get(R"(/v1/models/(.+))", guarded([this](const httplib::Request& req, httplib::Response& res) {
             const std::string name = req.matches[1];
             if (name != model.id())
               throw ApiError(404, "The model '" + name + "' does not exist", "invalid_request_error", "model",
                              "model_not_found");
             send_json(res, 200, model_object());
           }));
  http.Post("/v1/completions", guarded([this](const httplib::Request& req, httplib::Response& res) { completions(req, res); }));
  http.Post("/v1/chat/completions", guarded([this](const httplib::Request& req, httplib::Response& res) { chat(req, res); }));
}

json OpenAIServer::Impl::complete_one(ServedModel::Lease& lease, const CompletionRequest& r, const PreparedPrompt& p,
                                      size_t index, const std::string& id, ConnectionWatch& watch, EventStream* stream,
                                      int64_t& completion_tokens, bool& cancelled) {
  const Tokenizer& tok = model.tokenizer();
  const bool want_lp = r.logprobs >= 0;
  LegacyLogprobs lp(tok);
  std::string echoed;
  if (r.echo) {
    const auto scores = lease.score(p.tokens, std::max(0, r.logprobs));
    AlignedText aligned = align_tokens(tok, p.tokens, p.text);
    echoed = std::move(aligned.text);
    if (want_lp)
      for (size_t i = 0; i < scores.size(); ++i) lp.add(scores[i], code_points(echoed, aligned.byte_offsets[i]));
    if (stream) {
      stream->send(completion_chunk(id, index, echoed, want_lp ? lp.to_json() : json(nullptr), nullptr));
      lp.clear();
    }
  }
  // Completion tokens' offsets continue after the prompt's text, echoed or not (OpenAI's way).
  const size_t base = code_points(r.echo ? echoed : p.text);
  size_t generated_cp = 0;
  GenerationOutcome out;
  if (r.sampling.max_tokens > 0 && (!stream || stream->ok())) {
    out = lease.generate(p.tokens, r.sampling, want_lp ? r.logprobs : -1,
                         [&](const TokenLogprob& t, std::string_view text) {
                           if (t.id >= 0 && want_lp) {
                             lp.add(t, base + generated_cp);
                             generated_cp += code_points(tok.token_text(t.id));
                           }
                           if (stream && (!text.empty() || (want_lp && t.id >= 0))) {
                             stream->send(completion_chunk(id, index, std::string(text), want_lp ? lp.to_json() : json(nullptr), nullptr));
                             lp.clear();
                           }
                           return keep_going(watch) && (!stream || stream->ok());
                         });
  }
  if (out.finish == FinishReason::cancelled || (stream && !stream->ok())) {
    cancelled = true;
    log_cancel(id, out.tokens.size());
  }
  completion_tokens += static_cast<int64_t>(out.tokens.size());
  const json finish = std::string(finish_reason_name(out.finish));
  if (stream) {
    stream->send(completion_chunk(id, index, "", nullptr, finish));
    return {};
  }
  json logprobs = nullptr;
  if (want_lp) {
    // Without streaming, tokens that only spell a stop string are not reported.
    if (out.finish == FinishReason::stop) {
      json j = lp.to_json();
      const size_t prompt_tokens = r.echo ? p.tokens.size() : 0;
      size_t keep = prompt_tokens, pos = 0;
      for (const auto& t : out.tokens) {
        if (pos >= out.text.size()) break;  // this token starts inside the stop string
        pos += tok.token_text(t.id).size();
        ++keep;
      }
      for (const char* k : {"tokens", "token_logprobs", "top_logprobs", "text_offset"})
        if (j[k].size() > keep) j[k].erase(j[k].begin() + static_cast<std::ptrdiff_t>(keep), j[k].end());
      logprobs = std::move(j);
    } else {
      logprobs = lp.to_json();
    }
  }
  return json{{"index", index}, {"text", echoed + out.text}, {"logprobs", logprobs}, {"finish_reason", finish}};
}

void OpenAIServer::Impl::completions(const httplib::Request& req, httplib::Response& res) {
  auto admission = admit();
  check_size(req);
  const CompletionRequest r = parse_completion_request(parse_json_body(req.body));
  check_model(r.model);
  auto prompts = std::make_shared<std::vector<PreparedPrompt>>();
  int64_t prompt_tokens = 0;
  for (const auto& q : r.prompts) {
    PreparedPrompt p;
    p.tokens = q.is_ids ? q.ids : model.encode_prompt(q.text);
    model.check_prompt(p.tokens, r.sampling.max_tokens > 0 ? ServedModel::PromptUse::generate
                                 : r.echo                   ? ServedModel::PromptUse::score
                                                            : ServedModel::PromptUse::none);
    p.text = q.is_ids ? model.tokenizer().decode(p.tokens) : q.text;
    prompt_tokens += static_cast<int64_t>(p.tokens.size());
    prompts->push_back(std::move(p));
  }
  const std::string id = new_id("cmpl");
  if (!r.stream) {
    ConnectionWatch watch(req.remote_addr, req.remote_port, req.local_port);
    auto lease = model.acquire();
    json choices = json::array();
    int64_t completion_tokens = 0;
    bool cancelled = false;
    for (size_t i = 0; i < prompts->size() && !cancelled; ++i)
      choices.push_back(complete_one(*lease, r, (*prompts)[i], i, id, watch, nullptr, completion_tokens, cancelled));
    if (cancelled) {
      send_error(res, ApiError(503, "request cancelled (client disconnected or server stopping)", "server_error"));
      return;
    }
    send_json(res, 200,
              json{{"id", id},
                   {"object", "text_completion"},
                   {"created", static_cast<int64_t>(std::time(nullptr))},
                   {"model", model.id()},
                   {"choices", choices},
                   {"usage", usage(prompt_tokens, completion_tokens)}});
    return;
  }
  auto request = std::make_shared<CompletionRequest>(r);
  const std::string remote = req.remote_addr;
  const int remote_port = req.remote_port, local_port = req.local_port;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [this, admission, request, prompts, id, remote, remote_port, local_port,
                            prompt_tokens](size_t, httplib::DataSink& sink) {
        EventStream events(sink);
        return events.run([&] {
          ConnectionWatch watch(remote, remote_port, local_port);
          auto lease = model.acquire();
          int64_t completion_tokens = 0;
          bool cancelled = false;
          for (size_t i = 0; i < prompts->size() && !cancelled; ++i)
            complete_one(*lease, *request, (*prompts)[i], i, id, watch, &events, completion_tokens, cancelled);
          if (cancelled && !events.ok()) return false;
          if (request->include_usage) send_usage(events, completion_chunk(id, 0, "", nullptr, nullptr), prompt_tokens, completion_tokens);
          return true;
        });
      });
}

void OpenAIServer::Impl::chat(const httplib::Request& req, httplib::Response& res) {
  auto admission = admit();
  check_size(req);
  auto r = std::make_shared<ChatRequest>(parse_chat_request(parse_json_body(req.body)));
  check_model(r->model);
  const ChatPrompt prompt = render_chat(model.chat_format(), r->messages);
  auto tokens = std::make_shared<std::vector<TokenId>>(model.encode_prompt(prompt.text));
  model.check_prompt(*tokens, ServedModel::PromptUse::generate);
  for (const auto& s : prompt.stops) r->sampling.stop.push_back(s);
  const std::string id = new_id("chatcmpl");
  const int64_t prompt_tokens = static_cast<int64_t>(tokens->size());
  if (!r->stream) {
    ConnectionWatch watch(req.remote_addr, req.remote_port, req.local_port);
    auto lease = model.acquire();
    const GenerationOutcome out = lease->generate(*tokens, r->sampling, -1, [&](const TokenLogprob&, std::string_view) {
      return keep_going(watch);
    });
    if (out.finish == FinishReason::cancelled) {
      log_cancel(id, out.tokens.size());
      send_error(res, ApiError(503, "request cancelled (client disconnected or server stopping)", "server_error"));
      return;
    }
    json choice{{"index", 0},
                {"message", json{{"role", "assistant"}, {"content", out.text}}},
                {"logprobs", nullptr},
                {"finish_reason", std::string(finish_reason_name(out.finish))}};
    send_json(res, 200,
              json{{"id", id},
                   {"object", "chat.completion"},
                   {"created", static_cast<int64_t>(std::time(nullptr))},
                   {"model", model.id()},
                   {"choices", json::array({choice})},
                   {"usage", usage(prompt_tokens, static_cast<int64_t>(out.tokens.size()))}});
    return;
  }
  const std::string remote = req.remote_addr;
  const int remote_port = req.remote_port, local_port = req.local_port;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, admission, r, tokens, id, remote, remote_port, local_port, prompt_tokens](size_t, httplib::DataSink& sink) {
        EventStream events(sink);
        return events.run([&] {
          ConnectionWatch watch(remote, remote_port, local_port);
          auto lease = model.acquire();
          events.send(chat_chunk(id, json{{"role", "assistant"}, {"content", ""}}, nullptr));
          const GenerationOutcome out = lease->generate(*tokens, r->sampling, -1, [&](const TokenLogprob&, std::string_view text) {
            if (!text.empty()) events.send(chat_chunk(id, json{{"content", std::string(text)}}, nullptr));
            return keep_going(watch) && events.ok();
          });
          if (out.finish == FinishReason::cancelled) log_cancel(id, out.tokens.size());
          if (!events.ok()) return false;
          events.send(chat_chunk(id, json::object(), std::string(finish_reason_name(out.finish))));
          if (r->include_usage)
            send_usage(events, chat_chunk(id, json::object(), nullptr), prompt_tokens, static_cast<int64_t>(out.tokens.size()));
          return true;
        });
      });
}

OpenAIServer::OpenAIServer(ServedModel& model, ServerOptions options)
    : impl_(std::make_unique<Impl>(model, std::move(options))) {}

OpenAIServer::~OpenAIServer() = default;

int OpenAIServer::bind() {
  auto& o = impl_->opt;
  if (o.max_concurrency < 1) throw Error("--max-concurrency: must be >= 1");
  if (o.max_request_bytes < 1024) throw Error("--max-request-bytes: must be >= 1024");
  int port = o.port;
  if (o.port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
    if (port < 0) throw Error(o.host + ": cannot bind a port");
  } else if (!impl_->http.bind_to_port(o.host, o.port)) {
    throw Error(o.host + ":" + std::to_string(o.port) + ": cannot bind (address in use or not local?)");
  }
  impl_->bound = true;
  return port;
}

void OpenAIServer::run() {
  if (!impl_->bound) throw Error("serve: bind() before run()");
  impl_->http.listen_after_bind();
}

void OpenAIServer::stop() {
  impl_->stopping = true;
  impl_->http.stop();
}

}  // namespace qeval::serve
