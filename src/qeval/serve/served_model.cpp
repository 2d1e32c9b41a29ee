#include "qeval/serve/served_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <random>

#include "qeval/engine/generate.h"
#include "qeval/engine/sampling.h"
#include "qeval/quant/export.h"
#include "qeval/quant/in_memory.h"
#include "qeval/quant/spec.h"
#include "qeval/serve/api_error.h"
#include "qeval/util/error.h"
#include "qeval/util/log.h"

namespace qeval::serve {

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
  }
  return "?";
}

namespace {

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// Natural-log softmax of one position in double precision: the log-probability of `token` and
// the `top_k` most likely tokens (ties: lower id first, as argmax).
TokenLogprob position_logprobs(const float* logits, int64_t vocab, TokenId token, int top_k,
                               std::vector<std::pair<float, TokenId>>& scratch) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t v = 0; v < vocab; ++v) mx = std::max(mx, logits[v]);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - mx);
  const double log_z = static_cast<double>(mx) + std::log(sum);
  TokenLogprob r;
  r.id = token;
  r.logprob = static_cast<double>(logits[token]) - log_z;
  if (top_k > 0) {
    const int64_t k = std::min<int64_t>(top_k, vocab);
    scratch.resize(static_cast<size_t>(vocab));
    for (int64_t v = 0; v < vocab; ++v) scratch[static_cast<size_t>(v)] = {logits[v], static_cast<TokenId>(v)};
    std::partial_sort(scratch.begin(), scratch.begin() + k, scratch.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    for (int64_t i = 0; i < k; ++i)
      r.top.push_back({scratch[static_cast<size_t>(i)].second, static_cast<double>(scratch[static_cast<size_t>(i)].first) - log_z});
  }
  return r;
}

}  // namespace

std::string token_display(const Tokenizer& tok, TokenId id) {
  std::string t = tok.token_text(id);
  if (valid_utf8(t)) return t;
  std::string out = "bytes:";
  char buf[8];
  for (unsigned char c : t) {
    std::snprintf(buf, sizeof buf, "\\x%02x", c);
    out += buf;
  }
  return out;
}

ServedModel::ServedModel(const std::string& path, const ServedModelOptions& o) {
  model_ = std::make_unique<Model>(quant::load_any_model(path));
  tok_ = load_tokenizer(*model_);
  if (o.context < 0) throw Error("--ctx: must be >= 0");
  engine_ = std::make_unique<Engine>(*model_, EngineOptions{.threads = o.threads, .context_length = o.context});
  if (!o.spec.empty()) {
    quantized_ = quant::quantize_for_command(*engine_, *model_, *tok_, o.spec, {o.calib, {.samples = 128, .seqlen = 512, .seed = 0}},
                                             {}, "serve", [](const std::string& line) {
                                               std::fprintf(stderr, "serve: %s\n", line.c_str());
                                             });
  } else if (!o.calib.empty()) {
    throw Error("--calib: only meaningful with --spec");
  }
  id_ = o.id.empty() ? std::filesystem::path(path).filename().replace_extension().string() : o.id;
  if (id_.empty()) id_ = "model";

  const std::string tmpl = model_->metadata.get_string("tokenizer.chat_template", "");
  if (!o.chat_format.empty()) {
    auto f = chat_format_from_name(o.chat_format);
    if (!f) throw Error("--chat-format: unknown format '" + o.chat_format + "' (chatml, llama3, llama2, zephyr, plain)");
    chat_format_ = *f;
  } else if (auto f = detect_chat_format(tmpl)) {
    chat_format_ = *f;
  } else {
    warn(path + ": tokenizer.chat_template is none of the known families (chatml, llama3, llama2, zephyr); "
                "chat uses the plain format (choose one with --chat-format)");
    chat_format_ = ChatFormat::plain;
  }
  description_ = id_ + " (" + path + "), context " + std::to_string(engine_->context_length()) + ", " +
                 std::to_string(engine_->threads()) + " threads, chat format " +
                 std::string(chat_format_name(chat_format_)) + (o.spec.empty() ? "" : ", quantized in memory: " + o.spec);
}

ServedModel::~ServedModel() = default;

std::vector<TokenId> ServedModel::encode_prompt(const std::string& text) const {
  return tok_->encode(text, {.add_special = true, .parse_special = true});
}

