// Block codecs against llama.cpp: the decoded values of every ggml type are compared bit for bit
// with gguf-py's dumps of llama-quantize output, and our reference quantizers must reproduce
// llama-quantize's bytes exactly. Hand-built blocks pin down the edge cases of each format.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "qeval/io/dequantize.h"
#include "qeval/io/gguf.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"
#include "test_support.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;
using test::shared_path;

constexpr const char* kTypesDir = "reference/gguf-types";
constexpr const char* kIndex = "reference/gguf-types/dequant/dequant_index.json";

std::vector<float> read_f32_file(const fs::path& p) {
  const std::string bytes = test::read_text(p);
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

// Compares float bit patterns; reports how many differ and the first few.
::testing::AssertionResult same_bits(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::bit_cast<uint32_t>(got[i]) == std::bit_cast<uint32_t>(want[i])) continue;
    if (++bad <= 3) first += " [" + std::to_string(i) + "] " + std::to_string(got[i]) + " vs " + std::to_string(want[i]);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << got.size() << " values differ:" << first;
}

struct DumpEntry {
  std::string file, gguf, tensor, type;
  std::vector<int64_t> shape;  // GGUF order
  double rmse = 0, max_abs = 0;
};

std::vector<DumpEntry> load_index() {
  const auto j = nlohmann::json::parse(test::read_text(shared_path(kIndex)));
  std::vector<DumpEntry> out;
  for (const auto& e : j.at("entries")) {
    DumpEntry d;
    d.file = e.at("file");
    d.gguf = e.at("gguf");
    d.tensor = e.at("tensor");
    d.type = e.at("ggml_type");
    d.shape = e.at("shape").get<std::vector<int64_t>>();
    d.rmse = e.at("rmse_vs_ref");
    d.max_abs = e.at("max_abs_err_vs_ref");
    out.push_back(std::move(d));
  }
  return out;
}

// Opened files, kept for the duration of one test.
class Files {
 public:
  const GGUFFile& get(const fs::path& p) {
    auto it = files_.find(p.string());
    if (it == files_.end()) it = files_.emplace(p.string(), std::make_unique<GGUFFile>(GGUFFile::open(p.string()))).first;
    return *it->second;
  }

 private:
  std::map<std::string, std::unique_ptr<GGUFFile>> files_;
};

Tensor tensor_by_name(const GGUFFile& f, const std::string& name) {
  const GGUFTensorInfo* ti = f.find_tensor(name);
  if (ti == nullptr) throw Error(f.path() + ": no tensor " + name);
  return f.tensor(static_cast<size_t>(ti - f.tensor_infos.data()));
}

// Quantizes a float tensor row by row into `type`.
std::vector<uint8_t> quantize_tensor(const std::vector<float>& values, int64_t cols, DType type) {
  const size_t rb = *row_bytes(type, cols);
  const int64_t rows = static_cast<int64_t>(values.size()) / cols;
  std::vector<uint8_t> out(rb * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, values.data() + r * cols, out.data() + r * rb, cols);
  return out;
}

// Index of the first differing byte, or -1.
int64_t first_diff(const uint8_t* a, const uint8_t* b, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Against llama.cpp's files

TEST(DequantizeReference, IndexCoversEveryPureFileAndBothTensors) {
  QEVAL_REQUIRE_SHARED(kIndex);
  const auto entries = load_index();
  std::vector<std::string> ggufs;
  for (const auto& de : fs::directory_iterator(shared_path(kTypesDir))) {
    const std::string name = de.path().filename().string();
    if (name.ends_with(".pure.gguf") || name == "synth-k256-F32.gguf") ggufs.push_back(name);
  }
  ASSERT_EQ(ggufs.size(), 13u);  // F32 + 12 single-type files
  for (const auto& g : ggufs) {
    int n = 0;
    for (const auto& e : entries) n += e.gguf == g;
    EXPECT_EQ(n, 2) << g;
  }
}

TEST(DequantizeReference, MatchesLlamaCppDumpsBitForBit) {
  QEVAL_REQUIRE_SHARED(kIndex);
  Files files;
  std::map<std::string, int> checked;
  for (const auto& e : load_index()) {
    SCOPED_TRACE(e.file);
    const GGUFFile& f = files.get(shared_path(std::string(kTypesDir) + "/" + e.gguf));
    const Tensor t = tensor_by_name(f, e.tensor);
    EXPECT_EQ(dtype_name(t.dtype), e.type);
    ASSERT_EQ(t.shape, std::vector<int64_t>(e.shape.rbegin(), e.shape.rend()));
    const auto want = read_f32_file(shared_path(std::string(kTypesDir) + "/dequant/" + e.file));
    EXPECT_TRUE(same_bits(t.to_f32(), want));
    ++checked[e.type];
  }
  for (const char* type : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K",
                           "Q5_K", "Q6_K"})
    EXPECT_EQ(checked[type], 2) << type;
}

