// Packed kernels: every instruction-set path (scalar, AVX2, AVX-512 where this CPU has them)
// on odd shapes, against an independent double-precision reference built from this file's own
// decoders, and against the scalar path. Tolerance: packed_matrix.h's summation bound
// (n/8 + 64 + 2*outliers) * 2^-24 * sum|x_i w_i|; dequantize_rows must match bit for bit; the
// many-row product (packed_gemm.h), where a matrix has one, within (n + 1) * 2^-24 * sum|x_i w_i|.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "qeval/kernels/packed_gemm.h"
#include "qeval/kernels/packed_matrix.h"
#include "qeval/util/half.h"
#include "random_codes.h"

namespace qeval::kernels {
namespace {

constexpr Isa kIsas[] = {Isa::Scalar, Isa::Avx2, Isa::Avx512};

// Owns the bytes and parameters a PackedMatrix points at, plus the reference weights.
struct Fixture {
  PackedMatrix m;
  std::vector<uint8_t> bytes;
  std::vector<float> scales, zeros;
  std::vector<int64_t> row_ptr;
  std::vector<int32_t> ocols;
  std::vector<float> ovals;
  std::vector<int32_t> order;
  std::vector<float> ref;  // rows x cols, this file's own decoding
  std::string label;
};

uint16_t random_half(std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  return f32_to_fp16(u(rng));
}
float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

Fixture make_ggml(Format f, int64_t rows, int64_t cols, uint32_t seed, bool permute) {
  std::mt19937 rng(seed);
  Fixture fx;
  fx.label = std::string(format_name(f)) + " " + std::to_string(rows) + "x" + std::to_string(cols) + (permute ? " permuted" : "");
  const size_t rb = format_row_bytes(f, cols);
  fx.bytes.resize(rb * static_cast<size_t>(rows));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : fx.bytes) b = static_cast<uint8_t>(byte(rng));
  // Sensible scales (random bytes could be Inf/NaN halves).
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = fx.bytes.data() + rb * static_cast<size_t>(r);
    if (f == Format::F16) {
      for (int64_t c = 0; c < cols; ++c) {
        const uint16_t h = random_half(rng, -2.0f, 2.0f);
        std::memcpy(row + 2 * c, &h, 2);
      }
      continue;
    }
    const size_t bb = f == Format::Q8_0 ? 34 : f == Format::Q4_0 ? 18 : 20;
    for (int64_t b = 0; b < cols / 32; ++b) {
      const uint16_t d = random_half(rng, -0.05f, 0.05f);
      std::memcpy(row + bb * static_cast<size_t>(b), &d, 2);
      if (f == Format::Q4_1) {
        const uint16_t mn = random_half(rng, -0.4f, 0.1f);
        std::memcpy(row + bb * static_cast<size_t>(b) + 2, &mn, 2);
      }
    }
  }
  if (permute) {
    for (int64_t r = 0; r < rows; ++r) fx.order.push_back(static_cast<int32_t>(rows - 1 - r));
  }
  fx.m.format = f;
  fx.m.rows = rows;
  fx.m.cols = cols;
  fx.m.data = fx.bytes.data();
  fx.m.row_bytes = rb;
  fx.m.row_order = fx.order.empty() ? nullptr : fx.order.data();
  fx.ref.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = fx.bytes.data() + rb * static_cast<size_t>(permute ? rows - 1 - r : r);
    for (int64_t c = 0; c < cols; ++c) {
      float w = 0;
      const int j = static_cast<int>(c % 32);
      if (f == Format::F16) {
        w = h2f(row + 2 * c);
      } else if (f == Format::Q8_0) {
        const uint8_t* b = row + 34 * (c / 32);
        w = static_cast<float>(static_cast<int8_t>(b[2 + j])) * h2f(b);
      } else if (f == Format::Q4_0) {
        const uint8_t* b = row + 18 * (c / 32);
        const int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
        w = static_cast<float>(q - 8) * h2f(b);
      } else {
        const uint8_t* b = row + 20 * (c / 32);
        const int q = j < 16 ? (b[4 + j] & 15) : (b[4 + j - 16] >> 4);
        const float t = static_cast<float>(q) * h2f(b);
        w = t + h2f(b + 2);
      }
      fx.ref[static_cast<size_t>(r * cols + c)] = w;
    }
  }
  return fx;
}

