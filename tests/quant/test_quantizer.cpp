#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <vector>

#include "qeval/io/tensor.h"
#include "qeval/quant/quantizer.h"
#include "qeval/quant/rtn.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed, float outlier_prob = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (auto& v : x) {
    v = n(rng) * 0.05f;
    if (u(rng) < outlier_prob) v *= 20.0f;
  }
  return x;
}

QuantizerConfig cfg_of(int bits, Granularity g, int64_t group, bool sym) {
  QuantizerConfig c;
  c.bits = bits;
  c.granularity = g;
  c.group_size = g == Granularity::PerGroup ? group : 0;
  c.symmetric = sym;
  return c;
}

TEST(Quantizer, AsymmetricFormulaIsExact) {
  const int64_t rows = 16, cols = 96;
  const auto x = random_matrix(rows, cols, 1);
  for (int bits = 2; bits <= 8; ++bits) {
    SCOPED_TRACE(bits);
    const auto c = cfg_of(bits, Granularity::PerChannel, 0, false);
    const auto q = quantize(c, x, rows, cols);
    const float qmax = static_cast<float>((1 << bits) - 1);
    for (int64_t r = 0; r < rows; ++r) {
      float mn = x[r * cols], mx = x[r * cols];
      for (int64_t k = 0; k < cols; ++k) {
        mn = std::min(mn, x[r * cols + k]);
        mx = std::max(mx, x[r * cols + k]);
      }
      ASSERT_LT(mn, 0.0f);
      ASSERT_GT(mx, 0.0f);
      const float s = (mx - mn) / qmax;
      const float z = std::nearbyint(-mn / s);
      EXPECT_EQ(q.scales[r], s);
      EXPECT_EQ(q.zeros[r], z);
      for (int64_t k = 0; k < cols; ++k) {
        const float v = x[r * cols + k];
        const float expect = std::clamp(std::nearbyint(v / s) + z, 0.0f, qmax);
        EXPECT_EQ(q.codes[r * cols + k], static_cast<int>(expect));
        EXPECT_LE(q.codes[r * cols + k], (1 << bits) - 1);
      }
    }
  }
}

TEST(Quantizer, AsymmetricRangeAlwaysContainsZero) {
  // An all-positive row: the range is extended to [0, max], so Z = 0 and 0 stays exact.
  const std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f};
  const auto c = cfg_of(4, Granularity::PerChannel, 0, false);
  const auto q = quantize(c, x, 1, 4);
  EXPECT_EQ(q.scales[0], 4.0f / 15.0f);
  EXPECT_EQ(q.zeros[0], 0.0f);
  // All-negative: Z = qmax.
  const std::vector<float> y = {-1.0f, -2.0f, -3.0f};
  const auto qy = quantize(c, y, 1, 3);
  EXPECT_EQ(qy.zeros[0], 15.0f);
  EXPECT_EQ(qy.dequantize()[2], -3.0f);
}

TEST(Quantizer, SymmetricFormula) {
  const int64_t rows = 8, cols = 64;
  const auto x = random_matrix(rows, cols, 2);
  for (int bits = 2; bits <= 8; ++bits) {
    SCOPED_TRACE(bits);
    const auto c = cfg_of(bits, Granularity::PerChannel, 0, true);
    const auto q = quantize(c, x, rows, cols);
    const int half = 1 << (bits - 1);
    for (int64_t r = 0; r < rows; ++r) {
      float amax = 0;
      for (int64_t k = 0; k < cols; ++k) amax = std::max(amax, std::fabs(x[r * cols + k]));
      EXPECT_EQ(q.scales[r], amax / static_cast<float>(half - 1));
      EXPECT_EQ(q.zeros[r], static_cast<float>(half));
      for (int64_t k = 0; k < cols; ++k) {
        EXPECT_GE(q.codes[r * cols + k], 1);
        EXPECT_LE(q.codes[r * cols + k], 2 * half - 1);
      }
    }
    // The grid is symmetric: fq(-x) == -fq(x).
    std::vector<float> neg(x.size());
    for (size_t i = 0; i < x.size(); ++i) neg[i] = -x[i];
    const auto a = fake_quantize(c, x, rows, cols), b = fake_quantize(c, neg, rows, cols);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(a[i], -b[i]);
  }
}

