#include "qeval/quant/gptq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "qeval/quant/rtn.h"
#include "qeval/util/error.h"

// LAPACK from OpenBLAS (C implementations: no hidden Fortran string-length arguments).
extern "C" {
void dpotrf_(const char* uplo, const blasint* n, double* a, const blasint* lda, blasint* info);
void dpotri_(const char* uplo, const blasint* n, double* a, const blasint* lda, blasint* info);
}

namespace qeval::quant {

// ---------------------------------------------------------------------------------------------
// HessianAccumulator

HessianAccumulator::HessianAccumulator(int64_t in_features) : n_(in_features) {
  if (in_features <= 0) throw Error("HessianAccumulator: in_features must be positive");
  h_.assign(static_cast<size_t>(n_ * n_), 0.0);
}

void HessianAccumulator::add(std::span<const float> x, int64_t tokens) {
  if (tokens < 0 || static_cast<uint64_t>(tokens) * static_cast<uint64_t>(n_) != x.size())
    throw Error("HessianAccumulator: batch of " + std::to_string(x.size()) + " values is not [" +
                std::to_string(tokens) + ", " + std::to_string(n_) + "]");
  if (tokens == 0) return;
  const int64_t total = samples_ + tokens;
  // Running mean: H <- H * n/(n+t) + (2/(n+t)) * X^T X.
  const double keep = static_cast<double>(samples_) / static_cast<double>(total);
  if (samples_ > 0)
    for (double& v : h_) v *= keep;
  const double alpha = 2.0 / static_cast<double>(total);
  constexpr int64_t kChunk = 256;
  std::vector<double> xd;
  for (int64_t t0 = 0; t0 < tokens; t0 += kChunk) {
    const int64_t nt = std::min(kChunk, tokens - t0);
    xd.assign(x.begin() + t0 * n_, x.begin() + (t0 + nt) * n_);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<blasint>(n_), static_cast<blasint>(nt), alpha,
                xd.data(), static_cast<blasint>(n_), 1.0, h_.data(), static_cast<blasint>(n_));
  }
  samples_ = total;
}

std::vector<double> HessianAccumulator::hessian() const {
  std::vector<double> h = h_;
  for (int64_t i = 0; i < n_; ++i)
    for (int64_t j = 0; j < i; ++j) h[static_cast<size_t>(i * n_ + j)] = h[static_cast<size_t>(j * n_ + i)];
  return h;
}

// ---------------------------------------------------------------------------------------------
// GPTQ

namespace {

// Upper Cholesky factor U of H^-1 (H^-1 = U^T U), row-major, for symmetric positive definite H
// (row-major; overwritten).
std::vector<double> inverse_cholesky_upper(std::vector<double>& h, int64_t n) {
  const auto bn = static_cast<blasint>(n);
  blasint info = 0;
  // Row-major symmetric == column-major symmetric, so LAPACK's column-major 'U' is fine.
  dpotrf_("U", &bn, h.data(), &bn, &info);
  if (info > 0)
    throw Error("gptq: the dampened Hessian is not positive definite (leading minor " + std::to_string(info) +
                "); use more dampening or more calibration data");
  if (info < 0) throw Error("gptq: dpotrf argument error " + std::to_string(info));
  dpotri_("U", &bn, h.data(), &bn, &info);
  if (info != 0) throw Error("gptq: the Hessian is singular (dpotri info " + std::to_string(info) + ")");
  // Column-major upper triangle (i <= j at h[i + j*n]) now holds H^-1; mirror it.
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < j; ++i) h[static_cast<size_t>(j + i * n)] = h[static_cast<size_t>(i + j * n)];
  dpotrf_("U", &bn, h.data(), &bn, &info);
  if (info != 0) throw Error("gptq: H^-1 is not positive definite (info " + std::to_string(info) + ")");
  std::vector<double> u(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) u[static_cast<size_t>(i * n + j)] = h[static_cast<size_t>(i + j * n)];
  return u;
}

}  // namespace

