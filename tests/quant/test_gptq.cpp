#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <vector>

#include "qeval/quant/gptq.h"
#include "qeval/quant/rtn.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

constexpr const char* kLayer = "reference/gguf-types/dequant/synth-k256-F32.blk.0.ffn_down.weight.f32";
constexpr int64_t kOut = 256, kIn = 768;

std::vector<float> load_layer() {
  std::ifstream in(test::shared_path(kLayer), std::ios::binary);
  std::vector<float> w(static_cast<size_t>(kOut * kIn));
  in.read(reinterpret_cast<char*>(w.data()), static_cast<std::streamsize>(w.size() * sizeof(float)));
  if (!in.good()) throw std::runtime_error("short read of the test layer");
  return w;
}

// Correlated inputs X [tokens, dim]: a low-rank mix of latent factors plus noise, with a few
// outlier channels (as LLM activations have), so H = 2 X^T X / n is far from diagonal.
std::vector<float> correlated_inputs(int64_t tokens, int64_t dim, uint32_t seed, int64_t rank = 256) {
  std::mt19937 mix_rng(1234);  // the same mixing (the "layer's input distribution") for every seed
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> mix(static_cast<size_t>(rank * dim));
  for (auto& v : mix) v = nd(mix_rng) / std::sqrt(static_cast<float>(rank));
  std::vector<float> chan_scale(static_cast<size_t>(dim), 1.0f);
  for (int64_t c = 0; c < dim; c += dim / 6) chan_scale[static_cast<size_t>(c)] = 12.0f;  // outlier channels
  std::mt19937 rng(seed);
  std::vector<float> x(static_cast<size_t>(tokens * dim)), z(static_cast<size_t>(rank));
  for (int64_t t = 0; t < tokens; ++t) {
    for (auto& v : z) v = nd(rng);
    for (int64_t c = 0; c < dim; ++c) {
      float s = 0.0f;
      for (int64_t k = 0; k < rank; ++k) s += z[static_cast<size_t>(k)] * mix[static_cast<size_t>(k * dim + c)];
      x[static_cast<size_t>(t * dim + c)] = chan_scale[static_cast<size_t>(c)] * (s + 0.3f * nd(rng));
    }
  }
  return x;
}

// ||W X^T - W^ X^T||^2 summed over tokens, computed directly (independent of the Hessian code).
double output_error(const std::vector<float>& w, const std::vector<float>& wq, const std::vector<float>& x,
                    int64_t rows, int64_t cols) {
  const auto tokens = static_cast<int64_t>(x.size()) / cols;
  std::vector<double> d(w.size());
  for (size_t i = 0; i < w.size(); ++i) d[i] = static_cast<double>(w[i]) - static_cast<double>(wq[i]);
  double e = 0.0;
  for (int64_t t = 0; t < tokens; ++t) {
    const float* xt = x.data() + t * cols;
    for (int64_t r = 0; r < rows; ++r) {
      const double* dr = d.data() + r * cols;
      double y = 0.0;
      for (int64_t c = 0; c < cols; ++c) y += dr[c] * xt[c];
      e += y * y;
    }
  }
  return e;
}

QuantizerConfig cfg_of(int bits, int64_t group, bool sym = true) {
  QuantizerConfig c;
  c.bits = bits;
  c.granularity = group > 0 ? Granularity::PerGroup : Granularity::PerChannel;
  c.group_size = group;
  c.symmetric = sym;
  return c;
}

std::vector<double> hessian_of(const std::vector<float>& x, int64_t dim) {
  HessianAccumulator acc(dim);
  const auto tokens = static_cast<int64_t>(x.size()) / dim;
  // Two uneven batches, to exercise the running mean.
  const int64_t first = tokens / 3;
  acc.add(std::span<const float>(x.data(), static_cast<size_t>(first * dim)), first);
  acc.add(std::span<const float>(x.data() + first * dim, static_cast<size_t>((tokens - first) * dim)), tokens - first);
  EXPECT_EQ(acc.samples(), tokens);
  return acc.hessian();
}