// The error of every type against the F32 original matches the index (RMSE and max |error|),
// which is what we can check of the K-quants' encoder without reproducing its search.
TEST(DequantizeReference, ErrorVsF32MatchesIndex) {
  QEVAL_REQUIRE_SHARED(kIndex);
  Files files;
  const GGUFFile& ref = files.get(shared_path(std::string(kTypesDir) + "/synth-k256-F32.gguf"));
  for (const auto& e : load_index()) {
    SCOPED_TRACE(e.file);
    const auto orig = tensor_by_name(ref, e.tensor).to_f32();
    const auto got = tensor_by_name(files.get(shared_path(std::string(kTypesDir) + "/" + e.gguf)), e.tensor).to_f32();
    ASSERT_EQ(orig.size(), got.size());
    double sq = 0, mx = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double d = static_cast<double>(got[i]) - static_cast<double>(orig[i]);
      sq += d * d;
      mx = std::max(mx, std::fabs(d));
    }
    const double rmse = std::sqrt(sq / static_cast<double>(got.size()));
    EXPECT_NEAR(rmse, e.rmse, 1e-6 * e.rmse + 1e-12);
    EXPECT_NEAR(mx, e.max_abs, 1e-6 * e.max_abs + 1e-12);
    if (e.type != "F32") {
      EXPECT_GT(rmse, 0.0);
    }
  }
}

// Our encoders reproduce llama-quantize's bytes for every 2D tensor of the synthetic model.
class QuantizeReference : public ::testing::TestWithParam<const char*> {};

TEST_P(QuantizeReference, ReproducesLlamaQuantizeBytesOfSynthModel) {
  const DType type = *dtype_from_name(GetParam());
  const std::string qrel = std::string(kTypesDir) + "/synth-k256-" + GetParam() + ".pure.gguf";
  QEVAL_REQUIRE_SHARED(qrel);
  ASSERT_TRUE(can_quantize(type));
  const GGUFFile src = GGUFFile::open(shared_path(std::string(kTypesDir) + "/synth-k256-F32.gguf").string());
  const GGUFFile q = GGUFFile::open(shared_path(qrel).string());
  int n_checked = 0;
  for (size_t i = 0; i < q.tensor_infos.size(); ++i) {
    const Tensor qt = q.tensor(i);
    if (qt.dtype != type) continue;
    SCOPED_TRACE(qt.name);
    const Tensor st = tensor_by_name(src, qt.name);
    ASSERT_EQ(st.dtype, DType::F32);
    ASSERT_EQ(st.shape, qt.shape);
    const auto mine = quantize_tensor(st.to_f32(), st.cols(), type);
    ASSERT_EQ(mine.size(), qt.nbytes);
    EXPECT_EQ(first_diff(mine.data(), qt.data, qt.nbytes), -1);
    ++n_checked;
  }
  EXPECT_EQ(n_checked, 16);  // token_embd, output, 7 matrices x 2 layers
}

