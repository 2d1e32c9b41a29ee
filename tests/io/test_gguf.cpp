// GGUF container: every shared GGUF opens with the metadata and tensors llama.cpp wrote, a file
// read and written back is byte-identical, and a synthetic file covering every metadata value
// type survives a write/read round trip in v2 and v3.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "qeval/io/gguf.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;
using test::shared_path;

const char* const kGgufDirs[] = {"models/stories260K-gguf", "models/aidreams260K-gguf", "reference/gguf-types",
                                 "reference/tokenizers/gguf-vocab"};

std::vector<fs::path> shared_ggufs() {
  std::vector<fs::path> out;
  for (const char* d : kGgufDirs) {
    if (!test::have_shared(d)) continue;
    for (const auto& de : fs::directory_iterator(shared_path(d)))
      if (de.path().extension() == ".gguf") out.push_back(de.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// memcmp, which must not be given null pointers even for 0 bytes (empty tensors have none).
bool same_bytes(const void* a, const void* b, size_t n) { return n == 0 || std::memcmp(a, b, n) == 0; }

// Deep equality of two metadata values, declared types included; floats compared by bits.
::testing::AssertionResult same_value(const GGUFValue& a, const GGUFValue& b, const std::string& where) {
  if (a.type != b.type)
    return ::testing::AssertionFailure() << where << ": type " << gguf_type_name(a.type) << " vs " << gguf_type_name(b.type);
  if (a.value.index() != b.value.index()) return ::testing::AssertionFailure() << where << ": representation differs";
  if (auto* x = std::get_if<double>(&a.value)) {
    if (std::bit_cast<uint64_t>(*x) != std::bit_cast<uint64_t>(std::get<double>(b.value)))
      return ::testing::AssertionFailure() << where << ": " << *x << " vs " << std::get<double>(b.value);
    return ::testing::AssertionSuccess();
  }
  if (auto* x = std::get_if<GGUFArray>(&a.value)) {
    const auto& y = std::get<GGUFArray>(b.value);
    if (x->elem != y.elem || x->items.size() != y.items.size())
      return ::testing::AssertionFailure() << where << ": array " << gguf_type_name(x->elem) << "[" << x->items.size()
                                           << "] vs " << gguf_type_name(y.elem) << "[" << y.items.size() << "]";
    for (size_t i = 0; i < x->items.size(); ++i) {
      auto r = same_value(x->items[i], y.items[i], where + "[" + std::to_string(i) + "]");
      if (!r) return r;
    }
    return ::testing::AssertionSuccess();
  }
  bool eq = false;
  if (auto* x = std::get_if<uint64_t>(&a.value)) eq = *x == std::get<uint64_t>(b.value);
  if (auto* x = std::get_if<int64_t>(&a.value)) eq = *x == std::get<int64_t>(b.value);
  if (auto* x = std::get_if<bool>(&a.value)) eq = *x == std::get<bool>(b.value);
  if (auto* x = std::get_if<std::string>(&a.value)) eq = *x == std::get<std::string>(b.value);
  if (!eq) return ::testing::AssertionFailure() << where << ": " << a.to_display_string() << " vs " << b.to_display_string();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult same_metadata(const GGUFMetadata& a, const GGUFMetadata& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "key count " << a.size() << " vs " << b.size();
  for (size_t i = 0; i < a.size(); ++i) {
    const auto& [ka, va] = a.entries()[i];
    const auto& [kb, vb] = b.entries()[i];
    if (ka != kb) return ::testing::AssertionFailure() << "key #" << i << ": '" << ka << "' vs '" << kb << "'";
    auto r = same_value(va, vb, ka);
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

// Tensors in file order, as write_gguf wants them, pointing into the opened file.
std::vector<GGUFWriteTensor> write_list(const GGUFFile& f) {
  std::vector<GGUFWriteTensor> out;
  for (size_t i = 0; i < f.tensor_infos.size(); ++i) {
    const Tensor t = f.tensor(i);
    out.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes});
  }
  return out;
}

::testing::AssertionResult same_tensors(const GGUFFile& a, const GGUFFile& b) {
  if (a.tensor_infos.size() != b.tensor_infos.size())
    return ::testing::AssertionFailure() << "tensor count " << a.tensor_infos.size() << " vs " << b.tensor_infos.size();
  for (size_t i = 0; i < a.tensor_infos.size(); ++i) {
    const Tensor x = a.tensor(i), y = b.tensor(i);
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.nbytes != y.nbytes)
      return ::testing::AssertionFailure() << "tensor #" << i << " '" << x.name << "' " << shape_string(x.shape) << " "
                                           << dtype_name(x.dtype) << " vs '" << y.name << "' " << shape_string(y.shape) << " "
                                           << dtype_name(y.dtype);
    if (!same_bytes(x.data, y.data, x.nbytes)) return ::testing::AssertionFailure() << "tensor '" << x.name << "' bytes differ";
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------

TEST(GGUFShared, OpensEveryFileAndItsTensorsLieInside) {
  const auto files = shared_ggufs();
  if (files.empty()) GTEST_SKIP() << "no shared GGUFs under " << test::shared_dir();
  EXPECT_EQ(files.size(), 41u);
  for (const auto& p : files) {
    SCOPED_TRACE(p.string());
    const GGUFFile f = GGUFFile::open(p.string());
    EXPECT_TRUE(f.version == 2 || f.version == 3);
    EXPECT_EQ(f.data_offset % f.alignment, 0u);
    EXPECT_FALSE(f.metadata.get_string("general.architecture").empty());
    // Tensors are sorted by offset in these files, do not overlap, and lie within the file.
    uint64_t end = 0;
    for (size_t i = 0; i < f.tensor_infos.size(); ++i) {
      const auto& ti = f.tensor_infos[i];
      EXPECT_GE(ti.offset, end) << ti.name;
      end = ti.offset + ti.nbytes;
      EXPECT_LE(f.data_offset + end, f.file_size()) << ti.name;
      const Tensor t = f.tensor(i);
      EXPECT_EQ(t.bytes_per_row() * static_cast<size_t>(t.rows()), t.nbytes) << ti.name;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u) << ti.name;  // mmap + aligned offsets
    }
  }
}

TEST(GGUFShared, Stories260KMetadata) {
  const std::string rel = "models/stories260K-gguf/stories260K-F32.gguf";
  QEVAL_REQUIRE_SHARED(rel);
  const GGUFFile f = GGUFFile::open(shared_path(rel).string());
  const GGUFMetadata& m = f.metadata;
  EXPECT_EQ(m.get_string("general.architecture"), "llama");
  ASSERT_NE(m.find("llama.context_length"), nullptr);
  EXPECT_EQ(m.find("llama.context_length")->type, GGUFValueType::U32);
  EXPECT_EQ(m.get_int("llama.context_length"), 512);
  EXPECT_EQ(m.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(m.get_int("llama.block_count"), 5);
  EXPECT_EQ(m.get_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(m.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(m.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_FLOAT_EQ(static_cast<float>(m.get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  EXPECT_EQ(m.get_string("tokenizer.ggml.model"), "llama");

  const GGUFValue* tokens = m.find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->type, GGUFValueType::ARRAY);
  EXPECT_EQ(std::get<GGUFArray>(tokens->value).elem, GGUFValueType::STRING);
  const auto toks = m.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(toks.size(), 512u);
  EXPECT_EQ(toks[0], "<unk>");
  EXPECT_EQ(toks[1], "<s>");
  EXPECT_EQ(toks[2], "</s>");
  EXPECT_EQ(toks[3], "<0x00>");
  EXPECT_EQ(toks[258], "<0xFF>");
  const GGUFValue* scores = m.find("tokenizer.ggml.scores");
  ASSERT_NE(scores, nullptr);
  EXPECT_EQ(std::get<GGUFArray>(scores->value).elem, GGUFValueType::F32);
  EXPECT_EQ(m.get_float_array("tokenizer.ggml.scores").size(), 512u);
  const auto types = m.get_int_array("tokenizer.ggml.token_type");
  ASSERT_EQ(types.size(), 512u);
  EXPECT_EQ(types[1], 3);  // CONTROL
  EXPECT_EQ(types[3], 6);  // BYTE
  EXPECT_EQ(m.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(m.get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_FALSE(m.contains("general.file_type"));  // the converter does not write it

  // Typed getters name the file and key when the type is wrong.
  try {
    (void)m.get_int("general.architecture");
    FAIL() << "get_int on a string did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(shared_path(rel).string() + ": ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("general.architecture"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)m.get_string("no.such.key"), Error);
}

// Tensor names, shapes, types and sizes of every file listed in the tensor_types.json files.
TEST(GGUFShared, TensorsMatchTensorTypesJson) {
  int n_files = 0;
  for (const char* dir : {"models/stories260K-gguf", "models/aidreams260K-gguf", "reference/gguf-types"}) {
    const std::string rel = std::string(dir) + "/tensor_types.json";
    if (!test::have_shared(rel)) continue;
    for (const auto& fe : nlohmann::json::parse(test::read_text(shared_path(rel)))) {
      const auto path = shared_path(std::string(dir) + "/" + fe.at("file").get<std::string>());
      SCOPED_TRACE(path.string());
      const GGUFFile f = GGUFFile::open(path.string());
      EXPECT_EQ(f.file_size(), fe.at("bytes").get<size_t>());
      if (fe.at("general.file_type").is_null())
        EXPECT_FALSE(f.metadata.contains("general.file_type"));
      else
        EXPECT_EQ(f.metadata.get_int("general.file_type"), fe.at("general.file_type").get<int64_t>());
      const auto& tensors = fe.at("tensors");
      ASSERT_EQ(f.tensor_infos.size(), tensors.size());
      for (size_t i = 0; i < tensors.size(); ++i) {
        const auto& ti = f.tensor_infos[i];
        EXPECT_EQ(ti.name, tensors[i].at("name").get<std::string>());
        EXPECT_EQ(ti.ne, tensors[i].at("shape").get<std::vector<int64_t>>()) << ti.name;
        EXPECT_EQ(dtype_name(ti.type), tensors[i].at("type").get<std::string>()) << ti.name;
        EXPECT_EQ(ti.nbytes, tensors[i].at("n_bytes").get<size_t>()) << ti.name;
      }
      ++n_files;
    }
  }
  if (n_files == 0) GTEST_SKIP() << "no tensor_types.json under " << test::shared_dir();
  EXPECT_EQ(n_files, 34);
}

// Reading a file and writing it back with the same metadata, tensors and version reproduces
// the file exactly. The one difference allowed: vocabulary-only files (no tensors) written by
// gguf-py end right after the header, without padding to the alignment; write_gguf omits the
// padding too when there are no tensors, so those are identical as well.
TEST(GGUFShared, RoundTripIsByteIdentical) {
  const auto files = shared_ggufs();
  if (files.empty()) GTEST_SKIP() << "no shared GGUFs under " << test::shared_dir();
  test::TempDir tmp;
  for (const auto& p : files) {
    SCOPED_TRACE(p.string());
    const GGUFFile f = GGUFFile::open(p.string());
    const std::string out = tmp.file("rt.gguf");
    write_gguf(out, f.metadata, write_list(f), f.version);
    const std::string a = test::read_text(p), b = test::read_text(out);
    EXPECT_EQ(a.size(), b.size());
    size_t diff = 0;
    while (diff < a.size() && diff < b.size() && a[diff] == b[diff]) ++diff;
    EXPECT_TRUE(diff == a.size() && a.size() == b.size()) << "first difference at byte " << diff;
    const GGUFFile g = GGUFFile::open(out);
    EXPECT_EQ(g.version, f.version);
    EXPECT_TRUE(same_metadata(f.metadata, g.metadata));
    EXPECT_TRUE(same_tensors(f, g));
  }
}

// ---------------------------------------------------------------------------------------------
// Synthetic files

GGUFValue val(GGUFValueType t, uint64_t v) { return {t, v}; }
GGUFValue ival(GGUFValueType t, int64_t v) { return {t, v}; }
GGUFValue fval(GGUFValueType t, double v) { return {t, v}; }

GGUFMetadata every_type_metadata(uint32_t alignment) {
  using T = GGUFValueType;
  GGUFMetadata m;
  m.set("general.architecture", GGUFValue::str("llama"));
  if (alignment != 32) m.set("general.alignment", GGUFValue::u32(alignment));
  m.set("t.u8", val(T::U8, 200));
  m.set("t.i8", ival(T::I8, -100));
  m.set("t.u16", val(T::U16, 60000));
  m.set("t.i16", ival(T::I16, -30000));
  m.set("t.u32", val(T::U32, 4000000000u));
  m.set("t.i32", ival(T::I32, -2000000000));
  m.set("t.u64", val(T::U64, (uint64_t{1} << 63) + 5));
  m.set("t.i64", ival(T::I64, -(int64_t{1} << 62) - 3));
  m.set("t.f32", GGUFValue::f32(1.5f));
  m.set("t.f32.neg0", GGUFValue::f32(-0.0f));
  m.set("t.f32.sub", GGUFValue::f32(std::numeric_limits<float>::denorm_min()));
  m.set("t.f32.inf", GGUFValue::f32(-std::numeric_limits<float>::infinity()));
  m.set("t.f64", fval(T::F64, 3.141592653589793));
  m.set("t.f64.tiny", fval(T::F64, 1e-300));
  m.set("t.bool.t", GGUFValue::boolean(true));
  m.set("t.bool.f", GGUFValue::boolean(false));
  m.set("t.str", GGUFValue::str("h\xc3\xa9llo \xe2\x96\x81world\n"));
  m.set("t.str.empty", GGUFValue::str(""));
  m.set("t.str.nul", GGUFValue::str(std::string("a\0b", 3)));
  m.set("", GGUFValue::str("empty key"));
  // Arrays of every element type.
  m.set("a.u8", GGUFValue::array(T::U8, {val(T::U8, 0), val(T::U8, 255)}));
  m.set("a.i8", GGUFValue::array(T::I8, {ival(T::I8, -128), ival(T::I8, 127)}));
  m.set("a.u16", GGUFValue::array(T::U16, {val(T::U16, 65535)}));
  m.set("a.i16", GGUFValue::array(T::I16, {ival(T::I16, -32768)}));
  m.set("a.u32", GGUFValue::array(T::U32, {val(T::U32, 1), val(T::U32, 2), val(T::U32, 3)}));
  m.set("a.i32", GGUFValue::i32_array({-1, 0, 1 << 30}));
  m.set("a.u64", GGUFValue::array(T::U64, {val(T::U64, ~uint64_t{0})}));
  m.set("a.i64", GGUFValue::array(T::I64, {ival(T::I64, std::numeric_limits<int64_t>::min())}));
  m.set("a.f32", GGUFValue::f32_array({0.1f, -2.0f, 1e30f}));
  m.set("a.f64", GGUFValue::array(T::F64, {fval(T::F64, 0.1), fval(T::F64, -0.0)}));
  m.set("a.bool", GGUFValue::array(T::BOOL, {GGUFValue::boolean(true), GGUFValue::boolean(false)}));
  m.set("a.str", GGUFValue::string_array({"a", "", "\xe2\x96\x81the", std::string(1000, 'x')}));
  m.set("a.empty", GGUFValue::array(T::U32, {}));
  m.set("a.empty.str", GGUFValue::array(T::STRING, {}));
  // Nested arrays: [[1, 2], [3], []], [["x"], ["y", "z"]], and four levels deep.
  m.set("n.i32", GGUFValue::array(T::ARRAY, {GGUFValue::i32_array({1, 2}), GGUFValue::i32_array({3}),
                                             GGUFValue::array(T::I32, {})}));
  m.set("n.str", GGUFValue::array(T::ARRAY, {GGUFValue::string_array({"x"}), GGUFValue::string_array({"y", "z"})}));
  m.set("n.deep", GGUFValue::array(
                      T::ARRAY, {GGUFValue::array(T::ARRAY, {GGUFValue::array(T::ARRAY, {GGUFValue::f32_array({4.0f})})})}));
  m.set("n.empty", GGUFValue::array(T::ARRAY, {}));
  return m;
}

struct SynthTensors {
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<GGUFWriteTensor> list;
  void add(std::string name, DType t, std::vector<int64_t> shape, std::mt19937& rng) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    const size_t nbytes = *row_bytes(t, shape.back()) * static_cast<size_t>(n / shape.back());
    std::vector<uint8_t> b(nbytes);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    bufs.push_back(std::move(b));
    list.push_back({std::move(name), t, std::move(shape), nullptr, nbytes});
  }
  std::vector<GGUFWriteTensor> get() {
    for (size_t i = 0; i < list.size(); ++i) list[i].data = bufs[i].data();
    return list;
  }
};

SynthTensors synth_tensors() {
  std::mt19937 rng(99);
  SynthTensors s;
  s.add("a.f32", DType::F32, {3, 5}, rng);  // 60 bytes: the next tensor needs padding
  s.add("b.q4_0", DType::Q4_0, {2, 64}, rng);
  s.add("c.f16.1d", DType::F16, {7}, rng);
  s.add("d.q4_k", DType::Q4_K, {1, 256}, rng);
  s.add("e.4d", DType::F32, {2, 2, 2, 3}, rng);
  s.add("f.empty", DType::F32, {0, 4}, rng);
  s.add("g.bf16", DType::BF16, {1, 1}, rng);  // 2 bytes at the very end
  return s;
}

TEST(GGUFSynthetic, EveryValueTypeRoundTripsInV2AndV3) {
  test::TempDir tmp;
  const GGUFMetadata meta = every_type_metadata(32);
  SynthTensors st = synth_tensors();
  const auto tensors = st.get();
  for (uint32_t version : {2u, 3u}) {
    SCOPED_TRACE("v" + std::to_string(version));
    const std::string path = tmp.file("v" + std::to_string(version) + ".gguf");
    write_gguf(path, meta, tensors, version);
    const GGUFFile f = GGUFFile::open(path);
    EXPECT_EQ(f.version, version);
    EXPECT_EQ(f.alignment, 32u);
    EXPECT_TRUE(same_metadata(meta, f.metadata));
    ASSERT_EQ(f.tensor_infos.size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor t = f.tensor(i);
      EXPECT_EQ(t.name, tensors[i].name);
      EXPECT_EQ(t.dtype, tensors[i].type);
      EXPECT_EQ(t.shape, tensors[i].shape);
      EXPECT_EQ(std::vector<int64_t>(f.tensor_infos[i].ne.rbegin(), f.tensor_infos[i].ne.rend()), tensors[i].shape);
      ASSERT_EQ(t.nbytes, tensors[i].nbytes);
      EXPECT_TRUE(same_bytes(t.data, tensors[i].data, t.nbytes)) << t.name;
      EXPECT_EQ(f.tensor_infos[i].offset % 32, 0u);
    }
    EXPECT_EQ(f.file_size() % 32, 0u);
    // Writing what was read gives the same bytes again.
    write_gguf(tmp.file("again.gguf"), f.metadata, write_list(f), f.version);
    EXPECT_EQ(test::read_text(tmp.file("again.gguf")), test::read_text(path));
  }
  // v2 and v3 differ only in the version field.
  std::string v2 = test::read_text(tmp.file("v2.gguf")), v3 = test::read_text(tmp.file("v3.gguf"));
  ASSERT_EQ(v2.size(), v3.size());
  EXPECT_EQ(v2[4], 2);
  EXPECT_EQ(v3[4], 3);
  v2[4] = 3;
  EXPECT_EQ(v2, v3);
  // Typed getters read what the writer stored.
  const GGUFFile f = GGUFFile::open(tmp.file("v3.gguf"));
  EXPECT_EQ(f.metadata.get_int("t.i8"), -100);
  EXPECT_EQ(f.metadata.get_int("t.u32"), 4000000000);
  EXPECT_THROW((void)f.metadata.get_int("t.u64"), Error);  // > INT64_MAX
  EXPECT_EQ(f.metadata.get_float("t.f32"), 1.5);
  EXPECT_EQ(f.metadata.get_float("t.u16"), 60000.0);
  EXPECT_TRUE(f.metadata.get_bool("t.bool.t", false));
  EXPECT_EQ(f.metadata.get_string("t.str.nul"), std::string("a\0b", 3));
  EXPECT_EQ(f.metadata.get_string_array("a.str")[3], std::string(1000, 'x'));
  EXPECT_EQ(f.metadata.get_int_array("a.i32"), (std::vector<int32_t>{-1, 0, 1 << 30}));
}

TEST(GGUFSynthetic, HonoursGeneralAlignment) {
  test::TempDir tmp;
  SynthTensors st = synth_tensors();
  for (uint32_t al : {1u, 8u, 64u, 4096u}) {
    SCOPED_TRACE(al);
    const std::string path = tmp.file("al.gguf");
    const GGUFMetadata meta = every_type_metadata(al);
    write_gguf(path, meta, st.get(), 3);
    const GGUFFile f = GGUFFile::open(path);
    EXPECT_EQ(f.alignment, al);
    EXPECT_EQ(f.data_offset % al, 0u);
    for (const auto& ti : f.tensor_infos) EXPECT_EQ(ti.offset % al, 0u) << ti.name;
    EXPECT_EQ(f.file_size() % al, 0u);
    EXPECT_TRUE(same_metadata(meta, f.metadata));
    for (size_t i = 0; i < f.tensor_infos.size(); ++i)
      EXPECT_TRUE(same_bytes(f.tensor(i).data, st.bufs[i].data(), st.bufs[i].size()));
  }
}

TEST(GGUFSynthetic, MetadataOnlyFileHasNoPadding) {
  test::TempDir tmp;
  GGUFMetadata m;
  m.set("general.architecture", GGUFValue::str("llama"));
  write_gguf(tmp.file("m.gguf"), m, {}, 3);
  const std::string bytes = test::read_text(tmp.file("m.gguf"));
  // magic, version, counts (24) + key (8 + 20) + type (4) + value (8 + 5)
  EXPECT_EQ(bytes.size(), 24u + 28u + 4u + 13u);
  const GGUFFile f = GGUFFile::open(tmp.file("m.gguf"));
  EXPECT_TRUE(f.tensor_infos.empty());
  EXPECT_EQ(f.metadata.get_string("general.architecture"), "llama");
}

TEST(GGUFSynthetic, WriterRejectsInconsistentInput) {
  test::TempDir tmp;
  const std::string path = tmp.file("bad.gguf");
  std::vector<uint8_t> buf(1024);
  GGUFMetadata m;
  auto expect_fail = [&](const GGUFMetadata& meta, const std::vector<GGUFWriteTensor>& ts, const char* what, uint32_t v = 3) {
    try {
      write_gguf(path, meta, ts, v);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path)) << what;  // nothing half-written is left behind
  };
  expect_fail(m, {{"t", DType::F32, {2, 3}, buf.data(), 20}}, "byte size");
  expect_fail(m, {{"t", DType::Q4_0, {2, 33}, buf.data(), 36}}, "block size");
  expect_fail(m, {{"t", DType::F32, {}, buf.data(), 4}}, "dimension");
  expect_fail(m, {{"t", DType::F32, {1, 1, 1, 1, 1}, buf.data(), 4}}, "dimension");
  expect_fail(m, {{"t", DType::F32, {1}, buf.data(), 4}, {"t", DType::F32, {1}, buf.data(), 4}}, "duplicate tensor");
  expect_fail(m, {{"t", DType::U8, {4}, buf.data(), 4}}, "GGUF");
  expect_fail(m, {}, "version", 1);
  GGUFMetadata bad_align;
  bad_align.set("general.alignment", GGUFValue::u32(0));
  expect_fail(bad_align, {}, "alignment");
  bad_align.set("general.alignment", GGUFValue::u32(48));
  expect_fail(bad_align, {}, "alignment");
  GGUFMetadata bad_array;
  bad_array.set("x", GGUFValue::array(GGUFValueType::U32, {GGUFValue::str("not a u32")}));
  expect_fail(bad_array, {}, "'x'");
  GGUFMetadata bad_value;
  bad_value.set("y", GGUFValue{GGUFValueType::STRING, uint64_t{5}});
  expect_fail(bad_value, {}, "'y'");
}

}  // namespace
}  // namespace qeval
