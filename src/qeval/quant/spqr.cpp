#include "qeval/quant/spqr.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "qeval/util/error.h"
#include "qeval/util/half.h"

namespace qeval::quant {

namespace {

struct GroupParams {
  float scale = 1.0f;
  float zero = 0.0f;
};

// Min-max asymmetric parameters of the values v[i] with keep(i).
template <class Keep>
GroupParams fit(const float* v, int64_t n, int qmax, Keep&& keep) {
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < n; ++i)
    if (keep(i)) {
      lo = std::min(lo, v[i]);
      hi = std::max(hi, v[i]);
    }
  if (!(lo <= hi)) return {1.0f, 0.0f};  // nothing to fit
  float s = (hi - lo) / static_cast<float>(qmax);
  if (!(s > 0.0f)) s = std::max(std::fabs(lo), 1e-20f) / static_cast<float>(qmax);  // constant group
  return {s, std::nearbyint(-lo / s)};
}

inline float qdq(float x, GroupParams p, int qmax) {
  const float q = std::clamp(std::nearbyint(x / p.scale + p.zero), 0.0f, static_cast<float>(qmax));
  return p.scale * (q - p.zero);
}

// Quantize-dequantize n values (stride `stride`) min-max asymmetric with `bits` (no zero forced).
void qdq_stats(float* v, int64_t n, int64_t stride, int bits) {
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, v[i * stride]);
    hi = std::max(hi, v[i * stride]);
  }
  if (!(hi > lo)) return;
  // The second-level parameters (lo, step) are stored in fp16 (the effective-bits formula counts
  // 16 bits each), so the dequantized statistics are computed from the fp16 values.
  const float lo16 = fp16_to_f32(f32_to_fp16(lo));
  float step = fp16_to_f32(f32_to_fp16((hi - lo) / static_cast<float>((1 << bits) - 1)));
  if (!(step > 0.0f)) return;  // range below fp16 resolution: keep the exact statistics
  const float top = static_cast<float>((1 << bits) - 1);
  for (int64_t i = 0; i < n; ++i)
    v[i * stride] = lo16 + step * std::clamp(std::nearbyint((v[i * stride] - lo16) / step), 0.0f, top);
}

// Diagonal of (H + damp * mean(diag H) I)^-1 through a Cholesky factor.
std::vector<double> inverse_hessian_diag(std::span<const double> hessian, int64_t n, double damp) {
  std::vector<double> h(hessian.begin(), hessian.end());
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) {
    double& d = h[static_cast<size_t>(i * n + i)];
    if (d == 0.0) {
      d = 1.0;
      for (int64_t j = 0; j < n; ++j) h[static_cast<size_t>(i * n + j)] = h[static_cast<size_t>(j * n + i)] = (i == j ? 1.0 : 0.0);
    }
    mean += d;
  }
  mean /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) h[static_cast<size_t>(i * n + i)] += damp * mean;
  // Lower Cholesky factor L (in place, lower triangle).
  for (int64_t j = 0; j < n; ++j) {
    double d = h[static_cast<size_t>(j * n + j)];
    for (int64_t k = 0; k < j; ++k) d -= h[static_cast<size_t>(j * n + k)] * h[static_cast<size_t>(j * n + k)];
    if (!(d > 0.0)) throw Error("spqr: the dampened Hessian is not positive definite");
    const double l = std::sqrt(d);
    h[static_cast<size_t>(j * n + j)] = l;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = h[static_cast<size_t>(i * n + j)];
      for (int64_t k = 0; k < j; ++k) s -= h[static_cast<size_t>(i * n + k)] * h[static_cast<size_t>(j * n + k)];
      h[static_cast<size_t>(i * n + j)] = s / l;
    }
  }
  // diag(H^-1)_j = sum_k (L^-1)_kj^2: solve L y = e_j for each j (y_k = 0 for k < j).
  std::vector<double> diag(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    double acc = 0;
    for (int64_t k = j; k < n; ++k) {
      double s = (k == j) ? 1.0 : 0.0;
      for (int64_t m = j; m < k; ++m) s -= h[static_cast<size_t>(k * n + m)] * y[static_cast<size_t>(m)];
      y[static_cast<size_t>(k)] = s / h[static_cast<size_t>(k * n + k)];
      acc += y[static_cast<size_t>(k)] * y[static_cast<size_t>(k)];
    }
    diag[static_cast<size_t>(j)] = acc;
  }
  return diag;
}