// QEval integer layouts. group 0: per channel; group < 0: per tensor.
Fixture make_int(Format f, int64_t rows, int64_t cols, int64_t group, bool asym, int outliers_per_row, uint32_t seed) {
  std::mt19937 rng(seed);
  Fixture fx;
  const int bits = f == Format::Int8 ? 8 : 4;
  const bool per_tensor = group < 0;
  const int64_t gs = group <= 0 ? cols : group;
  const int64_t gpr = per_tensor ? 0 : (cols + gs - 1) / gs;
  fx.label = std::string(format_name(f)) + " " + std::to_string(rows) + "x" + std::to_string(cols) + " g" +
             std::to_string(group) + (asym ? " asym" : " sym") + " outliers " + std::to_string(outliers_per_row);
  test::RandomCodes rc = test::random_codes(f, rows, cols, group, asym, /*fractional_zeros=*/true, rng);  // perturbed zeros too
  fx.bytes = std::move(rc.bytes);
  fx.scales = std::move(rc.scales);
  fx.zeros = std::move(rc.zeros);
  const std::vector<int>& codes = rc.codes;
  if (outliers_per_row > 0) {
    fx.row_ptr.push_back(0);
    std::uniform_real_distribution<float> ov(-3.0f, 3.0f);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = r % 3; c < cols && c < (r % 3) + 7 * outliers_per_row; c += 7) {
        fx.ocols.push_back(static_cast<int32_t>(c));
        fx.ovals.push_back(ov(rng));
      }
      fx.row_ptr.push_back(static_cast<int64_t>(fx.ocols.size()));
    }
  }
  fx.m = test::int_matrix(f, rows, cols, group, fx.bytes, fx.scales, fx.zeros);
  if (outliers_per_row > 0) {
    fx.m.outlier_row_ptr = fx.row_ptr.data();
    fx.m.outlier_cols = fx.ocols.data();
    fx.m.outlier_values = fx.ovals.data();
  }
  fx.ref.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const size_t gi = per_tensor ? 0 : static_cast<size_t>(r * gpr + c / gs);
      const float z = asym ? fx.zeros[gi] : static_cast<float>(1 << (bits - 1));
      fx.ref[static_cast<size_t>(r * cols + c)] = fx.scales[gi] * (static_cast<float>(codes[static_cast<size_t>(r * cols + c)]) - z);
    }
    if (outliers_per_row > 0)
      for (int64_t k = fx.row_ptr[static_cast<size_t>(r)]; k < fx.row_ptr[static_cast<size_t>(r) + 1]; ++k)
        fx.ref[static_cast<size_t>(r * cols + fx.ocols[static_cast<size_t>(k)])] = fx.ovals[static_cast<size_t>(k)];
  }
  return fx;
}

std::vector<float> random_x(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  return x;
}

// Exact sum in double, the bound's M, the number of outliers of row r, and (Int formats)
// sum |x_c * s * z| over the row (the AVX2 GEMV's extra share of M, packed_matrix.h).
struct RowRef {
  double exact = 0, magnitude = 0, zero_point_magnitude = 0;
  int64_t outliers = 0;
};
RowRef row_ref(const Fixture& fx, int64_t r, const std::vector<float>& x) {
  RowRef rr;
  const int64_t n = fx.m.cols;
  for (int64_t c = 0; c < n; ++c) {
    const double t = static_cast<double>(x[static_cast<size_t>(c)]) * fx.ref[static_cast<size_t>(r * n + c)];
    rr.exact += t;
    rr.magnitude += std::fabs(t);
    if (fx.m.format == Format::Int8 || fx.m.format == Format::Int4) {
      const int64_t g = fx.m.scale_row_stride ? c / fx.m.group_size : 0;
      rr.zero_point_magnitude += std::fabs(static_cast<double>(x[static_cast<size_t>(c)]) * fx.m.scale(r, g) * fx.m.zero(r, g));
    }
  }
  if (!fx.row_ptr.empty()) {
    rr.outliers = fx.row_ptr[static_cast<size_t>(r) + 1] - fx.row_ptr[static_cast<size_t>(r)];
    // the correction term also rounds x_c * w_grid: bound it by the largest grid weight
    for (int64_t k = fx.row_ptr[static_cast<size_t>(r)]; k < fx.row_ptr[static_cast<size_t>(r) + 1]; ++k) {
      const int64_t c = fx.ocols[static_cast<size_t>(k)];
      rr.magnitude += std::fabs(x[static_cast<size_t>(c)]) * (std::fabs(fx.ovals[static_cast<size_t>(k)]) + 16.0 * 0.05 * 256);
    }
  }
  return rr;
}