// Quantizing the dumped F32 originals and decoding our own bytes gives the dumped values.
TEST_P(QuantizeReference, OwnBytesDecodeToDumpedValues) {
  QEVAL_REQUIRE_SHARED(kIndex);
  const DType type = *dtype_from_name(GetParam());
  int n = 0;
  for (const auto& e : load_index()) {
    if (e.type != GetParam()) continue;
    SCOPED_TRACE(e.file);
    const auto orig = read_f32_file(shared_path(std::string(kTypesDir) + "/dequant/synth-k256-F32." + e.tensor + ".f32"));
    const auto bytes = quantize_tensor(orig, e.shape[0], type);
    std::vector<float> back(orig.size());
    const size_t rb = *row_bytes(type, e.shape[0]);
    for (size_t r = 0; r < orig.size() / static_cast<size_t>(e.shape[0]); ++r)
      dequantize_row(type, bytes.data() + r * rb, back.data() + r * static_cast<size_t>(e.shape[0]), e.shape[0]);
    EXPECT_TRUE(same_bits(back, read_f32_file(shared_path(std::string(kTypesDir) + "/dequant/" + e.file))));
    ++n;
  }
  EXPECT_EQ(n, 2);
}

INSTANTIATE_TEST_SUITE_P(WritableTypes, QuantizeReference,
                         ::testing::Values("F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"),
                         [](const auto& info) { return std::string(info.param); });

// The real 260K models: every tensor of every quantized file (mixtures of Q*_0/1, Q8_0 and F16
// with 64- and 172-wide rows) is reproduced from the F32 file.
TEST(QuantizeReference, ReproducesLlamaQuantizeBytesOf260KModels) {
  int files_checked = 0;
  for (const std::string model : {"stories260K", "aidreams260K"}) {
    const std::string dir = "models/" + model + "-gguf";
    if (!test::have_shared(dir + "/" + model + "-F32.gguf")) continue;
    const GGUFFile src = GGUFFile::open(shared_path(dir + "/" + model + "-F32.gguf").string());
    for (const char* t : {"F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}) {
      const auto path = shared_path(dir + "/" + model + "-" + t + ".gguf");
      if (!fs::exists(path)) continue;
      SCOPED_TRACE(path.string());
      const GGUFFile q = GGUFFile::open(path.string());
      ASSERT_EQ(q.tensor_infos.size(), src.tensor_infos.size());
      for (size_t i = 0; i < q.tensor_infos.size(); ++i) {
        const Tensor qt = q.tensor(i);
        SCOPED_TRACE(qt.name);
        ASSERT_TRUE(can_quantize(qt.dtype));
        const Tensor st = tensor_by_name(src, qt.name);
        const auto mine = quantize_tensor(st.to_f32(), st.cols(), qt.dtype);
        ASSERT_EQ(mine.size(), qt.nbytes);
        EXPECT_EQ(first_diff(mine.data(), qt.data, qt.nbytes), -1);
      }
      ++files_checked;
    }
  }
  if (files_checked == 0) GTEST_SKIP() << "no 260K model GGUFs under " << test::shared_dir();
  EXPECT_EQ(files_checked, 12);
}

// ---------------------------------------------------------------------------------------------
// Hand-built cases

std::vector<uint8_t> quantize_block(DType type, const std::vector<float>& x) {
  std::vector<uint8_t> out(*row_bytes(type, static_cast<int64_t>(x.size())));
  quantize_row(type, x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}
std::vector<float> dequantize_block(DType type, const std::vector<uint8_t>& b, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(type, b.data(), out.data(), n);
  return out;
}
uint16_t u16_at(const std::vector<uint8_t>& b, size_t off) {
  uint16_t v;
  std::memcpy(&v, b.data() + off, 2);
  return v;
}

TEST(Q4_0, AllZeroBlock) {
  const auto b = quantize_block(DType::Q4_0, std::vector<float>(32, 0.0f));
  ASSERT_EQ(b.size(), 18u);
  EXPECT_EQ(u16_at(b, 0), 0x8000u);  // d = 0 / -8 = -0
  for (size_t j = 2; j < 18; ++j) EXPECT_EQ(b[j], 0x88) << j;  // every quant is the zero point 8
  for (float v : dequantize_block(DType::Q4_0, b, 32)) EXPECT_EQ(v, 0.0f);
}

TEST(Q4_0, OneHugeValueIsExactOthersFlushToZero) {
  std::vector<float> x(32, 0.01f);
  x[5] = 1000.0f;
  const auto b = quantize_block(DType::Q4_0, x);
  EXPECT_EQ(fp16_to_f32(u16_at(b, 0)), -125.0f);  // d = max / -8
  const auto y = dequantize_block(DType::Q4_0, b, 32);
  EXPECT_EQ(y[5], 1000.0f);
  for (int j = 0; j < 32; ++j)
    if (j != 5) {
      EXPECT_EQ(y[j], 0.0f) << j;
    }
}

TEST(Q4_0, SignOfTheLargestValueChoosesTheClampedSide) {
  // Largest magnitude positive: d < 0, +max maps to q=0 exactly, -max would be q=16 and is
  // clamped to 15, i.e. decodes to only 7/8 of its magnitude.
  std::vector<float> x(32, 0.0f);
  x[0] = 8.0f;
  x[17] = -8.0f;
  auto y = dequantize_block(DType::Q4_0, quantize_block(DType::Q4_0, x), 32);
  EXPECT_EQ(y[0], 8.0f);
  EXPECT_EQ(y[17], -7.0f);
  // Largest magnitude negative: the mirror image.
  x[0] = 8.0f;
  x[17] = -8.5f;
  const auto b = quantize_block(DType::Q4_0, x);
  EXPECT_GT(fp16_to_f32(u16_at(b, 0)), 0.0f);
  y = dequantize_block(DType::Q4_0, b, 32);
  EXPECT_EQ(y[17], -8.5f);
  EXPECT_FLOAT_EQ(y[0], 7.0f * 8.5f / 8.0f);
  // Element 17 sits in the high nibble of byte 1: q = 0 there, low nibble is element 1 (zero -> 8).
  EXPECT_EQ(b[2 + 1], 0x08);
}

TEST(Q4_0, NibbleOrderLowHalfThenHighHalf) {
  std::vector<uint8_t> b(18, 0);
  const uint16_t one = f32_to_fp16(1.0f);
  std::memcpy(b.data(), &one, 2);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const auto y = dequantize_block(DType::Q4_0, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], static_cast<float>(j - 8));
    EXPECT_EQ(y[16 + j], static_cast<float>(7 - j));
  }
}

