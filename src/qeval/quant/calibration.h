#pragma once
// Calibration data for post-training quantization and the statistics collected from it.
//
// SAMPLES: the calibration text is tokenized ONCE (the tokenizer's default special tokens, i.e.
// one BOS at the very start for llama vocabularies); N windows of L consecutive tokens start at
// offsets drawn uniformly from [0, n_tokens - L] by a splitmix64 stream seeded with `seed`
// (portable: no std::uniform_int_distribution), so the same text + N + L + seed give the same
// samples on every platform. L is capped by the model's context; a text shorter than L tokens
// is an error. Defaults 128 x 512 (the GPTQ / AWQ papers' setup).
//
// OVERLAP CHECK (calibration vs evaluation text): both texts are cut into every 64-byte shingle
// (each byte offset; the calibration side is the decoded text of the sampled windows); a
// calibration shingle that also occurs in the evaluation text counts as shared. A shared
// fraction >= 1% warns (qeval::warn): a window copied from the evaluation set shows up as
// ~100%, while independent natural-language texts share far below 1% of their 64-byte
// substrings (boilerplate lines at most).
//
// COLLECTION: CalibrationCollector (a ForwardHooks) records, per selected LinearId, the input
// channels' max |x| and mean |x| over all tokens, and optionally H = 2/n X^T X (GPTQ; AWQ and
// clipping use it as the Gram matrix of the inputs).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/quant/gptq.h"
#include "qeval/tokenizer/tokenizer.h"

namespace qeval::quant {

struct CalibrationOptions {
  int64_t samples = 128;
  int64_t seqlen = 512;
  uint64_t seed = 0;
};

struct Calibration {
  std::vector<std::vector<TokenId>> samples;  // each seqlen tokens
  std::vector<int64_t> offsets;               // token offset of each sample in the text
  int64_t seqlen = 0;
  uint64_t seed = 0;
  int64_t text_tokens = 0;
  std::string source;  // file name (for reports)
  int64_t tokens() const { return static_cast<int64_t>(samples.size()) * seqlen; }
};

// max_context: the model's context (0 = no cap). Throws qeval::Error on bad options / short text.
Calibration make_calibration(const Tokenizer& tok, std::string_view text, const CalibrationOptions& opts,
                             int64_t max_context = 0);
Calibration load_calibration(const std::string& path, const Tokenizer& tok, const CalibrationOptions& opts,
                             int64_t max_context = 0);

struct OverlapReport {
  int64_t calib_shingles = 0;   // distinct 64-byte shingles of the calibration windows
  int64_t shared_shingles = 0;  // of those, present in the evaluation text
  double fraction = 0.0;        // shared / calib
  bool warned = false;
};
inline constexpr size_t kShingleBytes = 64;
inline constexpr double kOverlapWarnFraction = 0.01;
// Warns through qeval::warn when fraction >= kOverlapWarnFraction (and warn is true).
OverlapReport check_overlap(const Calibration& calib, const Tokenizer& tok, std::string_view eval_text,
                            bool warn = true);

// Per-linear input statistics.
struct LinearStats {
  int64_t in_features = 0;
  int64_t tokens = 0;
  std::vector<float> absmax;    // per input channel
  std::vector<double> sum_abs;  // per input channel
  std::unique_ptr<HessianAccumulator> hessian;  // when collected
  std::vector<float> mean_abs() const;
};

class CalibrationCollector final : public ForwardHooks {
 public:
  // select: which linears to record (empty function = all); hessians: also accumulate H.
  explicit CalibrationCollector(bool hessians = false, std::function<bool(const LinearId&)> select = {});
  void linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) override;
  std::map<LinearId, LinearStats>& stats() { return stats_; }
  const LinearStats* find(const LinearId& id) const;

 private:
  bool hessians_;
  std::function<bool(const LinearId&)> select_;
  std::map<LinearId, LinearStats> stats_;
};

// Runs every calibration sample through the engine with `hooks` installed (no logits are
// computed; the previous hooks are restored afterwards). batch: samples per evaluate() call.
void run_calibration_forward(Engine& engine, const Calibration& calib, ForwardHooks& hooks, int64_t batch = 16);

}  // namespace qeval::quant
