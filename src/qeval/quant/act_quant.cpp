#include "qeval/quant/act_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>

#include "qeval/util/error.h"

namespace qeval::quant {

void CompositeHooks::linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) {
  for (ForwardHooks* h : members_)
    if (h) h->linear_input(id, x, rows, cols);
}
void CompositeHooks::linear_output(const LinearId& id, float* y, int64_t rows, int64_t cols) {
  for (ForwardHooks* h : members_)
    if (h) h->linear_output(id, y, rows, cols);
}
void CompositeHooks::kv(int layer, float* k, float* v, int64_t tokens, int64_t kv_dim) {
  for (ForwardHooks* h : members_)
    if (h) h->kv(layer, k, v, tokens, kv_dim);
}

void ActivationRangeObserver::linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) {
  auto [it, fresh] = ranges_.try_emplace(id);
  InputRange& r = it->second;
  if (fresh) {
    r.min = std::numeric_limits<float>::infinity();
    r.max = -std::numeric_limits<float>::infinity();
    r.feature_absmax.assign(static_cast<size_t>(cols), 0.0f);
  }
  if (static_cast<int64_t>(r.feature_absmax.size()) != cols)
    throw Error("activation observer: layer " + id.name() + " changed width");
  for (int64_t t = 0; t < rows; ++t) {
    const float* row = x + t * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = row[c];
      if (std::isnan(v)) continue;
      r.min = std::min(r.min, v);
      r.max = std::max(r.max, v);
      float& a = r.feature_absmax[static_cast<size_t>(c)];
      a = std::max(a, std::fabs(v));
    }
  }
  r.tokens += rows;
}

void run_calibration(Engine& engine, ForwardHooks& observer, const std::vector<std::vector<TokenId>>& sequences) {
  ForwardHooks* prev = engine.hooks();
  CompositeHooks chain({prev, &observer});
  engine.set_hooks(&chain);
  try {
    std::vector<SequenceView> views;
    views.reserve(sequences.size());
    for (const auto& s : sequences)
      if (!s.empty()) views.push_back({std::span<const TokenId>(s), 0});  // logits everywhere: the lm head sees every token
    engine.evaluate(views, [](size_t, int64_t, const float*) {});
  } catch (...) {
    engine.set_hooks(prev);
    throw;
  }
  engine.set_hooks(prev);
}

ActivationQuantHooks::ActivationQuantHooks(QuantizerConfig cfg, bool static_scales, ActQuantOptions opts)
    : cfg_(cfg), static_(static_scales), opts_(std::move(opts)) {
  cfg_.validate();
  if (static_ && cfg_.granularity == Granularity::PerGroup)
    throw Error("activation quantization: static scales need per-tensor granularity, not groups");
  if (static_) cfg_.granularity = Granularity::PerTensor;
}

ActivationQuantHooks ActivationQuantHooks::from_spec(const QuantSpec& spec, ActQuantOptions opts) {
  if (!spec.activations) throw Error("activation quantization: spec '" + spec.str() + "' does not quantize activations");
  return ActivationQuantHooks(*spec.activations, spec.static_activations, std::move(opts));
}

void ActivationQuantHooks::set_static_ranges(const std::map<LinearId, InputRange>& ranges) {
  for (const auto& [id, r] : ranges) {
    const float lo = std::isfinite(r.min) ? r.min : 0.0f, hi = std::isfinite(r.max) ? r.max : 0.0f;
    static_params_[id] = params_from_range(cfg_, lo, hi);
  }
}

void ActivationQuantHooks::linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) {
  if (!opts_.quantize_output_layer && id.role == LinearRole::Output) return;
  if (!opts_.skip.empty() && opts_.skip.contains(id)) return;
  const auto n = static_cast<size_t>(rows * cols);
  if (!static_) {
    fake_quantize_inplace(cfg_, std::span<float>(x, n), rows, cols);
    return;
  }
  auto it = static_params_.find(id);
  if (it == static_params_.end())
    throw Error("activation quantization: no calibrated static scale for " + id.name() + " (run calibrate_static)");
  const ScaleZero p = it->second, stored = perturbed(cfg_, p);
  for (size_t i = 0; i < n; ++i) x[i] = dequantize_code(quantize_code(cfg_, x[i], p, i), stored);
}

void calibrate_static(Engine& engine, ActivationQuantHooks& hooks, const std::vector<std::vector<TokenId>>& sequences) {
  ActivationRangeObserver obs;
  run_calibration(engine, obs, sequences);
  hooks.set_static_ranges(obs.ranges());
}

}  // namespace qeval::quant