TEST(Q8_0, RoundsHalfAwayFromZero) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;  // d = 1 exactly
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 3.5f;
  x[4] = -127.0f;
  const auto b = quantize_block(DType::Q8_0, x);
  EXPECT_EQ(fp16_to_f32(u16_at(b, 0)), 1.0f);
  EXPECT_EQ(static_cast<int8_t>(b[2 + 1]), 3);   // roundf, not banker's rounding
  EXPECT_EQ(static_cast<int8_t>(b[2 + 2]), -3);
  EXPECT_EQ(static_cast<int8_t>(b[2 + 3]), 4);
  EXPECT_EQ(static_cast<int8_t>(b[2 + 4]), -127);
  const auto y = dequantize_block(DType::Q8_0, b, 32);
  EXPECT_EQ(y[1], 3.0f);
  EXPECT_EQ(y[4], -127.0f);
}

TEST(Q4_1, ConstantBlockDecodesToItsMinimum) {
  const auto b = quantize_block(DType::Q4_1, std::vector<float>(32, -0.75f));
  EXPECT_EQ(u16_at(b, 0), 0u);  // d = 0
  for (float v : dequantize_block(DType::Q4_1, b, 32)) EXPECT_EQ(v, -0.75f);
}

TEST(Q4_1, GridValuesAreExact) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = -2.0f + 0.5f * static_cast<float>((j * 7) % 16);  // min -2, d 0.5
  EXPECT_EQ(dequantize_block(DType::Q4_1, quantize_block(DType::Q4_1, x), 32), x);
}