void check(const SpqrOptions& o) {
  if (o.bits < 2 || o.bits > 8) throw Error("spqr: bits must be in 2..8");
  if (o.group_size <= 0) throw Error("spqr: group size must be positive");
  if (o.quantize_stats && (o.stat_bits < 2 || o.stat_bits > 8)) throw Error("spqr: stat_bits must be in 2..8");
  if (o.stat_group <= 0) throw Error("spqr: stat_group must be positive");
  if (!(o.outlier_fraction >= 0.0 && o.outlier_fraction <= 1.0)) throw Error("spqr: outlier_fraction must be in [0, 1]");
  if (!(o.outlier_threshold >= 0.0)) throw Error("spqr: outlier_threshold must be >= 0");
}

}  // namespace

double spqr_effective_bits(const SpqrOptions& o, int64_t rows, int64_t cols, int64_t outliers) {
  const double n = static_cast<double>(rows) * static_cast<double>(cols);
  if (n == 0) return o.bits;
  const int64_t gpr = (cols + o.group_size - 1) / o.group_size;
  const auto groups = static_cast<double>(rows * gpr);
  const auto stat_groups = static_cast<double>(((rows + o.stat_group - 1) / o.stat_group) * gpr);
  const double stats = o.quantize_stats ? groups * 2 * o.stat_bits + stat_groups * 2 * 32.0 : groups * 2 * 16.0;
  const double idx = cols <= 65536 ? 16.0 : 32.0;
  const double outl = outliers > 0 ? static_cast<double>(outliers) * (16.0 + idx) + static_cast<double>(rows + 1) * 32.0 : 0.0;
  return (n * o.bits + stats + outl) / n;
}

SpqrOptions spqr_options(const QuantSpec& spec) {
  if (spec.family != Family::SpQR || !spec.weights) throw Error("spqr: spec is not an spqr-w<B> spec");
  SpqrOptions o;
  o.bits = spec.weights->bits;
  if (spec.weights->granularity == Granularity::PerGroup) o.group_size = spec.weights->group_size;
  o.damp = spec.damp;
  return o;
}