double bound(int64_t n, const RowRef& rr) {
  return (static_cast<double>(n) / 8.0 + 64.0 + 2.0 * static_cast<double>(rr.outliers)) * std::ldexp(1.0, -24) * rr.magnitude;
}

// Many activation rows (fewer than, and not a multiple of, the micro-kernel's 8) through gemm():
// each output within the recursive-summation bound of the exact sum, and the same value however
// the output range is split (uneven pieces, some shorter than a 32-feature panel).
void check_gemm(const Fixture& fx, Isa isa) {
  SCOPED_TRACE("gemm");
  const int64_t rows = fx.m.rows, cols = fx.m.cols;
  for (int64_t tokens : {1, 9, 17}) {
    const auto xs = random_x(tokens * cols, 99 + static_cast<uint32_t>(tokens));
    std::vector<float> y(static_cast<size_t>(tokens * rows)), y_split(static_cast<size_t>(tokens * rows));
    gemm(fx.m, isa, xs.data(), tokens, y.data(), rows, 0, rows);
    for (int64_t s = 0; s < rows;) {
      const int64_t e = std::min(rows, s + 1 + 13 * (s % 3));
      gemm(fx.m, isa, xs.data(), tokens, y_split.data(), rows, s, e);
      s = e;
    }
    for (int64_t t = 0; t < tokens; ++t) {
      const std::vector<float> x(xs.begin() + t * cols, xs.begin() + (t + 1) * cols);
      for (int64_t r = 0; r < rows; ++r) {
        const RowRef rr = row_ref(fx, r, x);
        const size_t i = static_cast<size_t>(t * rows + r);
        EXPECT_NEAR(y[i], rr.exact, static_cast<double>(cols + 1) * std::ldexp(1.0, -24) * rr.magnitude)
            << "token " << t << " row " << r;
        EXPECT_EQ(y[i], y_split[i]) << "token " << t << " row " << r << ": depends on the output range";
      }
    }
  }
}

void check_all_paths(const Fixture& fx) {
  SCOPED_TRACE(fx.label);
  validate(fx.m, fx.label);
  const int64_t rows = fx.m.rows, cols = fx.m.cols;
  const auto x = random_x(cols, 1234 + static_cast<uint32_t>(cols));
  std::vector<float> scratch(activation_scratch_floats(fx.m) + 1);
  std::vector<float> y_scalar(static_cast<size_t>(rows));
  gemv(fx.m, Isa::Scalar, x.data(), prepare_activation(fx.m, Isa::Scalar, x.data(), scratch.data()), y_scalar.data(), 0, rows);
  int paths = 0;
  for (Isa isa : kIsas) {
    if (!isa_available(isa)) {
      std::printf("[ INFO     ] %s: %s not available on this CPU, skipped\n", fx.label.c_str(), isa_name(isa));
      continue;
    }
    const Isa used = usable_isa(fx.m, isa);
    if (used != isa) continue;  // this layout has no such path (Int4 groups not a multiple of 32)
    ++paths;
    SCOPED_TRACE(isa_name(isa));
    // dequantize_rows: bit-exact, on a sub-range of rows.
    const int64_t b = rows > 2 ? 1 : 0;
    std::vector<float> deq(static_cast<size_t>((rows - b) * cols));
    dequantize_rows(fx.m, isa, b, rows, deq.data());
    for (int64_t i = 0; i < (rows - b) * cols; ++i)
      ASSERT_EQ(std::memcmp(&deq[static_cast<size_t>(i)], &fx.ref[static_cast<size_t>(b * cols + i)], 4), 0)
          << "element " << i << ": " << deq[static_cast<size_t>(i)] << " vs " << fx.ref[static_cast<size_t>(b * cols + i)];
    // GEMV over all rows, and over uneven row ranges (as threads split them): same values.
    const float* xp = prepare_activation(fx.m, isa, x.data(), scratch.data());
    std::vector<float> y(static_cast<size_t>(rows)), y_split(static_cast<size_t>(rows));
    gemv(fx.m, isa, x.data(), xp, y.data(), 0, rows);
    for (int64_t s = 0; s < rows;) {
      const int64_t e = std::min(rows, s + 1 + (s % 3));
      gemv(fx.m, isa, x.data(), xp, y_split.data() + s, s, e);
      s = e;
    }
    for (int64_t r = 0; r < rows; ++r) {
      RowRef rr = row_ref(fx, r, x);
      if (isa == Isa::Avx2) rr.magnitude += 2.0 * rr.zero_point_magnitude;  // t - z * X per group
      const double tol = bound(cols, rr);
      EXPECT_NEAR(y[static_cast<size_t>(r)], rr.exact, tol) << "row " << r;
      EXPECT_NEAR(y[static_cast<size_t>(r)], y_scalar[static_cast<size_t>(r)], 2 * tol) << "row " << r << " vs scalar";
      EXPECT_EQ(y[static_cast<size_t>(r)], y_split[static_cast<size_t>(r)]) << "row " << r << ": depends on the row range";
    }
    if (gemm_supported(fx.m, isa)) check_gemm(fx, isa);
  }
  EXPECT_GE(paths, 1);
}

