#pragma once
// RTN: round-to-nearest weight quantization. Every weight is rounded independently on its
// group's grid (quantizer.h); no calibration data. The baseline every other method is compared
// against, and the last step of transform-only methods (AWQ / SmoothQuant scaling, then RTN).
#include <cstdint>
#include <span>

#include "qeval/io/tensor.h"
#include "qeval/quant/quantizer.h"

namespace qeval::quant {

// w: [rows = out_features, cols = in_features], row-major. Granularity must be per-tensor,
// per-channel or per-group (per-token is an activation granularity).
QuantizedMatrix rtn_quantize(const QuantizerConfig& cfg, std::span<const float> w, int64_t rows, int64_t cols);
// A 2-D weight tensor of any dtype QEval can read (decoded to float first).
QuantizedMatrix rtn_quantize(const QuantizerConfig& cfg, const Tensor& weight);

// Throws qeval::Error when cfg cannot quantize a weight matrix (shared with GPTQ).
void check_weight_config(const QuantizerConfig& cfg, std::string_view method);

}  // namespace qeval::quant
