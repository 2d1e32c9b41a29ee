#include "qeval/quant/kv_quant.h"

#include <span>
#include <string>

#include "qeval/util/error.h"

namespace qeval::quant {

KvQuantHooks::KvQuantHooks(QuantizerConfig cfg, int64_t head_dim, KvQuantOptions opts)
    : cfg_(cfg), head_dim_(head_dim), opts_(opts) {
  cfg_.validate();
  if (head_dim_ <= 0) throw Error("kv quantization: head_dim must be positive");
  if (cfg_.granularity == Granularity::PerTensor)
    throw Error("kv quantization: per-tensor granularity needs calibrated ranges; use per-token or groups");
  if (cfg_.granularity == Granularity::PerChannel) cfg_.granularity = Granularity::PerToken;
  if (cfg_.granularity == Granularity::PerGroup && cfg_.group_size >= head_dim_) {
    cfg_.granularity = Granularity::PerToken;
    cfg_.group_size = 0;
  }
}

KvQuantHooks KvQuantHooks::from_spec(const QuantSpec& spec, int64_t head_dim, KvQuantOptions opts) {
  if (!spec.kv) throw Error("kv quantization: spec '" + spec.str() + "' does not quantize the KV cache");
  return KvQuantHooks(*spec.kv, head_dim, opts);
}

void KvQuantHooks::kv(int /*layer*/, float* k, float* v, int64_t tokens, int64_t kv_dim) {
  if (kv_dim % head_dim_ != 0)
    throw Error("kv quantization: kv_dim " + std::to_string(kv_dim) + " is not a multiple of head_dim " +
                std::to_string(head_dim_));
  const int64_t rows = tokens * (kv_dim / head_dim_);
  const auto n = static_cast<size_t>(tokens * kv_dim);
  if (opts_.keys) fake_quantize_inplace(cfg_, std::span<float>(k, n), rows, head_dim_);
  if (opts_.values) fake_quantize_inplace(cfg_, std::span<float>(v, n), rows, head_dim_);
}

double KvQuantHooks::bits_per_element(int scale_bits) const { return effective_bits(cfg_, 1, head_dim_, scale_bits); }

}  // namespace qeval::quant
