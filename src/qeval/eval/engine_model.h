#pragma once
// The task runner's LanguageModel over the inference engine, following lm-evaluation-harness's
// conventions (HFLM):
//  - loglikelihood: context encoded without special tokens (BOS prepended when the tokenizer adds
//    one; BOS, else EOS, when the context is empty); trailing spaces of the context move to the
//    continuation; continuation tokens = encode(context + continuation)[len(encode(context)):],
//    or encode(continuation) when that split does not line up with encode(context). Sequences
//    longer than the context are left-truncated to context_length + 1 tokens (the last token is
//    only a target).
//  - loglikelihood_rolling: lm-eval's rolling windows of context_length predicted tokens, the
//    first token predicted from BOS (else EOS); every token of the text is scored once.
//  - shared contexts: loglikelihood requests whose scored sequences have the same prefix (the
//    tokens before the first scored one: a multiple_choice doc's context, sent once per choice)
//    and at least two members are run through a KV cache: the prefix once, then each member's
//    continuation appended token by token from the prefix's cache (truncated back after each
//    member). Other requests go through Engine::score in batches. Both paths give the same
//    log-probabilities up to float summation order (tests: 1e-4).
//  - generate_until: greedy generation with `until` as stop strings, at most max_gen_toks
//    tokens; the prompt is left-truncated to leave room for them.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/eval/task/language_model.h"
#include "qeval/tokenizer/tokenizer.h"

namespace qeval::eval {

struct EngineModelOptions {
  size_t batch = 16;  // sequences per Engine::score call
  bool share_context = true;  // compute a prefix shared by several loglikelihood requests once
  // Called after each batch / generation: (units done, units total) of the current call (units:
  // requests; windows for loglikelihood_rolling).
  std::function<void(size_t done, size_t total)> progress;
};

class EngineLanguageModel : public task::LanguageModel {
 public:
  EngineLanguageModel(Engine& engine, const Tokenizer& tokenizer, EngineModelOptions options = {});

  std::vector<task::LoglikelihoodResult> loglikelihood(const std::vector<task::Request>& requests) override;
  std::vector<task::RollingResult> loglikelihood_rolling(const std::vector<task::Request>& requests) override;
  std::vector<std::string> generate_until(const std::vector<task::Request>& requests) override;

  // The scored sequence of a loglikelihood request (after truncation) and its first scored position.
  ScoreRequest loglikelihood_tokens(const std::string& context, const std::string& continuation) const;
  // The rolling windows of a text (each: whole sequence, first scored position).
  std::vector<ScoreRequest> rolling_windows(const std::string& text) const;

 private:
  TokenId prefix_token() const;
  std::vector<TokenId> encode(const std::string& text) const;
  // Scores requests that all share tokens[0 .. score_from) through one KV cache.
  std::vector<ScoreResult> score_shared_prefix(const std::vector<const ScoreRequest*>& members);
  std::vector<ScoreResult> score_batched(const std::vector<ScoreRequest>& reqs, size_t& done, size_t total);

  Engine& engine_;
  const Tokenizer& tok_;
  EngineModelOptions opts_;
  KVCache cache_;  // shared-prefix scoring, reused across groups
};

}  // namespace qeval::eval
