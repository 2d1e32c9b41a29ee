#pragma once
// Activation fake-quantization on the input of every linear layer, through engine hooks.
//
// ActivationQuantHooks quantizes-dequantizes the [rows = tokens, cols = in_features] input of
// each linear layer in place with the QuantizerConfig of QuantSpec::config(Target::Activations):
//   PerToken  (default) dynamic: one scale per token row, computed from that row at run time
//   PerGroup  dynamic: groups of group_size along the features of each token
//   PerTensor dynamic: one scale for the whole input matrix of that call (depends on the batch)
//   static    (QuantSpec::static_activations): one scale per linear layer, computed once from the
//             calibration range (min/max over all calibration tokens) by ActivationRangeObserver,
//             then frozen; values outside the range are clamped to the grid's ends.
// Per-token quantization of a row does not depend on other rows, so prefill and token-by-token
// decode see identical activations (except with stochastic rounding, whose element index is the
// position inside the call).
//
// CompositeHooks chains several ForwardHooks: each callback goes to every member in order, so
// later members see what earlier ones left in the buffer (e.g. SmoothQuant scaling, then A8).
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/engine/hooks.h"
#include "qeval/quant/quantizer.h"
#include "qeval/quant/spec.h"

namespace qeval::quant {

// Calls every member, in order. Members are not owned; nullptr members are skipped.
class CompositeHooks final : public ForwardHooks {
 public:
  CompositeHooks() = default;
  explicit CompositeHooks(std::vector<ForwardHooks*> members) : members_(std::move(members)) {}
  void add(ForwardHooks* h) { members_.push_back(h); }
  const std::vector<ForwardHooks*>& members() const { return members_; }
  void linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) override;
  void linear_output(const LinearId& id, float* y, int64_t rows, int64_t cols) override;
  void kv(int layer, float* k, float* v, int64_t tokens, int64_t kv_dim) override;

 private:
  std::vector<ForwardHooks*> members_;
};

// Observes the input of every linear layer: overall min / max, and per input feature the
// maximum magnitude (what LLM.int8() thresholds). Does not modify anything.
struct InputRange {
  float min = 0.0f;  // over all observed tokens and features (starts at +inf / -inf internally)
  float max = 0.0f;
  int64_t tokens = 0;
  std::vector<float> feature_absmax;  // in_features
};
class ActivationRangeObserver final : public ForwardHooks {
 public:
  void linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) override;
  const std::map<LinearId, InputRange>& ranges() const { return ranges_; }
  void clear() { ranges_.clear(); }

 private:
  std::map<LinearId, InputRange> ranges_;
};

// Runs the engine over calibration sequences (one forward pass each, logits at every position so
// the output projection sees every token too) with
// `observer` installed (chained after the engine's current hooks, which are restored).
void run_calibration(Engine& engine, ForwardHooks& observer, const std::vector<std::vector<TokenId>>& sequences);

struct ActQuantOptions {
  bool quantize_output_layer = true;  // the lm head's input too
  std::set<LinearId> skip;            // layers left in full precision
};

class ActivationQuantHooks final : public ForwardHooks {
 public:
  // cfg: the activation quantizer (bits 2..8; PerToken / PerGroup / PerTensor). static_scales:
  // use calibrated per-layer parameters (set_static_ranges / from ActivationRangeObserver)
  // instead of dynamic ones; cfg's granularity must then be PerTensor (or PerToken, treated the
  // same: one frozen scale per layer).
  explicit ActivationQuantHooks(QuantizerConfig cfg, bool static_scales = false, ActQuantOptions opts = {});
  // From a spec with activations (throws qeval::Error otherwise).
  static ActivationQuantHooks from_spec(const QuantSpec& spec, ActQuantOptions opts = {});

  // Freeze static parameters from observed ranges (per layer: params_from_range(min, max)).
  void set_static_ranges(const std::map<LinearId, InputRange>& ranges);
  void set_static_params(const LinearId& id, ScaleZero p) { static_params_[id] = p; }
  const std::map<LinearId, ScaleZero>& static_params() const { return static_params_; }
  bool is_static() const { return static_; }
  const QuantizerConfig& config() const { return cfg_; }

  void linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) override;

 private:
  QuantizerConfig cfg_;
  bool static_ = false;
  ActQuantOptions opts_;
  std::map<LinearId, ScaleZero> static_params_;
};

// Static calibration in one call: observe every linear input over `sequences`, then freeze.
void calibrate_static(Engine& engine, ActivationQuantHooks& hooks, const std::vector<std::vector<TokenId>>& sequences);

}  // namespace qeval::quant
