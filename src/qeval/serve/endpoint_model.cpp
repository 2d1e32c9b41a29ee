#include "qeval/serve/endpoint_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "qeval/serve/api_error.h"
#include "qeval/serve/http_client.h"
#include "qeval/serve/text_offsets.h"
#include "qeval/util/error.h"

namespace qeval::serve {

using nlohmann::json;

namespace {

// The server's error message from an OpenAI-style body, else the body itself (shortened).
std::string server_message(const std::string& body) {
  try {
    const json j = json::parse(body);
    if (j.contains("error")) {
      const json& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
      if (e.is_string()) return e.get<std::string>();
    }
  } catch (const json::exception&) {
  }
  return body.size() > 300 ? body.substr(0, 300) + "..." : body;
}

std::string shorten(const std::string& s) { return s.size() > 60 ? s.substr(0, 57) + "..." : s; }

// Length of the context once its trailing whitespace has moved to the continuation
// (lm-evaluation-harness's _encode_pair).
size_t trimmed_length(const std::string& context) {
  size_t keep = context.size();
  while (keep > 0 && (context[keep - 1] == ' ' || context[keep - 1] == '\t' || context[keep - 1] == '\n' ||
                      context[keep - 1] == '\r'))
    --keep;
  return keep;
}

}  // namespace

EndpointLanguageModel::EndpointLanguageModel(EndpointOptions options) : opts_(std::move(options)) {
  if (opts_.model.empty()) throw Error(opts_.base_url + ": --model NAME is required with an endpoint");
  if (opts_.batch == 0) opts_.batch = 1;
  http_ = std::make_unique<HttpClient>(opts_.base_url, opts_.timeout_seconds);
  if (http_->prefix().empty()) http_ = std::make_unique<HttpClient>(opts_.base_url + "/v1", opts_.timeout_seconds);
  if (!opts_.api_key_env.empty()) {
    const char* key = std::getenv(opts_.api_key_env.c_str());
    if (key == nullptr || *key == '\0') throw Error("--api-key-env: environment variable " + opts_.api_key_env + " is not set or empty");
    http_->set_bearer_token(key);
  }
}

EndpointLanguageModel::~EndpointLanguageModel() = default;

std::string EndpointLanguageModel::post_completions(const std::string& body) {
  const std::string& url = opts_.base_url;
  for (int attempt = 0;; ++attempt) {
    HttpResponse r = http_->post("/completions", body);
    const bool transient = !r.error.empty() || r.status == 429 || r.status == 503;
    if (transient && attempt < opts_.max_retries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250 << std::min(attempt, 5)));
      continue;
    }
    if (!r.error.empty()) throw Error(url + ": no response from the server (" + r.error + ")");
    if (r.status == 200) return r.body;
    const std::string msg = server_message(r.body);
    if (r.status == 401 || r.status == 403)
      throw Error(url + ": HTTP " + std::to_string(r.status) + " (API key missing or wrong; see --api-key-env): " + msg);
    throw Error(url + ": HTTP " + std::to_string(r.status) + ": " + msg);
  }
}