TEST(Quantizer, Granularities) {
  const int64_t rows = 4, cols = 172;
  auto x = random_matrix(rows, cols, 3);
  x[1 * cols + 150] = 9.0f;  // row 1, last group (cols 128..171)
  // Per tensor: one scale from the whole matrix.
  {
    const auto q = quantize(cfg_of(8, Granularity::PerTensor, 0, true), x, rows, cols);
    ASSERT_EQ(q.scales.size(), 1u);
    EXPECT_EQ(q.scales[0], 9.0f / 127.0f);
  }
  // Per channel and per token: one scale per row; identical math.
  {
    const auto qc = quantize(cfg_of(8, Granularity::PerChannel, 0, true), x, rows, cols);
    const auto qt = quantize(cfg_of(8, Granularity::PerToken, 0, true), x, rows, cols);
    ASSERT_EQ(qc.scales.size(), static_cast<size_t>(rows));
    EXPECT_EQ(qc.scales, qt.scales);
    EXPECT_EQ(qc.codes, qt.codes);
    EXPECT_EQ(qc.scales[1], 9.0f / 127.0f);
    EXPECT_LT(qc.scales[0], 1.0f / 127.0f);
  }
  // Groups of 64 along a row of 172: 64, 64, 44.
  {
    const auto c = cfg_of(8, Granularity::PerGroup, 64, true);
    const auto l = group_layout(c, rows, cols);
    EXPECT_EQ(l.groups_per_row, 3);
    EXPECT_EQ(l.group_end(0) - l.group_begin(0), 64);
    EXPECT_EQ(l.group_end(1) - l.group_begin(1), 64);
    EXPECT_EQ(l.group_end(2) - l.group_begin(2), 44);
    EXPECT_EQ(l.index(1, 127), 1 * 3 + 1);
    EXPECT_EQ(l.index(1, 128), 1 * 3 + 2);
    EXPECT_EQ(l.index(1, 171), 1 * 3 + 2);
    const auto q = quantize(c, x, rows, cols);
    ASSERT_EQ(q.scales.size(), static_cast<size_t>(rows * 3));
    // The outlier only widens its own group.
    EXPECT_EQ(q.scales[1 * 3 + 2], 9.0f / 127.0f);
    EXPECT_LT(q.scales[1 * 3 + 1], 1.0f / 127.0f);
    EXPECT_LT(q.scales[1 * 3 + 0], 1.0f / 127.0f);
    // Each scale is computed from exactly its group's elements.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < 3; ++g) {
        float amax = 0;
        for (int64_t k = l.group_begin(g); k < l.group_end(g); ++k) amax = std::max(amax, std::fabs(x[r * cols + k]));
        EXPECT_EQ(q.scales[r * 3 + g], amax / 127.0f);
      }
  }
  // A group larger than the row is one group per row.
  {
    const auto q = quantize(cfg_of(8, Granularity::PerGroup, 256, true), x, rows, cols);
    const auto qc = quantize(cfg_of(8, Granularity::PerChannel, 0, true), x, rows, cols);
    EXPECT_EQ(q.scales, qc.scales);
  }
}

