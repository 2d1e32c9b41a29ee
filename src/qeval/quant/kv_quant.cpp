#include "qeval/quant/kv_quant.h"

#include <limits>
#include <memory>
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

namespace {

// One group of a K / V row through the uniform quantizer: the range, parameters and codes of
// fake_quantize_inplace for a row-group, without allocating.
class GridKvQuantizer final : public KvGroupQuantizer {
 public:
  explicit GridKvQuantizer(QuantizerConfig cfg) : cfg_(cfg) {}
  KvGroupParams quantize(const float* x, int64_t n, uint8_t* codes) const override {
    float lo = std::numeric_limits<float>::infinity(), hi = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) {  // NaN-ignoring, as the quantizer's range
      if (x[i] < lo) lo = x[i];
      if (x[i] > hi) hi = x[i];
    }
    const ScaleZero p = params_from_range(cfg_, lo, hi);
    for (int64_t i = 0; i < n; ++i) codes[i] = quantize_code(cfg_, x[i], p, static_cast<uint64_t>(i));
    const ScaleZero stored = perturbed(cfg_, p);  // identity: perturbation is not storable
    return {stored.scale, stored.zero};
  }

 private:
  QuantizerConfig cfg_;
};

bool storable(const QuantizerConfig& cfg) {
  return (cfg.bits == 8 || cfg.bits == 4) && cfg.rounding != Rounding::Stochastic && cfg.scale_factor == 1.0 &&
         cfg.zero_factor == 1.0 && (cfg.granularity == Granularity::PerToken || cfg.granularity == Granularity::PerGroup);
}

}  // namespace

std::optional<KvFormat> stored_kv_format(const QuantizerConfig& cfg, int64_t head_dim) {
  const QuantizerConfig c = KvQuantHooks(cfg, head_dim).config();  // validated and normalized
  if (!storable(c)) return std::nullopt;
  KvFormat f;
  f.element = c.bits == 8 ? KvElement::Q8 : KvElement::Q4;
  f.head_dim = head_dim;
  f.group_size = c.granularity == Granularity::PerGroup ? c.group_size : 0;
  f.symmetric = c.symmetric;
  f.quantizer = std::make_shared<GridKvQuantizer>(c);
  return f;
}

std::string kv_storage_description(const QuantizerConfig& cfg, int64_t head_dim) {
  const QuantizerConfig c = KvQuantHooks(cfg, head_dim).config();
  std::string name = "kv" + std::to_string(c.bits);
  if (c.granularity == Granularity::PerGroup) name += "g" + std::to_string(c.group_size);
  if (auto f = stored_kv_format(cfg, head_dim)) return name + " (stored: " + f->name() + ")";
  std::string why;
  if (c.rounding == Rounding::Stochastic) why = "; stochastic rounding";
  else if (c.scale_factor != 1.0 || c.zero_factor != 1.0) why = "; perturbed scale/zero";
  return name + " (simulated: float cache" + why + ")";
}

}  // namespace qeval::quant