TEST(Q5, FifthBitGoesToQh) {
  // Q5_1 with min 0 and d 1: element j has value j, so the high bit is set exactly for j >= 16.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j == 0 ? 0 : (j * 13) % 32);
  x[1] = 31.0f;
  auto b = quantize_block(DType::Q5_1, x);
  uint32_t qh;
  std::memcpy(&qh, b.data() + 4, 4);
  for (int j = 0; j < 32; ++j) EXPECT_EQ((qh >> j) & 1u, static_cast<uint32_t>(x[j] >= 16.0f)) << j;
  EXPECT_EQ(dequantize_block(DType::Q5_1, b, 32), x);
  // Q5_0: largest magnitude -16 -> d = 1, q = x + 16.
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>((j * 13) % 32) - 16.0f;
  b = quantize_block(DType::Q5_0, x);
  EXPECT_EQ(fp16_to_f32(u16_at(b, 0)), 1.0f);
  std::memcpy(&qh, b.data() + 2, 4);
  for (int j = 0; j < 32; ++j) EXPECT_EQ((qh >> j) & 1u, static_cast<uint32_t>(x[j] >= 0.0f)) << j;
  EXPECT_EQ(dequantize_block(DType::Q5_0, b, 32), x);
}

// Every legacy type: the error of each element is at most half a step (plus the rounding of the
// scale to fp16), except Q4_0/Q5_0's clamped side.
TEST(LegacyQuant, RoundTripErrorIsBounded) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const int levels = t == DType::Q8_0 ? 254 : (t == DType::Q4_0 || t == DType::Q4_1) ? 15 : 31;
    for (int iter = 0; iter < 200; ++iter) {
      std::vector<float> x(64);
      for (auto& v : x) v = nd(rng) * (iter % 2 ? 100.0f : 0.01f);
      const auto y = dequantize_block(t, quantize_block(t, x), 64);
      for (int blk = 0; blk < 2; ++blk) {
        float mn = x[blk * 32], mx = x[blk * 32];
        for (int j = 0; j < 32; ++j) {
          mn = std::min(mn, x[blk * 32 + j]);
          mx = std::max(mx, x[blk * 32 + j]);
        }
        const float range = (t == DType::Q4_1 || t == DType::Q5_1) ? mx - mn : 2 * std::max(-mn, mx);
        const float step = range / static_cast<float>(levels);
        for (int j = 0; j < 32; ++j) {
          const float tol = (t == DType::Q4_0 || t == DType::Q5_0) ? step * 1.01f : step * 0.51f + 1e-3f * range;
          EXPECT_LE(std::fabs(y[blk * 32 + j] - x[blk * 32 + j]), tol) << "block " << blk << " j " << j;
        }
      }
    }
  }
}

TEST(LegacyQuant, NonFiniteInputNeitherCrashesNorOverflows) {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::F16, DType::BF16}) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::max()}) {
      std::vector<float> x(32, 0.5f);
      x[3] = bad;
      const auto b = quantize_block(t, x);
      EXPECT_EQ(b.size(), *row_bytes(t, 32));
      (void)dequantize_block(t, b, 32);
    }
  }
}

TEST(Dequantize, RejectsPartialBlocksAndUnwritableTypes) {
  std::vector<uint8_t> buf(1024);
  std::vector<float> out(256);
  EXPECT_THROW(dequantize_row(DType::Q4_0, buf.data(), out.data(), 33), Error);
  EXPECT_THROW(dequantize_row(DType::Q4_K, buf.data(), out.data(), 128), Error);
  EXPECT_THROW(quantize_row(DType::Q8_0, out.data(), buf.data(), 16), Error);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K, DType::Q8_1, DType::I32}) {
    EXPECT_FALSE(can_quantize(t)) << dtype_name(t);
    EXPECT_THROW(quantize_row(t, out.data(), buf.data(), 256), Error);
  }
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1})
    EXPECT_TRUE(can_quantize(t)) << dtype_name(t);
}

TEST(Dequantize, PlainTypes) {
  const std::vector<float> x = {1.0f, -2.5f, 65504.0f, 1e-8f, -0.0f, 3.14159f};
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    const auto y = dequantize_block(t, quantize_block(t, x), 6);
    for (size_t i = 0; i < x.size(); ++i) {
      const float want = t == DType::F32 ? x[i] : t == DType::F16 ? fp16_to_f32(f32_to_fp16(x[i])) : bf16_to_f32(f32_to_bf16(x[i]));
      EXPECT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(want)) << dtype_name(t) << " " << i;
    }
  }
  const int32_t i32[3] = {-7, 0, 1 << 20};
  std::vector<float> out(3);
  dequantize_row(DType::I32, i32, out.data(), 3);
  EXPECT_EQ(out, (std::vector<float>{-7.0f, 0.0f, 1048576.0f}));
  const int8_t i8[2] = {-128, 127};
  dequantize_row(DType::I8, i8, out.data(), 2);
  EXPECT_EQ(out[0], -128.0f);
  EXPECT_EQ(out[1], 127.0f);
  const int16_t i16[2] = {-300, 300};
  dequantize_row(DType::I16, i16, out.data(), 2);
  EXPECT_EQ(out[0], -300.0f);
}

