#include "qeval/engine/sampling.h"

#include <algorithm>
#include <cmath>

#include "qeval/util/error.h"

namespace qeval {

void SamplingOptions::validate() const {
  if (!std::isfinite(temperature) || temperature < 0) throw Error("--temp must be a finite number >= 0");
  if (top_k < 0) throw Error("--top-k must be >= 0");
  if (!(top_p > 0.0f && top_p <= 1.0f)) throw Error("--top-p must be in (0, 1]");
}

TokenId argmax(const float* logits, int64_t n) {
  return static_cast<TokenId>(std::max_element(logits, logits + n) - logits);
}

Sampler::Sampler(const SamplingOptions& opts, int64_t vocab_size) : opts_(opts), vocab_(vocab_size), state_(opts.seed) {
  opts_.validate();
  cand_.reserve(static_cast<size_t>(vocab_size));
}

double Sampler::next_uniform() {
  state_ += 0x9E3779B97F4A7C15ull;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

TokenId Sampler::sample(const float* logits) {
  if (opts_.temperature <= 0.0f) return argmax(logits, vocab_);
  cand_.clear();
  const float inv_t = 1.0f / opts_.temperature;
  for (int64_t i = 0; i < vocab_; ++i) cand_.emplace_back(logits[i] * inv_t, static_cast<int32_t>(i));
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t n = cand_.size();
  if (opts_.top_k > 0 && static_cast<size_t>(opts_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + opts_.top_k, cand_.end(), by_logit);
    n = static_cast<size_t>(opts_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Softmax over the kept candidates (sorted, largest first).
  const float mx = cand_[0].first;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    cand_[i].first = std::exp(cand_[i].first - mx);
    sum += cand_[i].first;
  }
  if (opts_.top_p < 1.0f) {
    double cum = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cum += cand_[i].first / sum;
      if (cum >= opts_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    sum = 0;
    for (size_t i = 0; i < n; ++i) sum += cand_[i].first;
  }
  const double u = next_uniform() * sum;
  double acc = 0;
  for (size_t i = 0; i < n; ++i) {
    acc += cand_[i].first;
    if (u < acc) return cand_[i].second;
  }
  return cand_[n - 1].second;
}

}  // namespace qeval
