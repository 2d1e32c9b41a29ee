#pragma once
// Text generation with a KV cache: prefill the prompt in one pass, then one token per step.
// Tokens are streamed through a callback with steady_clock timestamps (TTFT / TPOT).
#include <chrono>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/engine/sampling.h"
#include "qeval/tokenizer/tokenizer.h"

namespace qeval {

struct GenerationOptions {
  int64_t max_tokens = 128;
  SamplingOptions sampling;
  std::vector<std::string> stop;  // stop strings: generation ends when the text contains one
  bool stop_at_eos = true;
  void validate() const;
};

using Clock = std::chrono::steady_clock;

struct TokenEvent {
  TokenId token = -1;        // -1 for the final event that releases held-back text
  int64_t index = 0;          // 0 for the first generated token
  std::string_view text;      // newly released text (may be empty: held back while it could
                              // be the start of a stop string; a stop string is never released)
  Clock::time_point time;     // when the token was sampled
};
// Return false to stop generating.
using TokenCallback = std::function<bool(const TokenEvent&)>;

enum class StopReason { Length, Eos, StopString, Callback, Context };
std::string_view stop_reason_name(StopReason r);

// Stop strings on a growing text: `text` has just grown from `before` bytes. When a stop string
// now occurs (a new match can only start within the longest stop string's length before the new
// part), cuts `text` there and returns true. `release_to` is set to how much of `text` can be
// shown now: all of it, less a tail that could be the beginning of a stop string.
bool apply_stop_strings(std::string& text, size_t before, const std::vector<std::string>& stop, size_t& release_to);

struct GenerationResult {
  std::vector<TokenId> tokens;   // generated ids (a stop string's tokens included, EOS excluded)
  std::string text;              // generated text, cut before a stop string
  StopReason stop_reason = StopReason::Length;
  int64_t prompt_tokens = 0;
  Clock::time_point start, first_token, end;  // start: before prefill
  std::vector<Clock::time_point> token_times;
  double prompt_seconds() const;     // start -> first token (prefill + first sample)
  double decode_seconds() const;     // first token -> end
  double prompt_tokens_per_second() const;
  double decode_tokens_per_second() const;  // (generated - 1) / decode_seconds
};

// Throws qeval::Error for an empty prompt, a prompt that leaves no room in the context,
// invalid token ids or bad options. `tokenizer` may be null when no stop strings are given
// (the text fields stay empty then).
GenerationResult generate(Engine& engine, const Tokenizer* tokenizer, std::span<const TokenId> prompt,
                          const GenerationOptions& options, const TokenCallback& on_token = {});

}  // namespace qeval