// ---- K-quants: blocks packed by the test from per-element quants and per-sub-block scales,
// laid out as described by the format (not by calling the decoder's helpers).

struct KBlockCase {
  std::mt19937 rng{1234};
  int r(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
};

void put_fp16(std::vector<uint8_t>& b, size_t off, float v) {
  const uint16_t h = f32_to_fp16(v);
  std::memcpy(b.data() + off, &h, 2);
}

// Q4_K/Q5_K 12-byte scale/min packing for 8 sub-blocks of 32.
void pack_k4_scales(uint8_t* s, const int sc[8], const int m[8]) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

float kq(float d, int sc, int q, float dmin, int m) {
  const float a = d * static_cast<float>(sc);
  const float b = a * static_cast<float>(q);
  const float c = dmin * static_cast<float>(m);
  return b - c;
}

TEST(KQuant, Q4_KHandPacked) {
  KBlockCase c;
  for (int iter = 0; iter < 20; ++iter) {
    std::vector<uint8_t> b(144, 0);
    const float d = 0.001f * static_cast<float>(c.r(1, 1000)), dmin = 0.0007f * static_cast<float>(c.r(0, 1000));
    put_fp16(b, 0, d);
    put_fp16(b, 2, dmin);
    int sc[8], m[8], q[256];
    for (int j = 0; j < 8; ++j) sc[j] = c.r(0, 63), m[j] = c.r(0, 63);
    for (int& v : q) v = c.r(0, 15);
    pack_k4_scales(b.data() + 4, sc, m);
    for (int e = 0; e < 256; ++e) {
      const int g = e / 64, l = e % 32, hi = (e % 64) >= 32;
      b[16 + 32 * g + l] |= static_cast<uint8_t>(q[e] << (4 * hi));
    }
    const auto y = dequantize_block(DType::Q4_K, b, 256);
    const float dd = fp16_to_f32(f32_to_fp16(d)), dm = fp16_to_f32(f32_to_fp16(dmin));
    for (int e = 0; e < 256; ++e) ASSERT_EQ(y[e], kq(dd, sc[e / 32], q[e], dm, m[e / 32])) << e;
  }
}

TEST(KQuant, Q5_KHandPacked) {
  KBlockCase c;
  for (int iter = 0; iter < 20; ++iter) {
    std::vector<uint8_t> b(176, 0);
    const float d = 0.001f * static_cast<float>(c.r(1, 1000)), dmin = 0.0007f * static_cast<float>(c.r(0, 1000));
    put_fp16(b, 0, d);
    put_fp16(b, 2, dmin);
    int sc[8], m[8], q[256];
    for (int j = 0; j < 8; ++j) sc[j] = c.r(0, 63), m[j] = c.r(0, 63);
    for (int& v : q) v = c.r(0, 31);
    pack_k4_scales(b.data() + 4, sc, m);
    for (int e = 0; e < 256; ++e) {
      const int g = e / 64, l = e % 32, hi = (e % 64) >= 32;
      b[48 + 32 * g + l] |= static_cast<uint8_t>((q[e] & 15) << (4 * hi));
      b[16 + l] |= static_cast<uint8_t>((q[e] >> 4) << (2 * g + hi));
    }
    const auto y = dequantize_block(DType::Q5_K, b, 256);
    const float dd = fp16_to_f32(f32_to_fp16(d)), dm = fp16_to_f32(f32_to_fp16(dmin));
    for (int e = 0; e < 256; ++e) ASSERT_EQ(y[e], kq(dd, sc[e / 32], q[e], dm, m[e / 32])) << e;
  }
}

TEST(KQuant, Q6_KHandPacked) {
  KBlockCase c;
  for (int iter = 0; iter < 20; ++iter) {
    std::vector<uint8_t> b(210, 0);
    const float d = 0.0001f * static_cast<float>(c.r(1, 1000));
    put_fp16(b, 208, d);
    int sc[16], q[256];
    for (int& v : sc) v = c.r(-128, 127);
    for (int& v : q) v = c.r(0, 63);
    for (int j = 0; j < 16; ++j) b[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(sc[j]));
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      b[64 * h + 32 * (k % 2) + l] |= static_cast<uint8_t>((q[e] & 15) << (4 * (k / 2)));
      b[128 + 32 * h + l] |= static_cast<uint8_t>((q[e] >> 4) << (2 * k));
    }
    const auto y = dequantize_block(DType::Q6_K, b, 256);
    const float dd = fp16_to_f32(f32_to_fp16(d));
    for (int e = 0; e < 256; ++e) ASSERT_EQ(y[e], kq(dd, sc[e / 16], q[e] - 32, 0.0f, 0)) << e;
  }
}

