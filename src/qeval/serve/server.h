#pragma once
// An OpenAI-compatible HTTP server over one ServedModel (cpp-httplib).
//
// Endpoints: GET /health (no authentication), GET /v1/models, GET /v1/models/{id},
// POST /v1/completions, POST /v1/chat/completions (request.h lists the parameters).
// Limits:
//  - request bodies above max_request_bytes get 413;
//  - at most max_concurrency requests are admitted at once (one generating, the others
//    waiting in arrival order for the engine); a request beyond that gets 429 at once;
//  - with an API key, /v1/* requests need "Authorization: Bearer KEY" (401 otherwise); the key
//    is never logged.
// Errors have OpenAI's body {"error": {"message", "type", "param", "code"}}. A client that hangs
// up stops its generation; stop() ends the generations in progress and returns from run().
#include <cstddef>
#include <memory>
#include <string>

#include "qeval/serve/served_model.h"

namespace qeval::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                          // 0: any free port (bind() returns it)
  std::string api_key;                      // empty: no authentication
  size_t max_request_bytes = size_t{1} << 20;
  int max_concurrency = 8;
  bool log_requests = true;                 // one line per request on stderr
};

class OpenAIServer {
 public:
  OpenAIServer(ServedModel& model, ServerOptions options);
  ~OpenAIServer();
  OpenAIServer(const OpenAIServer&) = delete;
  OpenAIServer& operator=(const OpenAIServer&) = delete;

  // Binds the listening socket and returns the port; throws qeval::Error when it cannot.
  int bind();
  // Serves until stop(); call bind() first.
  void run();
  // Thread-safe (not async-signal-safe: call it from a thread, not a signal handler).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qeval::serve