TEST(Hessian, IsTwiceTheMeanOuterProduct) {
  const int64_t dim = 37, tokens = 301;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(dim * tokens));
  for (auto& v : x) v = nd(rng);
  HessianAccumulator acc(dim);
  for (int64_t t0 = 0; t0 < tokens; t0 += 100) {
    const int64_t nt = std::min<int64_t>(100, tokens - t0);
    acc.add(std::span<const float>(x.data() + t0 * dim, static_cast<size_t>(nt * dim)), nt);
  }
  acc.add({}, 0);
  EXPECT_EQ(acc.samples(), tokens);
  EXPECT_EQ(acc.dim(), dim);
  const auto h = acc.hessian();
  for (int64_t i = 0; i < dim; ++i)
    for (int64_t j = 0; j < dim; ++j) {
      double s = 0;
      for (int64_t t = 0; t < tokens; ++t) s += static_cast<double>(x[t * dim + i]) * x[t * dim + j];
      EXPECT_NEAR(h[i * dim + j], 2.0 * s / tokens, 1e-12 * (1.0 + std::fabs(s)));
    }
  EXPECT_THROW(acc.add(std::span<const float>(x.data(), 10), 1), Error);
}

struct Case {
  int bits;
  int64_t group;
  bool sym;
};

TEST(Gptq, BeatsRtnOnRealLayer) {
  QEVAL_REQUIRE_SHARED(kLayer);
  const auto w = load_layer();
  const auto x = correlated_inputs(512, kIn, 1);
  const auto held_out = correlated_inputs(512, kIn, 2);
  const auto h = hessian_of(x, kIn);
  for (const Case& cs : {Case{4, 128, true}, Case{3, 128, true}, Case{4, 0, true}, Case{4, 128, false},
                         Case{3, 128, false}, Case{2, 64, false}}) {
    const auto cfg = cfg_of(cs.bits, cs.group, cs.sym);
    const auto rtn = rtn_quantize(cfg, w, kOut, kIn).dequantize();
    const double e_rtn = output_error(w, rtn, x, kOut, kIn);
    const double e_rtn_ho = output_error(w, rtn, held_out, kOut, kIn);
    for (bool act_order : {false, true}) {
      GptqOptions o;
      o.act_order = act_order;
      const auto g = gptq_quantize(cfg, w, kOut, kIn, h, o);
      const double e = output_error(w, g.weights, x, kOut, kIn);
      const double e_ho = output_error(w, g.weights, held_out, kOut, kIn);
      std::printf("[ ratio    ] w%d%s%s%s: GPTQ/RTN calibration %.4f, held-out %.4f\n", cs.bits,
                  cs.group ? ("g" + std::to_string(cs.group)).c_str() : "", cs.sym ? "" : "-asym",
                  act_order ? " actorder" : "", e / e_rtn, e_ho / e_rtn_ho);
      SCOPED_TRACE(std::to_string(cs.bits) + " bits, group " + std::to_string(cs.group) +
                   (act_order ? ", act-order" : ""));
      EXPECT_LT(e, e_rtn);
      EXPECT_LT(e_ho, e_rtn_ho);
      EXPECT_EQ(g.dead_columns, 0);
      // The result is an ordinary quantized matrix on the same grid layout.
      EXPECT_EQ(g.quantized.scales.size(), static_cast<size_t>(group_layout(cfg, kOut, kIn).count()));
      EXPECT_EQ(g.quantized.dequantize(), g.weights);
      for (uint8_t code : g.quantized.codes) ASSERT_LE(code, cfg.qmax());
    }
  }
}

TEST(Gptq, IdentityHessianEqualsRtn) {
  QEVAL_REQUIRE_SHARED(kLayer);
  const auto w = load_layer();
  std::vector<double> eye(static_cast<size_t>(kIn * kIn), 0.0);
  for (int64_t i = 0; i < kIn; ++i) eye[i * kIn + i] = 1.0;
  QuantizerConfig per_tensor = cfg_of(4, 0);
  per_tensor.granularity = Granularity::PerTensor;
  for (const auto& cfg : {cfg_of(4, 128), cfg_of(3, 64, false), cfg_of(4, 0), cfg_of(2, 100, false), per_tensor})
    for (bool act_order : {false, true}) {
      GptqOptions o;
      o.act_order = act_order;
      const auto g = gptq_quantize(cfg, w, kOut, kIn, eye, o);
      const auto r = rtn_quantize(cfg, w, kOut, kIn);
      EXPECT_EQ(g.quantized.codes, r.codes);
      EXPECT_EQ(g.quantized.scales, r.scales);
      EXPECT_EQ(g.quantized.zeros, r.zeros);
      EXPECT_EQ(g.weights, r.dequantize());
    }
}

