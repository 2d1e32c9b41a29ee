#include "qeval/quant/rtn.h"

#include <string>

#include "qeval/util/error.h"

namespace qeval::quant {

void check_weight_config(const QuantizerConfig& cfg, std::string_view method) {
  cfg.validate();
  if (cfg.granularity == Granularity::PerToken)
    throw Error(std::string(method) + ": per-token granularity is for activations, not weights");
}

QuantizedMatrix rtn_quantize(const QuantizerConfig& cfg, std::span<const float> w, int64_t rows, int64_t cols) {
  check_weight_config(cfg, "rtn");
  return quantize(cfg, w, rows, cols);
}

QuantizedMatrix rtn_quantize(const QuantizerConfig& cfg, const Tensor& weight) {
  if (weight.shape.size() != 2)
    throw Error("rtn: weight '" + weight.name + "' has shape " + shape_string(weight.shape) + ", expected 2-D");
  const std::vector<float> w = weight.to_f32();
  return rtn_quantize(cfg, w, weight.rows(), weight.cols());
}

}  // namespace qeval::quant
