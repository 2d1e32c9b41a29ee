#pragma once
// Next-token selection. temperature <= 0: greedy (argmax, lowest id on ties). Otherwise, in
// HF transformers' order: logits / temperature, keep the top_k largest (0 = all), keep the
// smallest set whose probability reaches top_p (1 = all), renormalize, draw. The random
// stream is splitmix64 from `seed`, so a seed gives the same tokens on every platform.
// Allocates only at construction.
#include <cstdint>
#include <string>
#include <vector>

#include "qeval/tokenizer/tokenizer.h"

namespace qeval {

struct SamplingOptions {
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  // Throws qeval::Error naming the bad option.
  void validate() const;
};

class Sampler {
 public:
  Sampler(const SamplingOptions& opts, int64_t vocab_size);
  TokenId sample(const float* logits);
  const SamplingOptions& options() const { return opts_; }
  void reseed(uint64_t seed) { state_ = seed; }
  double next_uniform();  // [0, 1)

 private:
  SamplingOptions opts_;
  int64_t vocab_;
  uint64_t state_;
  std::vector<std::pair<float, int32_t>> cand_;
};

TokenId argmax(const float* logits, int64_t n);

}  // namespace qeval