// Property: every element inside the clipping range is within S/2 of its dequantized value.
TEST(Quantizer, ErrorWithinHalfStepInsideClippingRange) {
  const int64_t rows = 12, cols = 300;
  int64_t checked = 0, outside = 0;
  for (uint32_t seed = 10; seed < 13; ++seed) {
    const auto x = random_matrix(rows, cols, seed, seed == 12 ? 0.02f : 0.0f);
    for (int bits = 2; bits <= 8; ++bits)
      for (Granularity g : {Granularity::PerTensor, Granularity::PerChannel, Granularity::PerGroup})
        for (int64_t gs : {32, 64, 100, 128})
          for (bool sym : {true, false})
            for (double clip : {1.0, 0.8}) {
              if (g != Granularity::PerGroup && gs != 32) continue;
              auto c = cfg_of(bits, g, gs, sym);
              c.clip_ratio = clip;
              const auto q = quantize(c, x, rows, cols);
              const auto fq = fake_quantize(c, x, rows, cols);
              const auto dq = q.dequantize();
              ASSERT_EQ(fq, dq);
              const auto l = q.layout();
              // Range of each group (always containing 0, as the quantizer defines it).
              std::vector<float> gmin(static_cast<size_t>(l.count()), 0.0f), gmax(gmin);
              for (int64_t r = 0; r < rows; ++r)
                for (int64_t k = 0; k < cols; ++k) {
                  const auto gi = static_cast<size_t>(l.index(r, k));
                  gmin[gi] = std::min(gmin[gi], x[r * cols + k]);
                  gmax[gi] = std::max(gmax[gi], x[r * cols + k]);
                }
              for (int64_t r = 0; r < rows; ++r)
                for (int64_t k = 0; k < cols; ++k) {
                  const size_t i = static_cast<size_t>(r * cols + k);
                  const auto gi = static_cast<size_t>(l.index(r, k));
                  const float s = q.scales[gi], z = q.zeros[gi];
                  const float mn = gmin[gi], mx = gmax[gi];
                  float lo, hi;
                  if (sym) {
                    hi = static_cast<float>(clip) * std::max(-mn, mx);
                    lo = -hi;
                  } else {
                    lo = static_cast<float>(clip) * mn;
                    hi = static_cast<float>(clip) * mx;
                  }
                  const float err = std::fabs(x[i] - fq[i]);
                  const float tol = 0.5f * s * (1.0f + 1e-5f) + 1e-6f * std::fabs(x[i]);
                  if (x[i] >= lo && x[i] <= hi) {
                    ++checked;
                    ASSERT_LE(err, tol) << "bits " << bits << " " << granularity_name(g) << " g" << gs
                                        << (sym ? " sym" : " asym") << " clip " << clip << " x " << x[i] << " S " << s
                                        << " Z " << z;
                  } else {
                    ++outside;
                    // Clipped elements saturate at the edge of the grid.
                    EXPECT_LE(std::fabs(fq[i]), std::max(std::fabs(lo), std::fabs(hi)) + s);
                  }
                }
            }
  }
  EXPECT_GT(checked, 100000);
  EXPECT_GT(outside, 1000);  // clip 0.8 really clips
}

TEST(Quantizer, ClipRatioShrinksRange) {
  const int64_t rows = 6, cols = 128;
  const auto x = random_matrix(rows, cols, 4);
  for (bool sym : {true, false}) {
    auto c = cfg_of(4, Granularity::PerGroup, 32, sym);
    const auto full = quantize(c, x, rows, cols);
    c.clip_ratio = 0.7;
    const auto clipped = quantize(c, x, rows, cols);
    for (size_t g = 0; g < full.scales.size(); ++g) EXPECT_NEAR(clipped.scales[g], 0.7f * full.scales[g], 1e-6f * full.scales[g]);
    // The extremes of each group now saturate at the end codes.
    const auto l = full.layout();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < l.groups_per_row; ++g) {
        int64_t amin = l.group_begin(g), amax = amin, aabs = amin;
        for (int64_t k = l.group_begin(g); k < l.group_end(g); ++k) {
          const float v = x[r * cols + k];
          if (v > x[r * cols + amax]) amax = k;
          if (v < x[r * cols + amin]) amin = k;
          if (std::fabs(v) > std::fabs(x[r * cols + aabs])) aabs = k;
        }
        if (sym) {
          EXPECT_EQ(clipped.codes[r * cols + aabs], x[r * cols + aabs] > 0 ? 15 : 1);
        } else {
          EXPECT_EQ(clipped.codes[r * cols + amax], 15);
          EXPECT_EQ(clipped.codes[r * cols + amin], 0);
        }
      }
  }
}

