#include "qeval/quant/smoothquant.h"

#include <cmath>

#include "qeval/util/error.h"

namespace qeval::quant {

std::vector<float> smoothquant_scales(std::span<const float> act_absmax, const std::vector<std::span<const float>>& weights,
                                      int64_t in, double alpha) {
  if (static_cast<int64_t>(act_absmax.size()) != in) throw Error("smoothquant: activation statistics do not match the weights");
  if (!(alpha >= 0.0 && alpha <= 1.0)) throw Error("smoothquant: alpha must be in [0, 1]");
  std::vector<float> wmax(static_cast<size_t>(in), 0.0f);
  for (const auto& w : weights) {
    if (w.size() % static_cast<size_t>(in) != 0) throw Error("smoothquant: weight width does not match");
    const int64_t rows = static_cast<int64_t>(w.size()) / in;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < in; ++j)
        wmax[static_cast<size_t>(j)] = std::max(wmax[static_cast<size_t>(j)], std::fabs(w[static_cast<size_t>(r * in + j)]));
  }
  std::vector<float> s(static_cast<size_t>(in), 1.0f);
  for (size_t j = 0; j < s.size(); ++j) {
    const double a = act_absmax[j], m = wmax[j];
    if (a > 0.0 && m > 0.0) {
      const double v = std::pow(a, alpha) / std::pow(m, 1.0 - alpha);
      if (std::isfinite(v) && v > 0.0) s[j] = static_cast<float>(std::clamp(v, 1e-5, 1e5));
    }
  }
  return s;
}

void scale_columns(std::span<float> w, int64_t rows, int64_t in, std::span<const float> s) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < in; ++j) w[static_cast<size_t>(r * in + j)] *= s[static_cast<size_t>(j)];
}

void unscale_rows(std::span<float> w, int64_t rows, int64_t cols, std::span<const float> s) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) w[static_cast<size_t>(r * cols + j)] /= s[static_cast<size_t>(r)];
}

void round_to_power_of_two(std::span<float> s) {
  for (float& v : s)
    if (v > 0.0f && std::isfinite(v)) v = std::exp2(std::nearbyint(std::log2(v)));
}

void fold_into_norm(Engine& engine, int layer, NormSite site, std::span<const float> s) {
  std::vector<float>& w = engine.norm_weight(layer, site);
  std::vector<float>& b = engine.norm_bias(layer, site);
  if (w.size() != s.size()) throw Error("fold_into_norm: " + std::to_string(s.size()) + " scales for a norm of " + std::to_string(w.size()));
  for (size_t j = 0; j < s.size(); ++j) w[j] /= s[j];
  if (!b.empty())
    for (size_t j = 0; j < s.size(); ++j) b[j] /= s[j];
}

}  // namespace qeval::quant
