#pragma once
// The task runner's LanguageModel over any OpenAI-compatible server (QEval's own `qeval serve`,
// llama.cpp's llama-server, vLLM, ...), through POST {base}/completions:
//  - generate_until: prompt = context, temperature 0, max_tokens = max_gen_toks (256 when
//    unset), stop = until; the answer is the returned text.
//  - loglikelihood: prompt = context + continuation with echo, max_tokens 0, logprobs 1; the
//    continuation's tokens are those whose text ends after the context (trailing whitespace of
//    the context counts as continuation, as lm-evaluation-harness does), found by text_offset;
//    is_greedy: each of them is (within 1e-6) the most likely token in top_logprobs.
//  - loglikelihood_rolling: prompt = the text with echo, every token scored but the first (the
//    server's BOS). A text must fit the server's context: the completions API gives no token-level
//    control, so there are no rolling windows here.
// The server tokenizes, so results equal the in-process EngineLanguageModel's exactly where the
// tokenization of context + continuation splits at the context's end (the usual case; the engine
// model then scores the same tokens). A server that returns no prompt log-probabilities gives a
// clear error. Requests answered 429 / 503 are retried with backoff.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qeval/eval/task/language_model.h"

namespace qeval::serve {

struct EndpointOptions {
  std::string base_url;     // "http://127.0.0.1:8080/v1"; a URL with no path gets "/v1"
  std::string model;        // the server's model id ("model" in requests)
  std::string api_key_env;  // environment variable holding the bearer token; empty: none
  double timeout_seconds = 600;
  size_t batch = 8;         // prompts per loglikelihood request (the API takes a list)
  int max_retries = 5;      // for 429 / 503 / connection failures
  std::function<void(size_t done, size_t total)> progress;
};

class HttpClient;

class EndpointLanguageModel : public eval::task::LanguageModel {
 public:
  // Throws qeval::Error for a bad URL or a missing API-key variable (no request is made).
  explicit EndpointLanguageModel(EndpointOptions options);
  ~EndpointLanguageModel() override;

  std::vector<eval::task::LoglikelihoodResult> loglikelihood(const std::vector<eval::task::Request>& requests) override;
  std::vector<eval::task::RollingResult> loglikelihood_rolling(const std::vector<eval::task::Request>& requests) override;
  std::vector<std::string> generate_until(const std::vector<eval::task::Request>& requests) override;

 private:
  struct Scored {
    double logprob = 0;
    bool greedy = true;
    int64_t n_tokens = 0;
  };
  // Scores prompts[i] from character context_chars[i] on (one request per batch).
  std::vector<Scored> score(const std::vector<std::string>& prompts, const std::vector<size_t>& context_chars,
                            size_t& done, size_t total);
  std::string post_completions(const std::string& body);

  EndpointOptions opts_;
  std::unique_ptr<HttpClient> http_;
};

std::unique_ptr<eval::task::LanguageModel> make_endpoint_model(const EndpointOptions& options);

}  // namespace qeval::serve
