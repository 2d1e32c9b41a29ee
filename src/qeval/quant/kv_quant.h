#pragma once
// KV-cache fake-quantization through the engine's kv hook: K (after RoPE / QK-norm) and V are
// quantized-dequantized just before they are written to the cache, so every attention read —
// prefill included (the engine writes the new positions first and then attends over the cache) —
// sees the quantized values, exactly as a quantized cache would return them.
//
// Groups never cross heads: the [tokens, kv_dim] block is viewed as [tokens * n_kv_heads,
// head_dim] and each (token, head) row is quantized with the configured quantizer:
//   PerToken (spec default "kvN")  one scale and zero per token and head (group = head_dim)
//   PerGroup "kvNgG"               groups of G along head_dim inside each head (G > head_dim: head_dim)
// PerTensor is refused (it would need calibrated ranges). The spec default is ASYMMETRIC
// (S = (max - min) / (2^N - 1), integer zero-point; KIVI-style), "kvN-sym" a symmetric grid;
// clipping, rounding and perturbation follow the config.
// Each row depends only on its own values, so a sequence gets the same cache whether it is
// prefilled at once or decoded token by token.
//
// Stored cache. Where a cache can hold the grid exactly — 8 or 4 bits, per (token, head) or groups
// inside a head, symmetric or asymmetric, deterministic rounding (nearest, floor, ceil), no
// perturbation of scale or zero — stored_kv_format() gives the engine a KvFormat (kv_cache.h) whose
// quantizer is this same quantizer (params_from_range + quantize_code per group), and the engine
// keeps codes, float32 scales and integer zeros instead of floats. Dequantizing gives the values
// these hooks would have written, bit for bit, so results are identical and only memory changes.
// Other grids (stochastic rounding, whose codes depend on an element index that differs between
// prefill and decode; perturbed parameters; kv3, kv2, ...) keep the hooks over a float cache.
#include <cstdint>
#include <optional>
#include <string>

#include "qeval/engine/hooks.h"
#include "qeval/engine/kv_cache.h"
#include "qeval/quant/quantizer.h"
#include "qeval/quant/spec.h"

namespace qeval::quant {

struct KvQuantOptions {
  bool keys = true;    // quantize K
  bool values = true;  // quantize V
};

class KvQuantHooks final : public ForwardHooks {
 public:
  // head_dim: the model's head dimension (kv_dim must be a multiple of it).
  KvQuantHooks(QuantizerConfig cfg, int64_t head_dim, KvQuantOptions opts = {});
  static KvQuantHooks from_spec(const QuantSpec& spec, int64_t head_dim, KvQuantOptions opts = {});

  void kv(int layer, float* k, float* v, int64_t tokens, int64_t kv_dim) override;
  const QuantizerConfig& config() const { return cfg_; }  // as applied to [tokens*heads, head_dim]
  // Storage bits per cached element (codes + per-group scale of scale_bits and asym zero).
  double bits_per_element(int scale_bits = 16) const;

 private:
  QuantizerConfig cfg_;
  int64_t head_dim_;
  KvQuantOptions opts_;
};

// The stored-cache format for this KV grid (normalized as KvQuantHooks does), or nullopt when a
// stored cache cannot reproduce it (see above).
std::optional<KvFormat> stored_kv_format(const QuantizerConfig& cfg, int64_t head_dim);
// What holds the cache, for logs and reports: "kv4 (stored: q4 asym per token+head)",
// "kv4g32 (stored: q4 sym g32)", "kv3 (simulated: float cache)".
std::string kv_storage_description(const QuantizerConfig& cfg, int64_t head_dim);

}  // namespace qeval::quant
