#pragma once
// Perplexity under three published conventions. The method is part of every figure: numbers
// from different methods are not comparable.
//
//  llamacpp  llama-perplexity: the whole text tokenized once with BOS; consecutive
//            non-overlapping windows of n_ctx tokens; each window's first token replaced by
//            BOS (when the vocabulary adds BOS); only the second half scored (logits at
//            n_ctx/2 .. n_ctx-2 predict tokens n_ctx/2+1 .. n_ctx-1); "PPL +/- err" with
//            llama.cpp's standard error: sqrt((mean(nll^2) - mean(nll)^2) / (N-1)) * PPL.
//  gptq      GPTQ / AWQ / SmoothQuant evaluation: text tokenized once (the tokenizer's
//            default special tokens, i.e. one BOS at the very start for llama vocabularies),
//            floor(N / n_ctx) non-overlapping windows, no BOS inserted; every token of a window
//            with context in the window is scored (n_ctx - 1 per window); PPL = exp(mean NLL).
//  rolling   lm-evaluation-harness loglikelihood_rolling, per document. Documents are the
//            text's paragraphs: maximal runs of non-blank lines, separated by one or more blank
//            lines (each document keeps its inner newlines, without the trailing one). Each
//            document is tokenized without special tokens and covered by disjoint windows of
//            at most n_ctx predicted tokens (the first window conditioned on BOS, or EOS when
//            the vocabulary has no BOS; later windows on the n_ctx tokens before them).
//            Reports token, word (whitespace-separated words) and byte (UTF-8) perplexity and
//            bits per byte, lm-eval style: exp(-sum loglik / count).
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "qeval/engine/engine.h"
#include "qeval/tokenizer/tokenizer.h"

namespace qeval {

enum class PerplexityMethod { LlamaCpp, GPTQ, Rolling };
std::string_view perplexity_method_name(PerplexityMethod m);  // "llamacpp", "gptq", "rolling"
PerplexityMethod parse_perplexity_method(std::string_view s);   // throws qeval::Error

struct PerplexityOptions {
  PerplexityMethod method = PerplexityMethod::LlamaCpp;
  int64_t n_ctx = 512;
  int64_t max_chunks = -1;  // windows (llamacpp, gptq) or documents (rolling); -1 = all
  int64_t batch = 16;       // windows evaluated together
  // Called after every window (llamacpp, gptq) or document (rolling) with the running figure.
  std::function<void(int64_t done, int64_t total, double running_ppl)> progress;
};

struct PerplexityResult {
  PerplexityMethod method = PerplexityMethod::LlamaCpp;
  int64_t n_ctx = 0;
  int64_t chunks = 0;          // windows (llamacpp, gptq) or documents (rolling)
  int64_t text_tokens = 0;     // tokens of the whole text (rolling: of all documents used)
  int64_t scored_tokens = 0;
  double nll_sum = 0;          // sum of -log p over scored tokens
  double ppl = 0;              // token perplexity
  double ppl_err = 0;          // llamacpp only
  // rolling only
  int64_t words = 0, bytes = 0;
  double word_ppl = 0, byte_ppl = 0, bits_per_byte = 0;
};

PerplexityResult perplexity(Engine& engine, const Tokenizer& tokenizer, std::string_view text,
                            const PerplexityOptions& options);

}  // namespace qeval