TEST(Kernels, CpuReportsAnInstructionSet) {
  EXPECT_TRUE(isa_available(Isa::Scalar));
  const Isa best = best_isa();
  EXPECT_TRUE(isa_available(best));
  std::printf("[ INFO     ] best instruction set: %s\n", isa_name(best));
}

TEST(Kernels, F16OddShapes) {
  for (int64_t rows : {1, 3, 17})
    for (int64_t cols : {1, 7, 16, 33, 100, 517}) check_all_paths(make_ggml(Format::F16, rows, cols, 7, false));
  check_all_paths(make_ggml(Format::F16, 9, 70, 8, true));
}

TEST(Kernels, GgmlBlockFormats) {
  for (Format f : {Format::Q8_0, Format::Q4_0, Format::Q4_1})
    for (int64_t rows : {1, 2, 5, 33})
      for (int64_t cols : {32, 96, 288}) check_all_paths(make_ggml(f, rows, cols, 11 + static_cast<uint32_t>(rows), rows == 5));
}

TEST(Kernels, Int8PerChannelAndGroups) {
  for (int64_t rows : {1, 4, 19})
    for (int64_t cols : {1, 17, 172, 300})
      for (int64_t group : {0, 32, 64, -1})
        for (bool asym : {false, true}) check_all_paths(make_int(Format::Int8, rows, cols, group, asym, 0, 21));
}

TEST(Kernels, Int4GroupsSymmetricAndAsymmetric) {
  for (int64_t rows : {1, 3, 18})
    for (int64_t cols : {2, 31, 64, 172, 288, 300})
      for (int64_t group : {32, 64, 128, 192, 0, -1, 16})
        for (bool asym : {false, true}) check_all_paths(make_int(Format::Int4, rows, cols, group, asym, 0, 31));
}

TEST(Kernels, OutliersAreApplied) {
  for (Format f : {Format::Int8, Format::Int4})
    for (int64_t cols : {64, 172}) check_all_paths(make_int(f, 7, cols, 32, true, 3, 41));
}

TEST(Kernels, ValidationRejectsInconsistentMatrices) {
  Fixture fx = make_int(Format::Int4, 4, 64, 32, false, 0, 5);
  PackedMatrix bad = fx.m;
  bad.scale_row_stride = 3;
  EXPECT_THROW(validate(bad, "t"), std::exception);
  bad = fx.m;
  bad.row_bytes = 10;
  EXPECT_THROW(validate(bad, "t"), std::exception);
  EXPECT_THROW(format_row_bytes(Format::Q4_0, 33), std::exception);
}

}  // namespace
}  // namespace qeval::kernels