std::vector<EndpointLanguageModel::Scored> EndpointLanguageModel::score(const std::vector<std::string>& prompts,
                                                                        const std::vector<size_t>& context_chars,
                                                                        size_t& done, size_t total) {
  const std::string& url = opts_.base_url;
  std::vector<Scored> out(prompts.size());
  for (size_t b = 0; b < prompts.size(); b += opts_.batch) {
    const size_t m = std::min(opts_.batch, prompts.size() - b);
    json req{{"model", opts_.model}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 1}, {"temperature", 0}};
    req["prompt"] = json::array();
    for (size_t i = 0; i < m; ++i) req["prompt"].push_back(prompts[b + i]);
    std::string body;
    try {
      body = post_completions(dump_json(req));
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (while scoring prompts with echo + logprobs + max_tokens 0)");
    }
    json res;
    try {
      res = json::parse(body);
    } catch (const json::exception&) {
      throw Error(url + ": the server's answer is not JSON");
    }
    if (!res.contains("choices") || !res["choices"].is_array() || res["choices"].size() != m)
      throw Error(url + ": expected " + std::to_string(m) + " choices in the answer to a list of prompts");
    for (const json& c : res["choices"]) {
      const size_t idx = c.contains("index") && c["index"].is_number_unsigned() ? c["index"].get<size_t>() : m;
      if (idx >= m) throw Error(url + ": a choice has no valid index");
      const json* lp = c.contains("logprobs") ? &c["logprobs"] : nullptr;
      const auto arr = [&](const char* k) { return lp && lp->is_object() && lp->contains(k) && (*lp)[k].is_array(); };
      if (!arr("token_logprobs") || !arr("text_offset") || !arr("top_logprobs") || (*lp)["token_logprobs"].empty() ||
          (*lp)["text_offset"].size() != (*lp)["token_logprobs"].size() ||
          (*lp)["top_logprobs"].size() != (*lp)["token_logprobs"].size())
        throw Error(url + ": server does not return prompt log-probabilities (echo+logprobs unsupported)");
      const json& lps = (*lp)["token_logprobs"];
      const json& offs = (*lp)["text_offset"];
      const json& tops = (*lp)["top_logprobs"];
      const std::string& prompt = prompts[b + idx];
      const size_t ctx = context_chars[b + idx];
      const size_t total_chars = code_points(c.contains("text") && c["text"].is_string() ? c["text"].get<std::string>() : prompt);
      Scored s;
      for (size_t i = 0; i < lps.size(); ++i) {
        if (!offs[i].is_number()) throw Error(url + ": text_offset holds a non-number");
        const size_t end = i + 1 < lps.size() ? offs[i + 1].get<size_t>() : total_chars;
        if (end <= ctx) continue;  // the token lies within the context
        if (!lps[i].is_number())
          throw Error(url + ": no log-probability for the first token of '" + shorten(prompt) +
                      "' (the server adds no BOS before it; give a context or a model whose tokenizer adds BOS)");
        const double v = lps[i].get<double>();
        s.logprob += v;
        ++s.n_tokens;
        if (!tops[i].is_object() || tops[i].empty())
          throw Error(url + ": top_logprobs missing for a prompt token (needed for is_greedy)");
        double best = -INFINITY;
        for (const auto& [k, x] : tops[i].items())
          if (x.is_number()) best = std::max(best, x.get<double>());
        if (v < best - 1e-6) s.greedy = false;
      }
      if (s.n_tokens == 0)
        throw Error(url + ": the continuation of '" + shorten(prompt) + "' covers no token of the server's tokenization");
      out[b + idx] = s;
    }
    done += m;
    if (opts_.progress) opts_.progress(done, total);
  }
  return out;
}

std::vector<eval::task::LoglikelihoodResult> EndpointLanguageModel::loglikelihood(
    const std::vector<eval::task::Request>& requests) {
  std::vector<std::string> prompts;
  std::vector<size_t> ctx;
  for (const auto& q : requests) {
    prompts.push_back(q.context + q.continuation);
    ctx.push_back(code_points(q.context, trimmed_length(q.context)));
  }
  size_t done = 0;
  const auto scored = score(prompts, ctx, done, requests.size());
  std::vector<eval::task::LoglikelihoodResult> out(requests.size());
  for (size_t i = 0; i < scored.size(); ++i) out[i] = {scored[i].logprob, scored[i].greedy, scored[i].n_tokens};
  return out;
}

std::vector<eval::task::RollingResult> EndpointLanguageModel::loglikelihood_rolling(
    const std::vector<eval::task::Request>& requests) {
  std::vector<std::string> prompts;
  for (const auto& q : requests) prompts.push_back(q.context + q.continuation);
  size_t done = 0;
  const auto scored = score(prompts, std::vector<size_t>(prompts.size(), 0), done, requests.size());
  std::vector<eval::task::RollingResult> out(requests.size());
  for (size_t i = 0; i < scored.size(); ++i) out[i] = {scored[i].logprob, scored[i].n_tokens};
  return out;
}

std::vector<std::string> EndpointLanguageModel::generate_until(const std::vector<eval::task::Request>& requests) {
  const std::string& url = opts_.base_url;
  std::vector<std::string> out;
  out.reserve(requests.size());
  for (const auto& q : requests) {
    json req{{"model", opts_.model},
             {"prompt", q.context},
             {"max_tokens", q.max_gen_toks > 0 ? q.max_gen_toks : 256},
             {"temperature", 0}};
    std::vector<std::string> stops;
    for (const auto& s : q.until)
      if (!s.empty()) stops.push_back(s);
    if (!stops.empty()) req["stop"] = stops;
    json res;
    try {
      res = json::parse(post_completions(dump_json(req)));
    } catch (const json::exception&) {
      throw Error(url + ": the server's answer is not JSON");
    }
    if (!res.contains("choices") || !res["choices"].is_array() || res["choices"].empty() ||
        !res["choices"][0].contains("text") || !res["choices"][0]["text"].is_string())
      throw Error(url + ": the answer has no choices[0].text");
    std::string text = res["choices"][0]["text"].get<std::string>();
    // Cut at the first stop string too, for servers that ignore "stop".
    size_t cut = std::string::npos;
    for (const auto& s : stops) cut = std::min(cut, text.find(s));
    if (cut != std::string::npos) text.resize(cut);
    out.push_back(std::move(text));
    if (opts_.progress) opts_.progress(out.size(), requests.size());
  }
  return out;
}

std::unique_ptr<eval::task::LanguageModel> make_endpoint_model(const EndpointOptions& options) {
  return std::make_unique<EndpointLanguageModel>(options);
}

}  // namespace qeval::serve
