#pragma once
// The model behind the server: weights, tokenizer, one Engine (optionally quantized in memory),
// and the per-token work requests need: prompt scoring with top-k alternatives (echo) and
// generation that reports each sampled token's log-probability.
//
// Threading: the Engine is not thread-safe, so every use of it goes through a Lease; leases
// are granted one at a time in arrival order (a ticket queue), so concurrent requests are
// served one after another, first come first served.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/io/model.h"
#include "qeval/serve/chat_template.h"
#include "qeval/serve/request.h"
#include "qeval/tokenizer/tokenizer.h"

namespace qeval::quant {
struct InMemoryQuantization;
}

namespace qeval::serve {

struct ServedModelOptions {
  std::string id;            // the name clients use ("model"); default: the file name without extension
  std::string spec;          // quantize in memory with this spec (quant/spec.h); empty: as loaded
  std::string calib;         // calibration text for the spec
  int threads = 0;           // engine threads (0: hardware concurrency)
  int64_t context = 0;       // 0: the model's context length
  std::string chat_format;   // force a chat format (chat_template.h); empty: from the model's metadata
};

struct TopLogprob {
  TokenId id = -1;
  double logprob = 0;
};

// One token with its log-probability under the model (natural log; NaN for a first prompt
// token, which nothing predicts) and, when asked, the top alternatives (most likely first).
struct TokenLogprob {
  TokenId id = -1;
  double logprob = 0;
  std::vector<TopLogprob> top;
};

enum class FinishReason { stop, length, cancelled };
std::string_view finish_reason_name(FinishReason r);

// Called for each generated token with the text it releases (possibly empty: text that could
// begin a stop string is held back) and, at the end, once with token.id == -1 for held-back
// text. Return false to stop generating.
using StepCallback = std::function<bool(const TokenLogprob& token, std::string_view text)>;

struct GenerationOutcome {
  std::vector<TokenLogprob> tokens;  // generated tokens (a stop string's tokens included, EOS excluded)
  std::string text;                  // cut before a stop string
  FinishReason finish = FinishReason::length;
};

class ServedModel {
 public:
  ServedModel(const std::string& model_path, const ServedModelOptions& options);
  ~ServedModel();

  const std::string& id() const { return id_; }
  const Tokenizer& tokenizer() const { return *tok_; }
  int64_t context_length() const { return engine_->context_length(); }
  ChatFormat chat_format() const { return chat_format_; }
  const std::string& description() const { return description_; }  // one line for the startup log

  // Prompt text to tokens: the tokenizer's special tokens (BOS) added, special-token text parsed.
  std::vector<TokenId> encode_prompt(const std::string& text) const;
  // What a request does with its prompt, which decides how long the prompt may be: generating
  // needs a free position after it (< context), scoring only feeds all but the last token
  // (<= context + 1), otherwise nothing is computed (<= context).
  enum class PromptUse { generate, score, none };
  // Throws ApiError(400) for invalid ids or a prompt that does not fit the context.
  void check_prompt(const std::vector<TokenId>& tokens, PromptUse use) const;

  class Lease {
   public:
    ~Lease();
    Lease(Lease&&) = delete;
    // Scores every token of `tokens` (index 0 gets NaN) with the top `top_k` alternatives.
    std::vector<TokenLogprob> score(const std::vector<TokenId>& tokens, int top_k);
    // Generates after `prompt`: max_tokens (< 0: up to the context), sampling, stop strings;
    // top_k >= 0 fills each token's alternatives. Stops early when on_step returns false.
    GenerationOutcome generate(const std::vector<TokenId>& prompt, const SamplingParams& sampling, int top_k,
                               const StepCallback& on_step);

   private:
    friend class ServedModel;
    Lease(ServedModel& m, uint64_t ticket) : m_(m), ticket_(ticket) {}
    ServedModel& m_;
    uint64_t ticket_;
  };
  // Waits for exclusive use of the engine (first come, first served).
  std::unique_ptr<Lease> acquire();

 private:
  void release(uint64_t ticket);

  std::string id_, description_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<quant::InMemoryQuantization> quantized_;
  ChatFormat chat_format_ = ChatFormat::plain;

  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_ticket_ = 0, serving_ = 0;
};

// A token as OpenAI's logprobs show it: its text when that is valid UTF-8, else
// "bytes:\xNN..." (OpenAI's convention for partial UTF-8 sequences).
std::string token_display(const Tokenizer& tok, TokenId id);

}  // namespace qeval::serve
