// Integer-activation kernels (kernels/int8_activation.h): the activation quantizer's formula,
// and every path (AVX-512 VNNI, AVX2, scalar, where this CPU has them) on odd shapes against
// the scalar path (bit for bit: same integers, same float combination), against an exact
// double-precision product of the dequantized activation and weights (header bound
// (G + 3) * 2^-24 * M), and against the simulated float product (fake-quantized activation
// times dequantized weights, summed in float).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "qeval/kernels/int8_activation.h"
#include "qeval/kernels/int_kernels_internal.h"
#include "random_codes.h"

namespace qeval::kernels {
namespace {

constexpr IntIsa kIntIsas[] = {IntIsa::Scalar, IntIsa::Avx2, IntIsa::Avx512Vnni};
const double kU = std::ldexp(1.0, -24);

struct IntFixture {
  PackedMatrix m;
  std::vector<uint8_t> bytes;
  std::vector<float> scales, zeros;
  std::vector<float> ref;  // dequantized weights, rows x cols
  std::vector<int> codes;  // rows x cols
  std::string label;
};

// group 0: per channel; group < 0: per tensor. Codes over the whole range (asym: 0 too),
// integral zero-points.
// fractional: every third zero-point gets + 0.37 (perturbed / fp16-adjusted zeros).
IntFixture make_fixture(Format f, int64_t rows, int64_t cols, int64_t group, bool asym, uint32_t seed,
                        bool fractional = false) {
  std::mt19937 rng(seed);
  IntFixture fx;
  const int bits = f == Format::Int8 ? 8 : 4;
  const bool per_tensor = group < 0;
  const int64_t gs = group <= 0 ? cols : group;
  const int64_t gpr = per_tensor ? 0 : (cols + gs - 1) / gs;
  fx.label = std::string(format_name(f)) + " " + std::to_string(rows) + "x" + std::to_string(cols) + " g" +
             std::to_string(group) + (asym ? " asym" : " sym") + (fractional ? " fractional zeros" : "");
  test::RandomCodes rc = test::random_codes(f, rows, cols, group, asym, fractional, rng);
  fx.bytes = std::move(rc.bytes);
  fx.scales = std::move(rc.scales);
  fx.zeros = std::move(rc.zeros);
  const std::vector<int>& codes = rc.codes;
  fx.codes = codes;
  fx.m = test::int_matrix(f, rows, cols, group, fx.bytes, fx.scales, fx.zeros);
  fx.ref.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const size_t gi = per_tensor ? 0 : static_cast<size_t>(r * gpr + c / gs);
      const float z = asym ? fx.zeros[gi] : static_cast<float>(1 << (bits - 1));
      fx.ref[static_cast<size_t>(r * cols + c)] = fx.scales[gi] * (static_cast<float>(codes[static_cast<size_t>(r * cols + c)]) - z);
    }
  return fx;
}

std::vector<float> random_activation(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  x[static_cast<size_t>(n / 3)] = 9.5f;  // an outlier feature sets the scale
  return x;
}

void check_int_paths(const IntFixture& fx) {
  SCOPED_TRACE(fx.label);
  validate(fx.m, fx.label);
  ASSERT_TRUE(int_gemv_supported(fx.m));
  const int64_t rows = fx.m.rows, cols = fx.m.cols, groups = int_group_count(fx.m);
  const auto x = random_activation(cols, 11);
  std::vector<int8_t> codes(static_cast<size_t>(cols));
  const float s = quantize_activation_row(x.data(), cols, 8, 1.0f, codes.data());
  std::vector<float> xdq(static_cast<size_t>(cols));  // the simulated (fake-quantized) activation
  for (int64_t c = 0; c < cols; ++c) xdq[static_cast<size_t>(c)] = s * static_cast<float>(codes[static_cast<size_t>(c)]);

  std::vector<int8_t> prepared(int_activation_bytes(fx.m));
  std::vector<int32_t> sums(static_cast<size_t>(groups));
  std::vector<float> y_scalar(static_cast<size_t>(rows));
  prepare_int_activation(fx.m, IntIsa::Scalar, codes.data(), prepared.data(), sums.data());
  int_gemv(fx.m, IntIsa::Scalar, prepared.data(), sums.data(), s, y_scalar.data(), 0, rows);

  const int64_t gs = groups > 1 ? fx.m.group_size : cols;
  // Per row, for the VNNI 4-bit multi-group path (not bit-identical to the others): the exact
  // product and its bound (n / 128 + 8) u M, plus the float zero-point term of asymmetric grids.
  std::vector<double> exact_of(static_cast<size_t>(rows)), wide_bound(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double exact = 0, mag = 0, zmag = 0, zall = 0;
    float simulated = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const float w = fx.ref[static_cast<size_t>(r * cols + c)];
      const double t = static_cast<double>(xdq[static_cast<size_t>(c)]) * w;
      exact += t;
      mag += std::fabs(t);
      simulated += xdq[static_cast<size_t>(c)] * w;
    }
    // A fractional zero-point is applied in float: z_g * sum(q_x) rounds, relative to its own size.
    for (int64_t g = 0; g < groups; ++g) {
      const float z = fx.m.zero(r, g);
      double dot = 0, sx = 0;
      for (int64_t c = g * gs; c < std::min(cols, (g + 1) * gs); ++c) {
        dot += std::fabs(static_cast<double>(codes[static_cast<size_t>(c)]) * fx.codes[static_cast<size_t>(r * cols + c)]);
        sx += codes[static_cast<size_t>(c)];
      }
      const double zterm = static_cast<double>(s) * std::fabs(fx.m.scale(r, g)) * (dot + std::fabs(z * sx));
      if (z != std::floor(z)) zmag += zterm;
      if (fx.m.zeros) zall += zterm;
    }
    exact_of[static_cast<size_t>(r)] = exact;
    wide_bound[static_cast<size_t>(r)] = (static_cast<double>(cols) / 128.0 + 8.0) * kU * mag + 3.0 * kU * zall;
    const double ours = (static_cast<double>(groups) + 3.0) * kU * mag + 3.0 * kU * zmag;
    const double sim = static_cast<double>(cols) * kU * mag;
    EXPECT_LE(std::fabs(y_scalar[static_cast<size_t>(r)] - exact), ours) << "row " << r;
    EXPECT_LE(std::fabs(y_scalar[static_cast<size_t>(r)] - simulated), ours + sim) << "row " << r;
  }

