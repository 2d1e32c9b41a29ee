#pragma once
// Parsing and validation of OpenAI request bodies (/v1/completions, /v1/chat/completions).
// Every problem is an ApiError(400) naming the parameter; unknown fields are ignored, as
// OpenAI-compatible servers commonly do. Supported subset:
//   common: model, max_tokens, temperature (0 = greedy), top_p, top_k and ignore_eos
//           (extensions, as in vLLM and llama.cpp), seed, stop (string or list), stream,
//           stream_options.include_usage, n = 1 only; presence / frequency penalties only 0,
//           logit_bias only empty.
//   completions: prompt (string, list of strings, list of token ids, list of lists of ids),
//           logprobs (0..20), echo.
//   chat: messages [{role: system|user|assistant, content: string or [{type: text, text}]}],
//           max_completion_tokens; chat logprobs are not supported (400).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "qeval/tokenizer/tokenizer.h"

namespace qeval::serve {

constexpr int kMaxLogprobs = 20;
constexpr size_t kMaxStopStrings = 16;

struct SamplingParams {
  int64_t max_tokens = 16;    // completions default (OpenAI's); chat: -1 = up to the context
  float temperature = 1.0f;   // OpenAI's default; 0 = greedy
  float top_p = 1.0f;
  int top_k = 0;
  uint64_t seed = 0;          // random unless given
  bool seed_given = false;
  std::vector<std::string> stop;
  bool ignore_eos = false;    // keep generating after the end-of-sequence token
};

struct Prompt {
  std::string text;              // when given as text
  std::vector<TokenId> ids;      // when given as token ids
  bool is_ids = false;
};

struct CompletionRequest {
  std::string model;             // empty: not given
  std::vector<Prompt> prompts;   // one choice per prompt
  SamplingParams sampling;
  int logprobs = -1;             // -1: none; k >= 0: the sampled token plus the top k
  bool echo = false;
  bool stream = false;
  bool include_usage = false;
};

struct ChatMessage {
  std::string role;     // system, user, assistant
  std::string content;
};

struct ChatRequest {
  std::string model;
  std::vector<ChatMessage> messages;
  SamplingParams sampling;
  bool stream = false;
  bool include_usage = false;
};

// Throws ApiError(400) for malformed JSON or bad parameters.
nlohmann::json parse_json_body(const std::string& body);
CompletionRequest parse_completion_request(const nlohmann::json& body);
ChatRequest parse_chat_request(const nlohmann::json& body);

}  // namespace qeval::serve
