#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "qeval/quant/gptq.h"
#include "qeval/quant/rtn.h"
#include "qeval/quant/spqr.h"
#include "qeval/util/error.h"

namespace qeval::quant {
namespace {

// Heavy-tailed weights (Student-t, 3 dof) like real LLM layers: a few large weights per row.
std::vector<float> heavy_weights(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> td(3.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = 0.02f * td(rng);
  return w;
}

double sq_err(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) e += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return e;
}

QuantizerConfig rtn_cfg(int bits, int64_t g) {
  QuantizerConfig c;
  c.bits = bits;
  c.granularity = Granularity::PerGroup;
  c.group_size = g;
  c.symmetric = false;
  return c;
}

TEST(Spqr, ErrorBelowRtnOfSameBits) {
  const int64_t rows = 64, cols = 256;
  const auto w = heavy_weights(rows, cols, 1);
  for (int bits : {2, 3, 4}) {
    SpqrOptions o;
    o.bits = bits;
    const auto s = spqr_quantize(w, rows, cols, o);
    const double e_spqr = sq_err(w, s.weights);
    // Same base bits, same small groups, fp16 statistics, no outliers.
    const double e_g16 = sq_err(w, rtn_quantize(rtn_cfg(bits, 16), w, rows, cols).dequantize());
    // Same base bits at the usual group size (fewer bits of statistics).
    const double e_g128 = sq_err(w, rtn_quantize(rtn_cfg(bits, 128), w, rows, cols).dequantize());
    std::printf("[ spqr ] w%d: spqr err %.4g (%.3f bpw, %lld outliers), rtn g16 %.4g (%.3f bpw), rtn g128 %.4g (%.3f bpw)\n",
                bits, e_spqr, s.effective_bits, static_cast<long long>(s.outliers), e_g16,
                effective_bits(rtn_cfg(bits, 16), rows, cols), e_g128, effective_bits(rtn_cfg(bits, 128), rows, cols));
    EXPECT_LT(e_spqr, e_g16) << bits;
    EXPECT_LT(e_spqr, 0.8 * e_g128) << bits;
    EXPECT_LT(s.effective_bits, effective_bits(rtn_cfg(bits, 16), rows, cols)) << bits;
  }
}

TEST(Spqr, OutlierFractionIsControllableAndHelps) {
  const int64_t rows = 32, cols = 160;
  const auto w = heavy_weights(rows, cols, 2);
  double prev_err = INFINITY;
  for (double f : {0.0, 0.005, 0.02, 0.05}) {
    SpqrOptions o;
    o.outlier_fraction = f;
    const auto s = spqr_quantize(w, rows, cols, o);
    EXPECT_EQ(s.outliers, std::llround(f * rows * cols)) << f;
    EXPECT_EQ(static_cast<int64_t>(s.values.size()), s.outliers);
    EXPECT_EQ(s.row_ptr.back(), s.outliers);
    // Outliers are stored exactly, at their CSR positions.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = s.row_ptr[static_cast<size_t>(r)]; k < s.row_ptr[static_cast<size_t>(r + 1)]; ++k) {
        const auto i = static_cast<size_t>(r * cols + s.col_idx[static_cast<size_t>(k)]);
        EXPECT_EQ(s.weights[i], w[i]);
        EXPECT_EQ(s.values[static_cast<size_t>(k)], w[i]);
      }
    const double e = sq_err(w, s.weights);
    EXPECT_LT(e, prev_err) << f;
    prev_err = e;
  }
  // Threshold mode: a higher threshold keeps fewer outliers.
  SpqrOptions lo, hi;
  lo.outlier_threshold = 2.0;
  hi.outlier_threshold = 20.0;
  const auto a = spqr_quantize(w, rows, cols, lo), b = spqr_quantize(w, rows, cols, hi);
  EXPECT_GT(a.outliers, b.outliers);
  EXPECT_GT(a.outliers, 0);
}

TEST(Spqr, EffectiveBitsFormula) {
  SpqrOptions o;  // 3 bits, g16, 3-bit stats over 16 rows
  const int64_t rows = 48, cols = 100;  // 7 groups per row (last of 4), 3 stat row blocks
  const double n = 48.0 * 100;
  const double expect0 = (n * 3 + 48 * 7 * 2 * 3 + 3 * 7 * 2 * 32) / n;
  EXPECT_NEAR(spqr_effective_bits(o, rows, cols, 0), expect0, 1e-12);
  EXPECT_NEAR(spqr_effective_bits(o, rows, cols, 10), expect0 + (10 * 32 + 49 * 32) / n, 1e-12);
  EXPECT_NEAR(spqr_effective_bits(o, 2, 70000, 1) - spqr_effective_bits(o, 2, 70000, 0), (48 + 3 * 32) / 140000.0, 1e-12);
  o.quantize_stats = false;
  EXPECT_NEAR(spqr_effective_bits(o, rows, cols, 0), (n * 3 + 48 * 7 * 32) / n, 1e-12);
  const auto w = heavy_weights(rows, cols, 3);
  SpqrOptions d;
  const auto s = spqr_quantize(w, rows, cols, d);
  EXPECT_EQ(s.outliers, std::llround(0.01 * n));
  EXPECT_NEAR(s.effective_bits, spqr_effective_bits(d, rows, cols, s.outliers), 1e-12);
  EXPECT_NEAR(s.base_bits + s.stat_bits + s.outlier_bits, s.effective_bits, 1e-12);
}

TEST(Spqr, HessianWeightsTheSaliency) {
  const int64_t rows = 16, cols = 64;
  const auto w = heavy_weights(rows, cols, 4);
  // Inputs where columns 0..7 carry 100x the energy: errors there cost far more.
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(512 * cols));
  for (int64_t t = 0; t < 512; ++t)
    for (int64_t c = 0; c < cols; ++c) x[static_cast<size_t>(t * cols + c)] = nd(rng) * (c < 8 ? 10.0f : 1.0f);
  HessianAccumulator acc(cols);
  acc.add(x, 512);
  const auto h = acc.hessian();
  SpqrOptions o;
  o.outlier_fraction = 0.03;
  const auto with_h = spqr_quantize(w, rows, cols, o, h);
  const auto plain = spqr_quantize(w, rows, cols, o);
  auto in_hot = [](const SpqrResult& r) {
    int64_t k = 0;
    for (int32_t c : r.col_idx) k += c < 8;
    return k;
  };
  EXPECT_GT(in_hot(with_h), in_hot(plain));
  // Output error ||(W - W^) X^T||^2 is lower with the Hessian-aware choice.
  auto out_err = [&](const std::vector<float>& q) {
    double e = 0;
    for (int64_t t = 0; t < 512; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double s = 0;
        for (int64_t c = 0; c < cols; ++c)
          s += (static_cast<double>(w[static_cast<size_t>(r * cols + c)]) - q[static_cast<size_t>(r * cols + c)]) *
               x[static_cast<size_t>(t * cols + c)];
        e += s * s;
      }
    return e;
  };
  EXPECT_LT(out_err(with_h.weights), out_err(plain.weights));
  EXPECT_THROW(spqr_quantize(w, rows, cols, o, std::vector<double>(10)), Error);
  EXPECT_THROW(spqr_quantize(w, rows, cols + 1, o), Error);
}

}  // namespace
}  // namespace qeval::quant
