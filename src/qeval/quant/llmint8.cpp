#include "qeval/quant/llmint8.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "qeval/quant/quantizer.h"
#include "qeval/util/error.h"

namespace qeval::quant {

namespace {
QuantizerConfig absmax_config(int bits, Granularity g) {
  QuantizerConfig c;
  c.bits = bits;
  c.granularity = g;
  c.symmetric = true;
  c.validate();
  return c;
}
}  // namespace

std::vector<int64_t> llmint8_outlier_columns(std::span<const float> input_absmax, float threshold) {
  std::vector<int64_t> cols;
  for (size_t i = 0; i < input_absmax.size(); ++i)
    if (input_absmax[i] >= threshold) cols.push_back(static_cast<int64_t>(i));
  return cols;
}

LlmInt8Result llmint8_quantize(const float* w, int64_t out, int64_t in, std::span<const float> input_absmax,
                               float threshold, int bits) {
  if (out <= 0 || in <= 0) throw Error("llmint8: empty weight matrix");
  if (static_cast<int64_t>(input_absmax.size()) != in)
    throw Error("llmint8: " + std::to_string(input_absmax.size()) + " input magnitudes for " + std::to_string(in) +
                " input features");
  const QuantizerConfig cfg = absmax_config(bits, Granularity::PerChannel);
  LlmInt8Result r;
  r.outlier_columns = llmint8_outlier_columns(input_absmax, threshold);
  std::vector<uint8_t> is_out(static_cast<size_t>(in), 0);
  for (int64_t c : r.outlier_columns) is_out[static_cast<size_t>(c)] = 1;
  const int64_t k = static_cast<int64_t>(r.outlier_columns.size()), keep = in - k;
  r.weights.assign(w, w + out * in);
  QuantizedMatrix& qm = r.quantized;
  qm.config = cfg;
  qm.rows = out;
  qm.cols = in;
  // Codes of the outlier columns hold the zero-point (value 0); their CSR values replace them.
  qm.codes.assign(static_cast<size_t>(out * in), static_cast<uint8_t>(1 << (bits - 1)));
  qm.scales.assign(static_cast<size_t>(out), 1.0f);
  qm.zeros.assign(static_cast<size_t>(out), static_cast<float>(1 << (bits - 1)));
  if (keep > 0) {
    // Gather the regular columns, quantize per row (absmax over those columns only), scatter back.
    std::vector<float> reg(static_cast<size_t>(out * keep));
    for (int64_t o = 0; o < out; ++o) {
      int64_t j = 0;
      for (int64_t c = 0; c < in; ++c)
        if (!is_out[static_cast<size_t>(c)]) reg[static_cast<size_t>(o * keep + j++)] = w[o * in + c];
    }
    const QuantizedMatrix rq = quantize(cfg, reg, out, keep);
    const std::vector<float> deq = rq.dequantize();
    qm.scales = rq.scales;
    qm.zeros = rq.zeros;
    for (int64_t o = 0; o < out; ++o) {
      int64_t j = 0;
      for (int64_t c = 0; c < in; ++c)
        if (!is_out[static_cast<size_t>(c)]) {
          const auto src = static_cast<size_t>(o * keep + j++), dst = static_cast<size_t>(o * in + c);
          r.weights[dst] = deq[src];
          qm.codes[dst] = rq.codes[src];
        }
    }
  }
  if (k > 0) {
    qm.outlier_row_ptr.resize(static_cast<size_t>(out + 1));
    for (int64_t o = 0; o < out; ++o) {
      qm.outlier_row_ptr[static_cast<size_t>(o)] = o * k;
      for (int64_t c : r.outlier_columns) {
        qm.outlier_cols.push_back(static_cast<int32_t>(c));
        qm.outlier_values.push_back(w[o * in + c]);
      }
    }
    qm.outlier_row_ptr[static_cast<size_t>(out)] = out * k;
  }
  const double n = static_cast<double>(out) * static_cast<double>(in);
  r.effective_bits = (static_cast<double>(out * keep) * bits + static_cast<double>(out) * 16.0 +
                      static_cast<double>(out * k) * 16.0 + static_cast<double>(k) * 32.0) / n;
  return r;
}

std::map<LinearId, std::vector<int64_t>> llmint8_outliers(const std::map<LinearId, InputRange>& ranges, float threshold) {
  std::map<LinearId, std::vector<int64_t>> m;
  for (const auto& [id, r] : ranges) m[id] = llmint8_outlier_columns(r.feature_absmax, threshold);
  return m;
}

LlmInt8Hooks::LlmInt8Hooks(std::map<LinearId, std::vector<int64_t>> outliers, int bits)
    : outliers_(std::move(outliers)), bits_(bits) {
  absmax_config(bits_, Granularity::PerToken);  // validates bits
  for (const auto& [id, cols] : outliers_) {
    auto& m = masks_[id];
    const int64_t n = cols.empty() ? 0 : *std::max_element(cols.begin(), cols.end()) + 1;
    m.assign(static_cast<size_t>(n), 0);
    for (int64_t c : cols) {
      if (c < 0) throw Error("llmint8: negative outlier column for " + id.name());
      m[static_cast<size_t>(c)] = 1;
    }
  }
}

void LlmInt8Hooks::linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) {
  auto it = masks_.find(id);
  if (it == masks_.end()) return;
  const std::vector<uint8_t>& mask = it->second;
  if (static_cast<int64_t>(mask.size()) > cols) throw Error("llmint8: outlier column beyond the input of " + id.name());
  const auto is_out = [&](int64_t c) { return c < static_cast<int64_t>(mask.size()) && mask[static_cast<size_t>(c)]; };
  const QuantizerConfig cfg = absmax_config(bits_, Granularity::PerToken);
  scratch_.resize(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    int64_t j = 0;
    for (int64_t c = 0; c < cols; ++c)
      if (!is_out(c)) scratch_[static_cast<size_t>(j++)] = row[c];
    if (j == 0) continue;
    fake_quantize_inplace(cfg, std::span<float>(scratch_.data(), static_cast<size_t>(j)), 1, j);
    j = 0;
    for (int64_t c = 0; c < cols; ++c)
      if (!is_out(c)) row[c] = scratch_[static_cast<size_t>(j++)];
  }
}

}  // namespace qeval::quant