TEST(Quantizer, PerturbationScalesStoredParametersByTheFactor) {
  const int64_t rows = 5, cols = 200;
  const auto x = random_matrix(rows, cols, 5);
  for (bool sym : {true, false})
    for (double f : {1.01, 0.99, 1.05, 0.95}) {
      auto c = cfg_of(4, Granularity::PerGroup, 64, sym);
      const auto base = quantize(c, x, rows, cols);
      c.scale_factor = f;
      const auto ps = quantize(c, x, rows, cols);
      EXPECT_EQ(ps.codes, base.codes);  // codes come from the exact parameters
      EXPECT_EQ(ps.zeros, base.zeros);
      for (size_t g = 0; g < base.scales.size(); ++g)
        EXPECT_FLOAT_EQ(ps.scales[g], static_cast<float>(base.scales[g] * f));
      const auto a = base.dequantize(), b = ps.dequantize();
      for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i] * f, 1e-6f);
      EXPECT_EQ(fake_quantize(c, x, rows, cols), b);

      c.scale_factor = 1.0;
      c.zero_factor = f;
      const auto pz = quantize(c, x, rows, cols);
      EXPECT_EQ(pz.codes, base.codes);
      EXPECT_EQ(pz.scales, base.scales);
      for (size_t g = 0; g < base.zeros.size(); ++g) EXPECT_FLOAT_EQ(pz.zeros[g], static_cast<float>(base.zeros[g] * f));
      if (f != 1.0 && !sym) {
        EXPECT_NE(pz.dequantize(), base.dequantize());
      }
    }
}

TEST(Quantizer, RoundingModes) {
  const int64_t rows = 4, cols = 256;
  const auto x = random_matrix(rows, cols, 6);
  auto c = cfg_of(4, Granularity::PerChannel, 0, false);
  const auto q = quantize(c, x, rows, cols);
  c.rounding = Rounding::Floor;
  const auto fl = fake_quantize(c, x, rows, cols);
  c.rounding = Rounding::Ceil;
  const auto ce = fake_quantize(c, x, rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k) {
      const size_t i = static_cast<size_t>(r * cols + k);
      const float s = q.scales[r], tol = 1e-6f;
      // Floor / ceil are exact only inside the grid [S(0 - Z), S(qmax - Z)] (the ends saturate).
      if (x[i] < s * (0.0f - q.zeros[r]) || x[i] > s * (15.0f - q.zeros[r])) continue;
      EXPECT_LE(fl[i], x[i] + tol);
      EXPECT_GT(fl[i], x[i] - s - tol);
      EXPECT_GE(ce[i], x[i] - tol);
      EXPECT_LT(ce[i], x[i] + s + tol);
    }
  // Stochastic rounding: reproducible, seed-dependent, unbiased. Per tensor, 4-bit symmetric,
  // max 0.7 -> S = 0.1; 0.33 = 3.3 S rounds up to 0.4 with probability 0.3.
  std::vector<float> with_range(100000, 0.33f);
  with_range[0] = 0.7f;
  auto cs = cfg_of(4, Granularity::PerTensor, 0, true);
  cs.rounding = Rounding::Stochastic;
  cs.seed = 1;
  const auto s1 = fake_quantize(cs, with_range, 1, static_cast<int64_t>(with_range.size()));
  const auto s1b = fake_quantize(cs, with_range, 1, static_cast<int64_t>(with_range.size()));
  cs.seed = 2;
  const auto s2 = fake_quantize(cs, with_range, 1, static_cast<int64_t>(with_range.size()));
  EXPECT_EQ(s1, s1b);
  EXPECT_NE(s1, s2);
  double mean = 0;
  int ups = 0;
  for (size_t i = 1; i < s1.size(); ++i) {
    mean += s1[i];
    ups += s1[i] > 0.33f;
  }
  mean /= static_cast<double>(s1.size() - 1);
  EXPECT_NEAR(mean, 0.33, 0.002);
  EXPECT_NEAR(ups / static_cast<double>(s1.size() - 1), 0.3, 0.01);
}

TEST(Quantizer, ZeroAndNonFiniteInputs) {
  const std::vector<float> z(10, 0.0f);
  for (bool sym : {true, false}) {
    const auto c = cfg_of(4, Granularity::PerChannel, 0, sym);
    EXPECT_EQ(fake_quantize(c, z, 2, 5), z);
  }
  std::vector<float> x = {1.0f, NAN, -2.0f, 0.5f};
  const auto y = fake_quantize(cfg_of(8, Granularity::PerChannel, 0, false), x, 1, 4);
  EXPECT_NEAR(y[0], 1.0f, 0.02f);
  EXPECT_NEAR(y[2], -2.0f, 0.02f);
}