  for (IntIsa isa : kIntIsas) {
    if (!int_isa_available(isa)) {
      std::printf("[ INFO     ] %s: %s not available on this CPU, skipped\n", fx.label.c_str(), int_isa_name(isa));
      continue;
    }
    if (usable_int_isa(fx.m, isa) != isa) continue;  // no such path for this layout
    SCOPED_TRACE(int_isa_name(isa));
    prepare_int_activation(fx.m, isa, codes.data(), prepared.data(), sums.data());
    std::vector<float> y(static_cast<size_t>(rows)), y_split(static_cast<size_t>(rows));
    int_gemv(fx.m, isa, prepared.data(), sums.data(), s, y.data(), 0, rows);
    const bool wide = isa == IntIsa::Avx512Vnni && groups > 1 && detail::vnni_int4_wide(fx.m);
    if (wide) {
      for (int64_t r = 0; r < rows; ++r)
        EXPECT_LE(std::fabs(y[static_cast<size_t>(r)] - exact_of[static_cast<size_t>(r)]), wide_bound[static_cast<size_t>(r)]) << "row " << r;
    } else {
      EXPECT_EQ(y, y_scalar);
    }
    for (int64_t b = 0; b < rows; b += 5) {  // row ranges (odd starts, a single last row)
      const int64_t e = std::min(rows, b + 5);
      int_gemv(fx.m, isa, prepared.data(), sums.data(), s, y_split.data() + b, b, e);
    }
    EXPECT_EQ(y_split, y);
  }
}

