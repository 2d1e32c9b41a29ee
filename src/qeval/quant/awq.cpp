#include "qeval/quant/awq.h"

#include <cblas.h>

#include <cmath>
#include <limits>

#include "qeval/quant/smoothquant.h"
#include "qeval/util/error.h"

namespace qeval::quant {

namespace {

// Quantize-dequantize one group of n values with cfg's rounding (exact parameters for codes,
// stored parameters for dequantization, as quantize() does).
void fake_quant_slice(const QuantizerConfig& cfg, const float* x, int64_t n, float* out) {
  float mn = std::numeric_limits<float>::infinity(), mx = -mn;
  for (int64_t i = 0; i < n; ++i) mn = std::min(mn, x[i]), mx = std::max(mx, x[i]);
  const ScaleZero p = params_from_range(cfg, mn, mx);
  const ScaleZero ps = perturbed(cfg, p);
  for (int64_t i = 0; i < n; ++i) out[i] = dequantize_code(quantize_code(cfg, x[i], p, static_cast<uint64_t>(i)), ps);
}

}  // namespace

double output_error(std::span<const float> w, std::span<const float> wq, int64_t rows, int64_t in,
                    std::span<const double> gram) {
  const size_t n = static_cast<size_t>(rows * in);
  if (w.size() != n || wq.size() != n || gram.size() != static_cast<size_t>(in * in))
    throw Error("output_error: shape mismatch");
  std::vector<double> d(n), e(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<double>(w[i]) - static_cast<double>(wq[i]);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(rows), static_cast<blasint>(in),
              static_cast<blasint>(in), 1.0, d.data(), static_cast<blasint>(in), gram.data(), static_cast<blasint>(in), 0.0,
              e.data(), static_cast<blasint>(in));
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += d[i] * e[i];
  return s;
}

AwqScaleResult awq_search_scales(const QuantizerConfig& cfg, const std::vector<std::span<const float>>& weights, int64_t in,
                                 std::span<const float> x_mean_abs, std::span<const double> gram, int grid,
                                 bool power_of_two) {
  if (grid < 1) throw Error("awq: grid must be positive");
  if (static_cast<int64_t>(x_mean_abs.size()) != in) throw Error("awq: activation statistics do not match the weights");
  AwqScaleResult best;
  best.loss = std::numeric_limits<double>::infinity();
  std::vector<float> s(static_cast<size_t>(in)), ws, wq;
  for (int k = 0; k < grid; ++k) {
    const double alpha = static_cast<double>(k) / grid;
    double logsum = 0.0;
    for (int64_t j = 0; j < in; ++j) {
      const double v = std::pow(std::max(static_cast<double>(x_mean_abs[static_cast<size_t>(j)]), 1e-8), alpha);
      s[static_cast<size_t>(j)] = static_cast<float>(v);
      logsum += std::log(v);
    }
    const double gm = std::exp(logsum / static_cast<double>(in));  // normalise: geometric mean 1
    for (float& v : s) v = static_cast<float>(std::clamp(static_cast<double>(v) / gm, 1e-4, 1e4));
    if (power_of_two) round_to_power_of_two(s);
    double loss = 0.0;
    for (const auto& w : weights) {
      const int64_t rows = static_cast<int64_t>(w.size()) / in;
      ws.assign(w.begin(), w.end());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < in; ++j) ws[static_cast<size_t>(r * in + j)] *= s[static_cast<size_t>(j)];
      wq = fake_quantize(cfg, ws, rows, in);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < in; ++j) wq[static_cast<size_t>(r * in + j)] /= s[static_cast<size_t>(j)];
      loss += output_error(w, wq, rows, in, gram);
    }
    if (k == 0) best.loss_rtn = loss;
    if (loss < best.loss) {
      best.loss = loss;
      best.alpha = alpha;
      best.scales = s;
    }
  }
  if (best.alpha == 0.0) best.scales.assign(static_cast<size_t>(in), 1.0f);
  return best;
}

AwqClipResult awq_clip_search(const QuantizerConfig& cfg, std::span<float> w, int64_t rows, int64_t cols,
                              std::span<const double> gram, int grid, double min_ratio) {
  if (static_cast<int64_t>(w.size()) != rows * cols || gram.size() != static_cast<size_t>(cols * cols))
    throw Error("awq clip: shape mismatch");
  AwqClipResult res;
  const std::vector<float> orig(w.begin(), w.end());
  {
    const std::vector<float> q = fake_quantize(cfg, orig, rows, cols);
    res.loss_before = output_error(orig, q, rows, cols, gram);
  }
  if (cfg.granularity == Granularity::PerTensor || grid < 1) {
    res.loss_after = res.loss_before;
    return res;
  }
  const GroupLayout lay = group_layout(cfg, rows, cols);
  std::vector<float> clamped, q;
  std::vector<double> d;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < lay.groups_per_row; ++g) {
      const int64_t b = lay.group_begin(g), e = lay.group_end(g), n = e - b;
      const float* src = orig.data() + r * cols + b;
      float mn = 0.0f, mx = 0.0f, amax = 0.0f;
      for (int64_t i = 0; i < n; ++i) mn = std::min(mn, src[i]), mx = std::max(mx, src[i]), amax = std::max(amax, std::fabs(src[i]));
      double best = std::numeric_limits<double>::infinity();
      double best_c = 1.0;
      clamped.resize(static_cast<size_t>(n));
      q.resize(static_cast<size_t>(n));
      d.resize(static_cast<size_t>(n));
      for (int k = 0; k < grid; ++k) {
        const double c = 1.0 - (1.0 - min_ratio) * static_cast<double>(k) / grid;
        const float lo = cfg.symmetric ? static_cast<float>(-c * amax) : static_cast<float>(c * mn);
        const float hi = cfg.symmetric ? static_cast<float>(c * amax) : static_cast<float>(c * mx);
        for (int64_t i = 0; i < n; ++i) clamped[static_cast<size_t>(i)] = std::clamp(src[i], lo, hi);
        fake_quant_slice(cfg, clamped.data(), n, q.data());
        for (int64_t i = 0; i < n; ++i) d[static_cast<size_t>(i)] = static_cast<double>(src[i]) - q[static_cast<size_t>(i)];
        double err = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          double acc = 0.0;
          const double* grow = gram.data() + (b + i) * cols + b;
          for (int64_t j = 0; j < n; ++j) acc += grow[j] * d[static_cast<size_t>(j)];
          err += d[static_cast<size_t>(i)] * acc;
        }
        if (err < best) best = err, best_c = c;
      }
      if (best_c < 1.0) {
        const float lo = cfg.symmetric ? static_cast<float>(-best_c * amax) : static_cast<float>(best_c * mn);
        const float hi = cfg.symmetric ? static_cast<float>(best_c * amax) : static_cast<float>(best_c * mx);
        for (int64_t i = 0; i < n; ++i) w[static_cast<size_t>(r * cols + b + i)] = std::clamp(src[i], lo, hi);
      }
    }
  }
  const std::vector<float> qa = fake_quantize(cfg, std::vector<float>(w.begin(), w.end()), rows, cols);
  res.loss_after = output_error(orig, qa, rows, cols, gram);
  return res;
}

}  // namespace qeval::quant