void ServedModel::check_prompt(const std::vector<TokenId>& tokens, PromptUse use) const {
  if (tokens.empty()) throw ApiError(400, "prompt: the prompt gives no tokens", "invalid_request_error", "prompt");
  const int64_t vocab = engine_->vocab_size();
  for (TokenId t : tokens)
    if (t < 0 || t >= vocab)
      throw ApiError(400, "prompt: token id " + std::to_string(t) + " is outside the vocabulary of " + std::to_string(vocab),
                     "invalid_request_error", "prompt");
  const int64_t n = static_cast<int64_t>(tokens.size()), ctx = engine_->context_length();
  const int64_t limit = use == PromptUse::generate ? ctx - 1 : use == PromptUse::score ? ctx + 1 : ctx;
  if (n > limit)
    throw ApiError(400,
                   "prompt: " + std::to_string(n) + " tokens do not fit the context of " + std::to_string(ctx) + " tokens" +
                       (use == PromptUse::generate ? " (one position is needed for the first generated token)" : ""),
                   "invalid_request_error", "prompt", "context_length_exceeded");
}

std::unique_ptr<ServedModel::Lease> ServedModel::acquire() {
  std::unique_lock lock(mu_);
  const uint64_t ticket = next_ticket_++;
  cv_.wait(lock, [&] { return serving_ == ticket; });
  return std::unique_ptr<Lease>(new Lease(*this, ticket));
}

void ServedModel::release(uint64_t ticket) {
  {
    std::lock_guard lock(mu_);
    if (serving_ == ticket) ++serving_;
  }
  cv_.notify_all();
}

ServedModel::Lease::~Lease() { m_.release(ticket_); }

std::vector<TokenLogprob> ServedModel::Lease::score(const std::vector<TokenId>& tokens, int top_k) {
  Engine& engine = *m_.engine_;
  std::vector<TokenLogprob> out(tokens.size());
  if (tokens.empty()) return out;
  out[0].id = tokens[0];
  out[0].logprob = std::numeric_limits<double>::quiet_NaN();
  if (tokens.size() == 1) return out;
  // Logits at position p predict token p + 1; the last position predicts nothing here.
  const SequenceView view{std::span<const TokenId>(tokens.data(), tokens.size() - 1), 0};
  std::vector<std::pair<float, TokenId>> scratch;
  const int64_t vocab = engine.vocab_size();
  engine.evaluate({&view, 1}, [&](size_t, int64_t pos, const float* logits) {
    const size_t i = static_cast<size_t>(pos) + 1;
    out[i] = position_logprobs(logits, vocab, tokens[i], top_k, scratch);
  });
  return out;
}

GenerationOutcome ServedModel::Lease::generate(const std::vector<TokenId>& prompt, const SamplingParams& s, int top_k,
                                               const StepCallback& on_step) {
  Engine& engine = *m_.engine_;
  const Tokenizer& tok = *m_.tok_;
  GenerationOutcome res;
  const int64_t n_ctx = engine.context_length();
  const int64_t room = n_ctx - static_cast<int64_t>(prompt.size());
  const int64_t max_tokens = s.max_tokens < 0 ? room : std::min(s.max_tokens, room);
  if (max_tokens <= 0) return res;

  SamplingOptions so;
  so.temperature = s.temperature;
  so.top_k = s.top_k;
  so.top_p = s.top_p;
  so.seed = s.seed_given ? s.seed : std::random_device{}();
  so.validate();
  Sampler sampler(so, engine.vocab_size());
  KVCache cache = engine.new_cache(static_cast<int64_t>(prompt.size()) + max_tokens);
  const TokenId eos = tok.eos_id();
  std::vector<std::pair<float, TokenId>> scratch;

  std::string& text = res.text;
  size_t released = 0;  // text[0, released) has been handed to on_step
  bool stop_hit = false;
  std::span<const float> logits = engine.append(cache, prompt);
  for (int64_t i = 0; i < max_tokens; ++i) {
    const TokenId t = sampler.sample(logits.data());
    if (t == eos && eos >= 0 && !s.ignore_eos) {
      res.finish = FinishReason::stop;
      break;
    }
    TokenLogprob info = position_logprobs(logits.data(), engine.vocab_size(), t, top_k, scratch);
    res.tokens.push_back(info);
    const size_t before = text.size();
    text += tok.token_text(t);
    size_t release_to = text.size();
    if (apply_stop_strings(text, before, s.stop, release_to)) stop_hit = true;
    const size_t from = released;
    released = std::max(released, release_to);
    const bool keep_going =
        !on_step || on_step(info, std::string_view(text).substr(from, release_to > from ? release_to - from : 0));
    if (stop_hit) {
      res.finish = FinishReason::stop;
      break;
    }
    if (!keep_going) {
      res.finish = FinishReason::cancelled;
      return res;
    }
    if (i + 1 == max_tokens) break;
    logits = engine.append(cache, {&t, 1});
  }
  if (on_step && released < text.size()) on_step(TokenLogprob{}, std::string_view(text).substr(released));
  return res;
}

}  // namespace qeval::serve