TEST(Quantizer, ValidateNamesTheProblem) {
  auto expect_msg = [](QuantizerConfig c, const std::string& what) {
    try {
      c.validate();
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  QuantizerConfig c;
  c.bits = 9;
  expect_msg(c, "bits 9 out of range 2-8");
  c.bits = 1;
  expect_msg(c, "bits 1 out of range 2-8");
  c = {};
  c.granularity = Granularity::PerGroup;
  expect_msg(c, "group size must be positive");
  c = {};
  c.group_size = 64;
  expect_msg(c, "group size 64 given with per-channel granularity");
  c = {};
  c.clip_ratio = 0;
  expect_msg(c, "clip ratio 0 outside (0, 1]");
  c = {};
  c.scale_factor = 2.5;
  expect_msg(c, "scale factor 2.5 outside (0, 2)");
  c = {};
  c.zero_factor = -0.5;
  expect_msg(c, "zero-point factor -0.5 outside [0, 2]");
  EXPECT_THROW(quantize(QuantizerConfig{}, std::vector<float>(5), 2, 3), Error);
}

TEST(Quantizer, EffectiveBits) {
  EXPECT_DOUBLE_EQ(effective_bits(cfg_of(4, Granularity::PerGroup, 128, true), 256, 768), 4.0 + 16.0 / 128);
  EXPECT_DOUBLE_EQ(effective_bits(cfg_of(4, Granularity::PerGroup, 128, false), 256, 768), 4.0 + 20.0 / 128);
  EXPECT_DOUBLE_EQ(effective_bits(cfg_of(3, Granularity::PerGroup, 64, false), 10, 172), 3.0 + 3 * 19.0 / 172);
  EXPECT_DOUBLE_EQ(effective_bits(cfg_of(8, Granularity::PerChannel, 0, true), 256, 768), 8.0 + 16.0 / 768);
  EXPECT_DOUBLE_EQ(effective_bits(cfg_of(8, Granularity::PerTensor, 0, true), 256, 768), 8.0 + 16.0 / (256 * 768));
  EXPECT_DOUBLE_EQ(effective_bits(cfg_of(4, Granularity::PerGroup, 32, true), 1, 64, 32), 4.0 + 32.0 / 32);
}

TEST(Rtn, MatchesQuantizerAndReadsTensors) {
  const int64_t rows = 8, cols = 96;
  const auto x = random_matrix(rows, cols, 7);
  const auto c = cfg_of(4, Granularity::PerGroup, 32, false);
  const auto a = rtn_quantize(c, x, rows, cols);
  const auto t = Tensor::from_f32("w", {rows, cols}, x);
  const auto b = rtn_quantize(c, t);
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.scales, b.scales);
  EXPECT_EQ(a.dequantize(), fake_quantize(c, x, rows, cols));
  EXPECT_THROW(rtn_quantize(cfg_of(4, Granularity::PerToken, 0, true), x, rows, cols), Error);
  EXPECT_THROW(rtn_quantize(c, Tensor::from_f32("v", {rows * cols}, x)), Error);
}

TEST(Rtn, RealLayerErrorFallsWithBits) {
  const std::string rel = "reference/gguf-types/dequant/synth-k256-F32.blk.0.ffn_down.weight.f32";
  QEVAL_REQUIRE_SHARED(rel);
  std::ifstream in(test::shared_path(rel), std::ios::binary);
  std::vector<float> w(256 * 768);
  in.read(reinterpret_cast<char*>(w.data()), static_cast<std::streamsize>(w.size() * sizeof(float)));
  ASSERT_TRUE(in.good());
  double norm = 0;
  for (float v : w) norm += static_cast<double>(v) * v;
  double prev = 1e300;
  for (int bits = 2; bits <= 8; ++bits) {
    const auto q = rtn_quantize(cfg_of(bits, Granularity::PerGroup, 128, false), w, 256, 768).dequantize();
    double e = 0;
    for (size_t i = 0; i < w.size(); ++i) e += (static_cast<double>(w[i]) - q[i]) * (static_cast<double>(w[i]) - q[i]);
    EXPECT_LT(e, prev) << bits;
    if (bits == 8) {
      EXPECT_LT(e / norm, 1e-4);
    }
    prev = e;
  }
}

}  // namespace
}  // namespace qeval::quant