GptqResult gptq_quantize(const QuantizerConfig& cfg, std::span<const float> w, int64_t rows, int64_t cols,
                         std::span<const double> hessian, const GptqOptions& opts) {
  check_weight_config(cfg, "gptq");
  if (rows < 0 || cols < 0 || static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) != w.size())
    throw Error("gptq: weight of " + std::to_string(w.size()) + " values is not [" + std::to_string(rows) + ", " +
                std::to_string(cols) + "]");
  if (static_cast<uint64_t>(cols) * static_cast<uint64_t>(cols) != hessian.size())
    throw Error("gptq: Hessian of " + std::to_string(hessian.size()) + " values is not [" + std::to_string(cols) +
                ", " + std::to_string(cols) + "]");
  if (opts.block_size <= 0) throw Error("gptq: block size must be positive");
  if (!(opts.damp >= 0.0)) throw Error("gptq: dampening must be >= 0");
  for (double v : hessian)
    if (!std::isfinite(v)) throw Error("gptq: the Hessian has non-finite entries");

  const int64_t n = cols;
  const auto R = static_cast<size_t>(rows);
  auto at = [n](int64_t i, int64_t j) { return static_cast<size_t>(i * n + j); };

  GptqResult res;
  QuantizedMatrix& qm = res.quantized;
  qm.config = cfg;
  qm.rows = rows;
  qm.cols = cols;
  qm.codes.assign(w.size(), 0);
  const GroupLayout lay = group_layout(cfg, rows, cols);
  std::vector<ScaleZero> params(static_cast<size_t>(lay.count()));
  if (rows == 0 || cols == 0) {
    qm.scales.assign(params.size(), 1.0f);
    qm.zeros.assign(params.size(), 0.0f);
    return res;
  }

  // Dead columns.
  std::vector<double> h(hessian.begin(), hessian.end());
  std::vector<char> dead(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i)
    if (h[at(i, i)] == 0.0) {
      h[at(i, i)] = 1.0;
      dead[static_cast<size_t>(i)] = 1;
      ++res.dead_columns;
    }

  // Processing order.
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (opts.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return h[at(a, a)] > h[at(b, b)]; });
  std::vector<int64_t> pos_of(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) pos_of[static_cast<size_t>(perm[static_cast<size_t>(j)])] = j;

  // Working weights, transposed and permuted: wp[j*rows + r] = W[r, perm[j]] (dead columns 0).
  std::vector<float> wp(w.size());
  for (int64_t j = 0; j < n; ++j) {
    const int64_t c = perm[static_cast<size_t>(j)];
    float* dst = wp.data() + static_cast<size_t>(j) * R;
    if (dead[static_cast<size_t>(c)]) {
      std::fill(dst, dst + R, 0.0f);
      continue;
    }
    for (size_t r = 0; r < R; ++r) dst[r] = w[r * static_cast<size_t>(n) + static_cast<size_t>(c)];
  }

  // Permuted, dampened Hessian -> U = chol(H^-1) upper.
  std::vector<double> hp(static_cast<size_t>(n * n));
  double mean_diag = 0.0;
  for (int64_t i = 0; i < n; ++i) mean_diag += h[at(i, i)];
  mean_diag /= static_cast<double>(n);
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b) hp[at(a, b)] = h[at(perm[static_cast<size_t>(a)], perm[static_cast<size_t>(b)])];
  for (int64_t i = 0; i < n; ++i) hp[at(i, i)] += opts.damp * mean_diag;
  h.clear();
  h.shrink_to_fit();
  const std::vector<double> u = inverse_cholesky_upper(hp, n);
  hp.clear();
  hp.shrink_to_fit();

  // Per-tensor / per-channel parameters from the (dead-zeroed) original weights.
  auto range_params = [&](int64_t r_begin, int64_t r_end) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t r = r_begin; r < r_end; ++r) {
        const float v = wp[static_cast<size_t>(j) * R + static_cast<size_t>(r)];
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    return params_from_range(cfg, lo, hi);
  };
  if (lay.per_tensor) {
    params[0] = range_params(0, rows);
  } else if (cfg.granularity != Granularity::PerGroup) {
    for (int64_t r = 0; r < rows; ++r) params[static_cast<size_t>(r)] = range_params(r, r + 1);
  }
  std::vector<char> group_ready(static_cast<size_t>(lay.groups_per_row), cfg.granularity != Granularity::PerGroup);

  const int64_t bs = std::min(opts.block_size, n);
  std::vector<float> err(static_cast<size_t>(bs) * R);  // err[(j - i1) * rows + r]
  std::vector<float> ublk;                              // U[i1:i2, i1:n] as float
  std::vector<float> lo(R), hi(R), col(R);

  for (int64_t i1 = 0; i1 < n; i1 += bs) {
    const int64_t i2 = std::min(i1 + bs, n);
    const int64_t nb = i2 - i1, width = n - i1;
    ublk.assign(static_cast<size_t>(nb * width), 0.0f);
    for (int64_t t = 0; t < nb; ++t)
      for (int64_t k = t; k < width; ++k)
        ublk[static_cast<size_t>(t * width + k)] = static_cast<float>(u[at(i1 + t, i1 + k)]);

    for (int64_t j = i1; j < i2; ++j) {
      const int64_t c = perm[static_cast<size_t>(j)];
      const int64_t g = cfg.granularity == Granularity::PerGroup ? c / lay.group_cols : 0;
      if (!group_ready[static_cast<size_t>(g)]) {
        // Parameters of group g from its columns' current values: those in this block are up to
        // date; later ones still miss this block's updates from columns i1..j-1.
        std::fill(lo.begin(), lo.end(), INFINITY);
        std::fill(hi.begin(), hi.end(), -INFINITY);
        for (int64_t cc = lay.group_begin(g); cc < lay.group_end(g); ++cc) {
          const int64_t jj = pos_of[static_cast<size_t>(cc)];
          const float* src = wp.data() + static_cast<size_t>(jj) * R;
          std::copy(src, src + R, col.begin());
          if (jj >= i2)
            for (int64_t t = i1; t < j; ++t) {
              const float uk = static_cast<float>(u[at(t, jj)]);
              if (uk == 0.0f) continue;
              const float* e = err.data() + static_cast<size_t>(t - i1) * R;
              for (size_t r = 0; r < R; ++r) col[r] -= uk * e[r];
            }
          for (size_t r = 0; r < R; ++r) {
            lo[r] = std::min(lo[r], col[r]);
            hi[r] = std::max(hi[r], col[r]);
          }
        }
        for (size_t r = 0; r < R; ++r)
          params[r * static_cast<size_t>(lay.groups_per_row) + static_cast<size_t>(g)] =
              params_from_range(cfg, lo[r], hi[r]);
        group_ready[static_cast<size_t>(g)] = 1;
      }

      const double d = u[at(j, j)];
      float* wj = wp.data() + static_cast<size_t>(j) * R;
      float* ej = err.data() + static_cast<size_t>(j - i1) * R;
      for (size_t r = 0; r < R; ++r) {
        const size_t idx = r * static_cast<size_t>(n) + static_cast<size_t>(c);
        const ScaleZero& p = params[static_cast<size_t>(lay.index(static_cast<int64_t>(r), c))];
        const uint8_t code = quantize_code(cfg, wj[r], p, idx);
        qm.codes[idx] = code;
        const double diff = static_cast<double>(wj[r]) - static_cast<double>(dequantize_code(code, p));
        res.proxy_loss += diff * diff / (2.0 * d * d);
        ej[r] = static_cast<float>(diff / d);
      }
      // Within the block: w_k -= e_j * U_jk for k in (j, i2). A plain loop, not cblas_sger: one
      // small BLAS call per column would synchronise OpenBLAS's threads n times per layer.
      for (int64_t k = j + 1; k < i2; ++k) {
        const float uk = ublk[static_cast<size_t>((j - i1) * width + (k - i1))];
        float* wk = wp.data() + static_cast<size_t>(k) * R;
        for (size_t r = 0; r < R; ++r) wk[r] -= uk * ej[r];
      }
    }
    // Lazy update of the columns after the block: W[i2:, :] -= U[i1:i2, i2:]^T * E.
    if (i2 < n)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<blasint>(n - i2), static_cast<blasint>(rows),
                  static_cast<blasint>(nb), -1.0f, ublk.data() + nb, static_cast<blasint>(width), err.data(),
                  static_cast<blasint>(rows), 1.0f, wp.data() + static_cast<size_t>(i2) * R,
                  static_cast<blasint>(rows));
  }

  qm.scales.resize(params.size());
  qm.zeros.resize(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const ScaleZero s = perturbed(cfg, params[i]);
    qm.scales[i] = s.scale;
    qm.zeros[i] = s.zero;
  }
  res.weights = qm.dequantize();
  return res;
}

}  // namespace qeval::quant