TEST(KQuant, Q3_KHandPacked) {
  KBlockCase c;
  for (int iter = 0; iter < 20; ++iter) {
    std::vector<uint8_t> b(110, 0);
    const float d = 0.001f * static_cast<float>(c.r(1, 1000));
    put_fp16(b, 108, d);
    int sc[16], q[256];  // sc: stored 6-bit values; q in -4..3
    for (int& v : sc) v = c.r(0, 63);
    for (int& v : q) v = c.r(-4, 3);
    for (int j = 0; j < 16; ++j) {
      b[96 + (j % 8)] |= static_cast<uint8_t>((sc[j] & 15) << (4 * (j / 8)));
      b[96 + 8 + (j % 4)] |= static_cast<uint8_t>((sc[j] >> 4) << (2 * (j / 4)));
    }
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const int stored = q[e] + 4;  // 0..7: low 2 bits in qs, bit 2 in hmask (set = no -4)
      b[32 + 32 * h + l] |= static_cast<uint8_t>((stored & 3) << (2 * k));
      b[l] |= static_cast<uint8_t>((stored >> 2) << (4 * h + k));
    }
    const auto y = dequantize_block(DType::Q3_K, b, 256);
    const float dd = fp16_to_f32(f32_to_fp16(d));
    for (int e = 0; e < 256; ++e) ASSERT_EQ(y[e], kq(dd, sc[e / 16] - 32, q[e], 0.0f, 0)) << e;
  }
}

TEST(KQuant, Q2_KHandPacked) {
  KBlockCase c;
  for (int iter = 0; iter < 20; ++iter) {
    std::vector<uint8_t> b(84, 0);
    const float d = 0.001f * static_cast<float>(c.r(1, 1000)), dmin = 0.0007f * static_cast<float>(c.r(0, 1000));
    put_fp16(b, 80, d);
    put_fp16(b, 82, dmin);
    int sc[16], m[16], q[256];
    for (int j = 0; j < 16; ++j) sc[j] = c.r(0, 15), m[j] = c.r(0, 15), b[j] = static_cast<uint8_t>(sc[j] | (m[j] << 4));
    for (int& v : q) v = c.r(0, 3);
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      b[16 + 32 * h + l] |= static_cast<uint8_t>(q[e] << (2 * k));
    }
    const auto y = dequantize_block(DType::Q2_K, b, 256);
    const float dd = fp16_to_f32(f32_to_fp16(d)), dm = fp16_to_f32(f32_to_fp16(dmin));
    for (int e = 0; e < 256; ++e) ASSERT_EQ(y[e], kq(dd, sc[e / 16], q[e], dm, m[e / 16])) << e;
  }
}

TEST(KQuant, Q8_K) {
  std::vector<uint8_t> b(292, 0);
  const float d = 0.125f;
  std::memcpy(b.data(), &d, 4);
  for (int j = 0; j < 256; ++j) b[4 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 128));
  const auto y = dequantize_block(DType::Q8_K, b, 256);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(y[j], 0.125f * static_cast<float>(j - 128));
}

}  // namespace
}  // namespace qeval
