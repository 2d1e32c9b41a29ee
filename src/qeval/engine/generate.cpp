#include "qeval/engine/generate.h"

#include <algorithm>

#include "qeval/util/error.h"

namespace qeval {

void GenerationOptions::validate() const {
  if (max_tokens < 0) throw Error("max tokens must be >= 0");
  for (const auto& s : stop)
    if (s.empty()) throw Error("--stop: empty stop string");
  sampling.validate();
}

std::string_view stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::Length: return "length";
    case StopReason::Eos: return "eos";
    case StopReason::StopString: return "stop";
    case StopReason::Callback: return "callback";
    case StopReason::Context: return "context";
  }
  return "?";
}

namespace {
double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
}  // namespace

double GenerationResult::prompt_seconds() const { return tokens.empty() ? seconds(start, end) : seconds(start, first_token); }
double GenerationResult::decode_seconds() const { return tokens.empty() ? 0.0 : seconds(first_token, end); }
double GenerationResult::prompt_tokens_per_second() const {
  const double s = prompt_seconds();
  return s > 0 ? static_cast<double>(prompt_tokens) / s : 0.0;
}
double GenerationResult::decode_tokens_per_second() const {
  const double s = decode_seconds();
  return s > 0 && tokens.size() > 1 ? static_cast<double>(tokens.size() - 1) / s : 0.0;
}

bool apply_stop_strings(std::string& text, size_t before, const std::vector<std::string>& stop, size_t& release_to) {
  release_to = text.size();
  if (stop.empty()) return false;
  size_t max_stop = 0;
  for (const auto& s : stop) max_stop = std::max(max_stop, s.size());
  const size_t from = before >= max_stop ? before - max_stop + 1 : 0;
  size_t cut = std::string::npos;
  for (const auto& s : stop) {
    const size_t p = text.find(s, from);
    if (p != std::string::npos) cut = std::min(cut, p);
  }
  if (cut != std::string::npos) {
    text.resize(cut);
    release_to = cut;
    return true;
  }
  for (const auto& s : stop)
    for (size_t k = std::min(s.size() - 1, text.size()); k > 0; --k)
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        release_to = std::min(release_to, text.size() - k);
        break;
      }
  return false;
}

GenerationResult generate(Engine& engine, const Tokenizer* tok, std::span<const TokenId> prompt,
                          const GenerationOptions& o, const TokenCallback& on_token) {
  o.validate();
  if (prompt.empty()) throw Error("empty prompt: nothing to condition on");
  engine.check_tokens(prompt);
  const int64_t n_ctx = engine.context_length();
  if (static_cast<int64_t>(prompt.size()) >= n_ctx)
    throw Error("prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
                std::to_string(n_ctx) + " tokens (one position is needed for the first generated token)");
  if (!o.stop.empty() && !tok) throw Error("stop strings need a tokenizer");

  GenerationResult res;
  res.prompt_tokens = static_cast<int64_t>(prompt.size());
  res.tokens.reserve(static_cast<size_t>(o.max_tokens));
  res.token_times.reserve(static_cast<size_t>(o.max_tokens));
  Sampler sampler(o.sampling, engine.vocab_size());
  KVCache cache = engine.new_cache(std::min<int64_t>(n_ctx, static_cast<int64_t>(prompt.size()) + o.max_tokens));
  const TokenId eos = tok ? tok->eos_id() : -1;

  std::string& text = res.text;  // all decoded text so far
  size_t released = 0;           // text[0, released) has been handed to the callback
  res.start = Clock::now();
  res.stop_reason = StopReason::Length;
  std::span<const float> logits;
  if (o.max_tokens > 0) logits = engine.append(cache, prompt);
  for (int64_t i = 0; i < o.max_tokens; ++i) {
    const TokenId t = sampler.sample(logits.data());
    const auto now = Clock::now();
    if (i == 0) res.first_token = now;
    if (o.stop_at_eos && t == eos && eos >= 0) {
      res.stop_reason = StopReason::Eos;
      break;
    }
    res.tokens.push_back(t);
    res.token_times.push_back(now);
    bool stop_hit = false;
    size_t release_to = text.size();
    if (tok) {
      const size_t before = text.size();
      text += tok->token_text(t);
      stop_hit = apply_stop_strings(text, before, o.stop, release_to);
    }
    bool keep_going = true;
    if (on_token) {
      TokenEvent ev;
      ev.token = t;
      ev.index = i;
      ev.text = std::string_view(text).substr(released, release_to > released ? release_to - released : 0);
      ev.time = now;
      released = std::max(released, release_to);
      keep_going = on_token(ev);
    } else {
      released = std::max(released, release_to);
    }
    if (stop_hit) {
      res.stop_reason = StopReason::StopString;
      break;
    }
    if (!keep_going) {
      res.stop_reason = StopReason::Callback;
      break;
    }
    if (i + 1 == o.max_tokens) break;
    if (cache.size() >= cache.capacity()) {
      res.stop_reason = StopReason::Context;
      break;
    }
    logits = engine.append(cache, {&res.tokens.back(), 1});
  }
  res.end = Clock::now();
  if (res.tokens.empty()) res.first_token = res.end;
  // Release what was held back (no stop string completed).
  if (on_token && released < text.size() && res.stop_reason != StopReason::StopString) {
    TokenEvent ev;
    ev.token = -1;
    ev.index = static_cast<int64_t>(res.tokens.size());
    ev.text = std::string_view(text).substr(released);
    ev.time = res.end;
    on_token(ev);
  }
  return res;
}

}  // namespace qeval
