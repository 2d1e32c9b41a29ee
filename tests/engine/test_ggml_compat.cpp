// The ggml-exact linear formats against straightforward float arithmetic.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "qeval/engine/ggml_compat.h"
#include "qeval/engine/thread_pool.h"
#include "qeval/io/dequantize.h"
#include "qeval/util/half.h"

namespace qeval {
namespace {

Tensor quantized(DType t, int64_t out, int64_t in, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(out * in));
  for (auto& x : w) x = d(g) + 0.01f;  // an offset makes the Q*_1 minima matter
  const size_t rb = *row_bytes(t, in);
  std::vector<uint8_t> bytes(rb * static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) quantize_row(t, w.data() + o * in, bytes.data() + o * rb, in);
  return Tensor::from_bytes("w", t, {out, in}, bytes);
}

class GgmlExact : public ::testing::TestWithParam<DType> {};

TEST_P(GgmlExact, AgreesWithDequantizedFloatProduct) {
  const DType t = GetParam();
  const int64_t out = 5, in = 96, rows = 3;
  const Tensor w = quantized(t, out, in, 1);
  auto L = make_ggml_exact_weights(w);
  ASSERT_EQ(L->out_features(), out);
  const auto wf = w.to_f32();
  EXPECT_EQ(L->to_f32(), wf);  // codes and scales were recovered exactly
  std::mt19937 g(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows * in));
  for (auto& v : x) v = nd(g);
  std::vector<float> y(static_cast<size_t>(rows * out));
  ThreadPool pool(2);
  L->matmul(x.data(), rows, y.data(), pool);
  // Expected: the activation rounded as ggml does (Q8 per 32-block or F16), times the weights.
  auto xr = x;
  for (int64_t r = 0; r < rows; ++r) round_activation(t == DType::F16 ? ActRounding::F16 : ActRounding::Q8_0, xr.data() + r * in, in);
  const bool has_min = t == DType::Q4_1 || t == DType::Q5_1;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double e = 0, mag = 0;
      for (int64_t i = 0; i < in; ++i) {
        e += static_cast<double>(wf[o * in + i]) * xr[r * in + i];
        mag += std::fabs(static_cast<double>(wf[o * in + i]) * xr[r * in + i]);
      }
      // Q*_1: ggml adds m * F16(d * sum q) per block, so allow the F16 rounding of that sum.
      const double tol = has_min ? 2e-3 * mag + 1e-6 : 1e-5 * mag + 1e-7;
      EXPECT_NEAR(y[r * out + o], e, tol) << dtype_name(t) << " row " << r << " out " << o;
    }
}

INSTANTIATE_TEST_SUITE_P(Types, GgmlExact, ::testing::Values(DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::F16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(GgmlExact, OnlyForSupportedTypes) {
  EXPECT_TRUE(has_ggml_exact_format(DType::Q8_0));
  EXPECT_FALSE(has_ggml_exact_format(DType::Q4_K));
  EXPECT_FALSE(has_ggml_exact_format(DType::F32));
}

}  // namespace
}  // namespace qeval