TEST(Gptq, BlockSizeChangesOnlyRounding) {
  QEVAL_REQUIRE_SHARED(kLayer);
  const auto w = load_layer();
  const auto x = correlated_inputs(512, kIn, 1);
  const auto h = hessian_of(x, kIn);
  for (bool act_order : {false, true})
    for (const auto& cfg : {cfg_of(4, 128), cfg_of(3, 64, false)}) {
      GptqOptions a;
      a.act_order = act_order;
      GptqOptions b = a;
      b.block_size = 32;
      GptqOptions c = a;
      c.block_size = 100;  // not a divisor of the group size nor of 768
      const auto ra = gptq_quantize(cfg, w, kOut, kIn, h, a);
      const auto ea = output_error(w, ra.weights, x, kOut, kIn);
      for (const auto& ob : {b, c}) {
        const auto rb = gptq_quantize(cfg, w, kOut, kIn, h, ob);
        size_t diff = 0;
        for (size_t i = 0; i < ra.quantized.codes.size(); ++i) diff += ra.quantized.codes[i] != rb.quantized.codes[i];
        const double frac = static_cast<double>(diff) / static_cast<double>(ra.quantized.codes.size());
        const auto eb = output_error(w, rb.weights, x, kOut, kIn);
        std::printf("[ block    ] block %lld vs 128%s: %.5f%% codes differ, error ratio %.6f\n",
                    static_cast<long long>(ob.block_size), act_order ? " (act-order)" : "", 100 * frac, eb / ea);
        EXPECT_LT(frac, 1e-3);
        EXPECT_NEAR(eb / ea, 1.0, 1e-3);
      }
    }
}

TEST(Gptq, DeadColumnsAreZeroed) {
  QEVAL_REQUIRE_SHARED(kLayer);
  const auto w = load_layer();
  auto x = correlated_inputs(512, kIn, 1);
  const std::vector<int64_t> dead = {0, 5, 300, 767};
  for (int64_t t = 0; t < 512; ++t)
    for (int64_t c : dead) x[t * kIn + c] = 0.0f;
  const auto h = hessian_of(x, kIn);
  const auto cfg = cfg_of(4, 128, false);
  for (bool act_order : {false, true}) {
    GptqOptions o;
    o.act_order = act_order;
    const auto g = gptq_quantize(cfg, w, kOut, kIn, h, o);
    EXPECT_EQ(g.dead_columns, static_cast<int64_t>(dead.size()));
    for (int64_t r = 0; r < kOut; ++r)
      for (int64_t c : dead) EXPECT_EQ(g.weights[r * kIn + c], 0.0f);
    const auto rtn = rtn_quantize(cfg, w, kOut, kIn).dequantize();
    EXPECT_LT(output_error(w, g.weights, x, kOut, kIn), output_error(w, rtn, x, kOut, kIn));
  }
}

TEST(Gptq, ActOrderKeepsGroupsInOriginalColumnOrder) {
  // A layer where act-order really permutes: channel scales grow with the column index, so the
  // processing order is reversed. Groups must still be columns [0,32), [32,64), ... with
  // parameters that reproduce the dequantized weights.
  const int64_t rows = 16, cols = 96;
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  std::vector<float> w(rows * cols), x(400 * cols);
  for (auto& v : w) v = nd(rng);
  for (int64_t t = 0; t < 400; ++t)
    for (int64_t c = 0; c < cols; ++c) x[t * cols + c] = nd(rng) * (1.0f + 0.05f * static_cast<float>(c));
  const auto h = hessian_of(x, cols);
  const auto cfg = cfg_of(3, 32, false);
  GptqOptions o;
  o.act_order = true;
  const auto g = gptq_quantize(cfg, w, rows, cols, h, o);
  const auto l = group_layout(cfg, rows, cols);
  ASSERT_EQ(g.quantized.scales.size(), static_cast<size_t>(rows * 3));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const auto gi = static_cast<size_t>(l.index(r, c));
      EXPECT_EQ(gi, static_cast<size_t>(r * 3 + c / 32));
      EXPECT_EQ(g.weights[r * cols + c],
                dequantize_code(g.quantized.codes[r * cols + c], {g.quantized.scales[gi], g.quantized.zeros[gi]}));
    }
  const auto rtn = rtn_quantize(cfg, w, rows, cols).dequantize();
  EXPECT_LT(output_error(w, g.weights, x, rows, cols), output_error(w, rtn, x, rows, cols));
}