SpqrResult spqr_quantize(std::span<const float> w, int64_t rows, int64_t cols, const SpqrOptions& o,
                         std::span<const double> hessian) {
  check(o);
  if (rows <= 0 || cols <= 0 || static_cast<uint64_t>(rows * cols) != w.size())
    throw Error("spqr: weight shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "] does not match " +
                std::to_string(w.size()) + " values");
  if (!hessian.empty() && static_cast<int64_t>(hessian.size()) != cols * cols)
    throw Error("spqr: Hessian must be [" + std::to_string(cols) + ", " + std::to_string(cols) + "]");
  const int qmax = (1 << o.bits) - 1;
  const int64_t G = o.group_size, gpr = (cols + G - 1) / G;
  std::vector<float> wt(static_cast<size_t>(cols), 1.0f);  // error weight 1 / [H^-1]_jj
  if (!hessian.empty()) {
    const auto d = inverse_hessian_diag(hessian, cols, o.damp);
    for (int64_t j = 0; j < cols; ++j) wt[static_cast<size_t>(j)] = static_cast<float>(1.0 / d[static_cast<size_t>(j)]);
  }

  // 1. Leave-one-out saliency of every weight within its group.
  const size_t n = w.size();
  std::vector<float> sal(n, 0.0f);
  double total_err = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < gpr; ++g) {
      const int64_t b = g * G, len = std::min(cols, b + G) - b;
      const float* v = w.data() + r * cols + b;
      const float* ww = wt.data() + b;
      const GroupParams all = fit(v, len, qmax, [](int64_t) { return true; });
      double e_all = 0;
      for (int64_t i = 0; i < len; ++i) {
        const double d = v[i] - qdq(v[i], all, qmax);
        e_all += ww[i] * d * d;
      }
      total_err += e_all;
      for (int64_t j = 0; j < len; ++j) {
        const GroupParams p = fit(v, len, qmax, [j](int64_t i) { return i != j; });
        double e = 0;
        for (int64_t i = 0; i < len; ++i)
          if (i != j) {
            const double d = v[i] - qdq(v[i], p, qmax);
            e += ww[i] * d * d;
          }
        sal[static_cast<size_t>(r * cols + b + j)] = static_cast<float>(e_all - e);
      }
    }

  // 2. Outlier selection.
  std::vector<uint8_t> is_out(n, 0);
  if (o.outlier_threshold > 0.0) {
    const double cut = o.outlier_threshold * total_err / static_cast<double>(n);
    for (size_t i = 0; i < n; ++i) is_out[i] = sal[i] > cut;
  } else if (o.outlier_fraction > 0.0) {
    const auto k = static_cast<size_t>(std::llround(o.outlier_fraction * static_cast<double>(n)));
    if (k > 0) {
      std::vector<size_t> idx(n);
      std::iota(idx.begin(), idx.end(), size_t{0});
      auto more = [&](size_t a, size_t b) { return sal[a] != sal[b] ? sal[a] > sal[b] : a < b; };
      std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k - 1), idx.end(), more);
      for (size_t i = 0; i < k; ++i) is_out[idx[i]] = 1;
    }
  }

  // 3. First-level statistics over the non-outliers; 4. second-level quantization of them.
  std::vector<float> scales(static_cast<size_t>(rows * gpr)), zeros(static_cast<size_t>(rows * gpr));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < gpr; ++g) {
      const int64_t b = g * G, len = std::min(cols, b + G) - b;
      const uint8_t* m = is_out.data() + r * cols + b;
      const GroupParams p = fit(w.data() + r * cols + b, len, qmax, [m](int64_t i) { return !m[i]; });
      scales[static_cast<size_t>(r * gpr + g)] = p.scale;
      zeros[static_cast<size_t>(r * gpr + g)] = p.zero;
    }
  if (o.quantize_stats)
    for (int64_t r0 = 0; r0 < rows; r0 += o.stat_group)
      for (int64_t g = 0; g < gpr; ++g) {
        const int64_t len = std::min(rows, r0 + o.stat_group) - r0;
        qdq_stats(scales.data() + r0 * gpr + g, len, gpr, o.stat_bits);
        qdq_stats(zeros.data() + r0 * gpr + g, len, gpr, o.stat_bits);
      }

  // 5. Dequantized weights, outliers exact; CSR.
  SpqrResult res;
  res.rows = rows;
  res.cols = cols;
  res.weights.resize(n);
  res.row_ptr.assign(static_cast<size_t>(rows + 1), 0);
  QuantizedMatrix& qm = res.quantized;
  qm.config.bits = o.bits;
  qm.config.granularity = Granularity::PerGroup;
  qm.config.group_size = G;
  qm.config.symmetric = false;
  qm.rows = rows;
  qm.cols = cols;
  qm.codes.resize(n);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const auto i = static_cast<size_t>(r * cols + c);
      const GroupParams p{scales[static_cast<size_t>(r * gpr + c / G)], zeros[static_cast<size_t>(r * gpr + c / G)]};
      // Codes everywhere (dense storage); at outlier positions the CSR value replaces the grid value.
      qm.codes[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(w[i] / p.scale + p.zero), 0.0f, static_cast<float>(qmax)));
      if (is_out[i]) {
        res.weights[i] = w[i];
        res.col_idx.push_back(static_cast<int32_t>(c));
        res.values.push_back(w[i]);
      } else {
        res.weights[i] = qdq(w[i], p, qmax);
      }
      const double d = static_cast<double>(w[i]) - res.weights[i];
      res.weighted_error += wt[static_cast<size_t>(c)] * d * d;
    }
    res.row_ptr[static_cast<size_t>(r + 1)] = static_cast<int64_t>(res.col_idx.size());
  }
  qm.scales = std::move(scales);
  qm.zeros = std::move(zeros);
  qm.outlier_row_ptr = res.row_ptr;
  qm.outlier_cols = res.col_idx;
  qm.outlier_values = res.values;
  res.outliers = static_cast<int64_t>(res.values.size());
  res.outlier_fraction = static_cast<double>(res.outliers) / static_cast<double>(n);
  res.effective_bits = spqr_effective_bits(o, rows, cols, res.outliers);
  SpqrOptions no_out = o;
  res.base_bits = o.bits;
  res.outlier_bits = res.effective_bits - spqr_effective_bits(no_out, rows, cols, 0);
  res.stat_bits = res.effective_bits - res.base_bits - res.outlier_bits;
  return res;
}

}  // namespace qeval::quant
