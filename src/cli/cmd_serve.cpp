// qeval serve MODEL [--spec SPEC [--calib FILE]] [--host 127.0.0.1] --port P
//                   [--api-key-env VAR | --api-key-file FILE] [--max-request-bytes N]
//                   [--max-concurrency N] [--ctx N] [--threads N] [--name ID] [--chat-format F]
// An OpenAI-compatible HTTP server (serve/server.h). Ctrl-C or SIGTERM stops it cleanly.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "cli/command.h"
#include "qeval/serve/server.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct ServeArgs {
  std::string model, spec, calib, host = "127.0.0.1", api_key_env, api_key_file, name, chat_format;
  int port = 8080;
  size_t max_request_bytes = size_t{1} << 20;
  int max_concurrency = 8;
  int64_t ctx = 0;
  int threads = 0;
  bool quiet = false;
};

volatile std::sig_atomic_t g_stop_signal = 0;
void on_stop_signal(int sig) { g_stop_signal = sig; }

std::string read_api_key(const ServeArgs& a) {
  std::string key;
  if (!a.api_key_env.empty()) {
    const char* v = std::getenv(a.api_key_env.c_str());
    if (v == nullptr || *v == '\0') throw Error("--api-key-env: environment variable " + a.api_key_env + " is not set or empty");
    key = v;
  } else if (!a.api_key_file.empty()) {
    std::ifstream in(a.api_key_file, std::ios::binary);
    if (!in) throw Error(a.api_key_file + ": cannot read the API key file");
    std::stringstream ss;
    ss << in.rdbuf();
    key = ss.str();
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
    if (key.empty()) throw Error(a.api_key_file + ": the API key file is empty");
  }
  for (char c : key)
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
      throw Error("API key: only printable ASCII without spaces is allowed");
  return key;
}

int run(const ServeArgs& a) {
  if (a.port < 0 || a.port > 65535) throw Error("--port: must be in 0..65535");
  const std::string key = read_api_key(a);
  // SIGINT / SIGTERM only raise a flag (any thread may take them: OpenBLAS starts its threads
  // before main, so blocking them everywhere is not possible); a watcher thread stops the server.
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  serve::ServedModel model(a.model, {.id = a.name,
                                     .spec = a.spec,
                                     .calib = a.calib,
                                     .threads = a.threads,
                                     .context = a.ctx,
                                     .chat_format = a.chat_format});
  serve::OpenAIServer server(model, {.host = a.host,
                                     .port = a.port,
                                     .api_key = key,
                                     .max_request_bytes = a.max_request_bytes,
                                     .max_concurrency = a.max_concurrency,
                                     .log_requests = !a.quiet});
  const int port = server.bind();
  std::fprintf(stderr, "serve: %s\n", model.description().c_str());
  std::fprintf(stderr, "serve: listening on http://%s:%d/v1 (max %d requests at once, %zu-byte bodies%s)\n",
               a.host.c_str(), port, a.max_concurrency, a.max_request_bytes, key.empty() ? "" : ", API key required");
  std::fflush(stderr);

  std::atomic<bool> finished{false};
  std::thread watcher([&] {
    // stop() is repeated until run() returns: a stop that lands before the server starts
    // listening would otherwise be lost.
    while (!finished.load()) {
      if (g_stop_signal != 0) server.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  server.run();
  finished = true;
  watcher.join();
  if (g_stop_signal != 0) std::fprintf(stderr, "serve: stopped by signal %d\n", static_cast<int>(g_stop_signal));
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  app.add_option("model", a->model, "GGUF file or HF directory")->required();
  app.add_option("--spec", a->spec, "quantize in memory with this spec before serving (quant/spec.h)");
  app.add_option("--calib", a->calib, "calibration text for --spec (gptq / awq / smoothquant / static activations)");
  app.add_option("--host", a->host, "address to bind (default 127.0.0.1: this machine only)");
  app.add_option("--port", a->port, "port (0: any free port; the chosen one is printed)")->required();
  auto* env = app.add_option("--api-key-env", a->api_key_env, "require 'Authorization: Bearer KEY', KEY from this environment variable");
  auto* file = app.add_option("--api-key-file", a->api_key_file, "require 'Authorization: Bearer KEY', KEY from this file");
  env->excludes(file);
  app.add_option("--max-request-bytes", a->max_request_bytes, "largest request body accepted (413 above; default 1 MiB)");
  app.add_option("--max-concurrency", a->max_concurrency,
                 "requests admitted at once, one generating and the rest queued (429 above; default 8)");
  app.add_option("--ctx", a->ctx, "context length (default: the model's)");
  app.add_option("--threads,-t", a->threads, "engine threads (default: hardware concurrency)");
  app.add_option("--name", a->name, "model id clients use (default: the model file name without extension)");
  app.add_option("--chat-format", a->chat_format,
                 "chat prompt format: chatml, llama3, llama2, zephyr or plain (default: from tokenizer.chat_template)");
  app.add_flag("--quiet,-q", a->quiet, "do not log one line per request");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("serve", "Serve a model over an OpenAI-compatible HTTP API (completions, chat)", setup);

}  // namespace
}  // namespace qeval::cli