TEST(Gptq, PerturbationAppliesToStoredParameters) {
  QEVAL_REQUIRE_SHARED(kLayer);
  const auto w = load_layer();
  const auto h = hessian_of(correlated_inputs(256, kIn, 1), kIn);
  auto cfg = cfg_of(4, 128);
  const auto base = gptq_quantize(cfg, w, kOut, kIn, h);
  cfg.scale_factor = 1.05;
  const auto p = gptq_quantize(cfg, w, kOut, kIn, h);
  EXPECT_EQ(p.quantized.codes, base.quantized.codes);
  for (size_t i = 0; i < base.quantized.scales.size(); ++i)
    EXPECT_FLOAT_EQ(p.quantized.scales[i], static_cast<float>(base.quantized.scales[i] * 1.05));
}

TEST(Gptq, RejectsBadInput) {
  const std::vector<float> w(4 * 8, 0.5f);
  std::vector<double> h(8 * 8, 0.0);
  for (int i = 0; i < 8; ++i) h[i * 8 + i] = 1.0;
  EXPECT_THROW(gptq_quantize(cfg_of(4, 0), w, 4, 8, std::vector<double>(7 * 7)), Error);
  EXPECT_THROW(gptq_quantize(cfg_of(4, 0), w, 4, 7, h), Error);
  QuantizerConfig tok = cfg_of(4, 0);
  tok.granularity = Granularity::PerToken;
  EXPECT_THROW(gptq_quantize(tok, w, 4, 8, h), Error);
  GptqOptions o;
  o.block_size = 0;
  EXPECT_THROW(gptq_quantize(cfg_of(4, 0), w, 4, 8, h, o), Error);
  // Not positive definite without dampening: a rank-1 Hessian.
  std::vector<double> ones(8 * 8, 1.0);
  GptqOptions nodamp;
  nodamp.damp = 0.0;
  EXPECT_THROW(gptq_quantize(cfg_of(4, 0), w, 4, 8, ones, nodamp), Error);
  // With the default dampening it works.
  EXPECT_NO_THROW(gptq_quantize(cfg_of(4, 0), w, 4, 8, ones));
  std::vector<double> bad = h;
  bad[3] = NAN;
  EXPECT_THROW(gptq_quantize(cfg_of(4, 0), w, 4, 8, bad), Error);
}

TEST(Gptq, LargeLayerFinishes) {
  const int64_t n = 1024, tokens = 2048;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  std::vector<float> w(n * n);
  for (auto& v : w) v = nd(rng) * 0.02f;
  const auto x = correlated_inputs(tokens, n, 5);
  const auto h = hessian_of(x, n);
  const auto cfg = cfg_of(4, 128, false);
  GptqOptions o;
  o.act_order = true;
  const auto g = gptq_quantize(cfg, w, n, n, h, o);
  ASSERT_EQ(g.weights.size(), w.size());
  // Cheap check through the Hessian: tr(D H D^T) is proportional to the output error.
  auto herr = [&](const std::vector<float>& wq) {
    double e = 0;
    std::vector<double> d(n);
    for (int64_t r = 0; r < n; r += 16) {  // a sample of rows keeps the check fast
      for (int64_t c = 0; c < n; ++c) d[c] = static_cast<double>(w[r * n + c]) - wq[r * n + c];
      for (int64_t i = 0; i < n; ++i) {
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += h[i * n + j] * d[j];
        e += d[i] * s;
      }
    }
    return e;
  };
  const double ratio = herr(g.weights) / herr(rtn_quantize(cfg, w, n, n).dequantize());
  std::printf("[ ratio    ] 1024x1024 w4g128-asym actorder: GPTQ/RTN %.4f\n", ratio);
  EXPECT_LT(ratio, 1.0);
}

}  // namespace
}  // namespace qeval::quant