TEST(IntActivation, Int8PerChannel) { check_int_paths(make_fixture(Format::Int8, 37, 300, 0, false, 1)); }
TEST(IntActivation, Int8PerChannelAsymLong) { check_int_paths(make_fixture(Format::Int8, 9, 5000, 0, true, 2)); }
TEST(IntActivation, Int8PerTensor) { check_int_paths(make_fixture(Format::Int8, 13, 172, -1, false, 3)); }
TEST(IntActivation, Int8Grouped) {
  check_int_paths(make_fixture(Format::Int8, 19, 200, 64, false, 4));   // last group of 8
  check_int_paths(make_fixture(Format::Int8, 17, 333, 32, true, 5));
  check_int_paths(make_fixture(Format::Int8, 5, 172, 48, true, 6));     // group not a multiple of 32
}
TEST(IntActivation, Int4Groups) {
  for (int64_t g : {32, 64, 128})
    for (bool asym : {false, true}) {
      check_int_paths(make_fixture(Format::Int4, 21, 172, g, asym, 7));  // last group of 12 / 44
      check_int_paths(make_fixture(Format::Int4, 3, 512, g, asym, 8));
      check_int_paths(make_fixture(Format::Int4, 11, 333, g, asym, 9));  // odd columns: row-aligned bytes
    }
  // Groups of several 128-element chunks (summed in integers before one conversion), with a
  // shorter last group and a partial last chunk.
  for (bool asym : {false, true}) {
    check_int_paths(make_fixture(Format::Int4, 13, 700, 256, asym, 17));
    check_int_paths(make_fixture(Format::Int4, 6, 1001, 384, asym, 18));
  }
}
TEST(IntActivation, Int4PerChannelAndTensor) {
  check_int_paths(make_fixture(Format::Int4, 15, 172, 0, false, 10));
  check_int_paths(make_fixture(Format::Int4, 15, 97, 0, true, 11));
  check_int_paths(make_fixture(Format::Int4, 7, 320, -1, false, 12));
}
TEST(IntActivation, Int4UnalignedGroupsRunScalar) {
  const IntFixture fx = make_fixture(Format::Int4, 9, 150, 48, true, 13);
  EXPECT_EQ(usable_int_isa(fx.m, IntIsa::Avx512Vnni), IntIsa::Scalar);
  check_int_paths(fx);
}

TEST(IntActivation, FractionalZeroPoints) {
  check_int_paths(make_fixture(Format::Int8, 17, 333, 32, true, 14, true));
  check_int_paths(make_fixture(Format::Int4, 21, 172, 64, true, 15, true));
  check_int_paths(make_fixture(Format::Int4, 5, 97, 0, true, 16, true));
}

TEST(IntActivation, UnsupportedMatricesAreRefused) {
  IntFixture fx = make_fixture(Format::Int8, 4, 64, 32, true, 14);
  EXPECT_TRUE(int_gemv_supported(fx.m));
  fx.zeros[1] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(int_gemv_supported(fx.m));
  fx.zeros[1] = 3.0f;
  const int64_t ptr[5] = {0, 1, 1, 1, 1};
  const int32_t oc[1] = {3};
  const float ov[1] = {2.0f};
  fx.m.outlier_row_ptr = ptr;
  fx.m.outlier_cols = oc;
  fx.m.outlier_values = ov;
  EXPECT_FALSE(int_gemv_supported(fx.m));
}

TEST(IntActivation, QuantizerFormula) {
  std::vector<float> x = random_activation(257, 21);
  std::vector<int8_t> q(x.size());
  const float s = quantize_activation_row(x.data(), 257, 8, 1.0f, q.data());
  EXPECT_EQ(s, 9.5f / 127.0f);
  int top = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_LE(std::fabs(s * static_cast<float>(q[i]) - x[i]), 0.5f * s * (1 + 1e-6f)) << i;
    top = std::max(top, std::abs(static_cast<int>(q[i])));
  }
  EXPECT_EQ(top, 127);
  // All zeros: scale 1, codes 0. NaN: code 0, ignored by the range. Clipping saturates at 127.
  std::vector<float> z(40, 0.0f);
  EXPECT_EQ(quantize_activation_row(z.data(), 40, 8, 1.0f, q.data()), 1.0f);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(q[static_cast<size_t>(i)], 0);
  z[3] = std::numeric_limits<float>::quiet_NaN();
  z[5] = -2.0f;
  z[6] = 1.0f;
  EXPECT_EQ(quantize_activation_row(z.data(), 40, 8, 0.5f, q.data()), 0.5f * 2.0f / 127.0f);
  EXPECT_EQ(q[3], 0);
  EXPECT_EQ(q[5], -127);
  EXPECT_EQ(q[6], 127);
  // 4-bit activations use the same codes format (|q| <= 7).
  EXPECT_EQ(quantize_activation_row(x.data(), 257, 4, 1.0f, q.data()), 9.5f / 7.0f);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_LE(std::abs(static_cast<int>(q[i])), 7);
}

}  // namespace
}  // namespace qeval::kernels
