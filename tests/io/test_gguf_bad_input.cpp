// Hostile and damaged GGUF files: a small valid file is written with write_gguf, then bytes are
// changed. Every problem must surface as one qeval::Error "<path>: <problem>" - never a crash,
// an out-of-bounds read (run under ASan) or an allocation sized from an unchecked count.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "qeval/io/dequantize.h"
#include "qeval/io/gguf.h"
#include "qeval/util/error.h"
#include "qeval/util/mapped_file.h"
#include "test_support.h"

namespace qeval {
namespace {

// The base file. tensor_b (Q8_0, 34 bytes) comes first and is padded to 64; tensor_a (F32 2x4,
// 32 bytes) ends exactly at the end of the file, so every byte of the file is needed.
std::string base_file(const test::TempDir& tmp) {
  GGUFMetadata m;
  m.set("general.architecture", GGUFValue::str("llama"));
  m.set("general.alignment", GGUFValue::u32(32));
  m.set("test.u32", GGUFValue::u32(7));
  m.set("test.arr", GGUFValue::string_array({"a", "bb", "ccc"}));
  m.set("test.f32", GGUFValue::f32(1.5f));
  m.set("test.bool", GGUFValue::boolean(true));
  std::vector<uint8_t> b(34, 0x11), a(32, 0);
  const float one = 1.0f;
  for (int i = 0; i < 8; ++i) std::memcpy(a.data() + 4 * i, &one, 4);
  const std::string path = tmp.file("base.gguf");
  write_gguf(path, m, {{"tensor_b", DType::Q8_0, {1, 32}, b.data(), b.size()}, {"tensor_a", DType::F32, {2, 4}, a.data(), a.size()}});
  return test::read_text(path);
}

size_t find(const std::string& bytes, const std::string& s) {
  const size_t p = bytes.find(s);
  if (p == std::string::npos) throw std::runtime_error("test setup: '" + s + "' not in the file");
  return p;
}
// Offset just after a key or tensor name string.
size_t after(const std::string& bytes, const std::string& s) { return find(bytes, s) + s.size(); }

template <typename T>
void put(std::string& bytes, size_t off, T v) {
  std::memcpy(bytes.data() + off, &v, sizeof v);
}
template <typename T>
T get(const std::string& bytes, size_t off) {
  T v;
  std::memcpy(&v, bytes.data() + off, sizeof v);
  return v;
}

class GGUFBadInput : public ::testing::Test {
 protected:
  void SetUp() override { good = base_file(tmp); }

  // Opens `bytes` as a file; returns the error message, or "" (and a test failure) when it opened.
  std::string open_error(const std::string& bytes) {
    const std::string path = tmp.file("bad.gguf");
    test::write_bytes(path, bytes);
    try {
      (void)GGUFFile::open(path);
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "message does not start with the path: " << msg;
      return msg;
    }
    ADD_FAILURE() << "GGUFFile::open accepted the file";
    return "";
  }
  void expect_error(const std::string& bytes, const std::string& what) {
    const std::string msg = open_error(bytes);
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
  }

  test::TempDir tmp;
  std::string good;
};

TEST_F(GGUFBadInput, BaseFileIsValid) {
  const std::string path = tmp.file("base.gguf");
  const GGUFFile f = GGUFFile::open(path);
  ASSERT_EQ(f.tensor_infos.size(), 2u);
  EXPECT_EQ(f.data_offset + 96, f.file_size());  // the last tensor ends the file
  EXPECT_EQ(f.tensor(1).to_f32(), std::vector<float>(8, 1.0f));
  EXPECT_EQ(f.metadata.get_string_array("test.arr").size(), 3u);
}

TEST_F(GGUFBadInput, TruncatedAtEveryLength) {
  auto is_truncation = [](const std::string& msg) {
    return msg.find("truncated") != std::string::npos || msg.find("past end of file") != std::string::npos;
  };
  for (size_t len = 0; len < good.size(); ++len) {
    SCOPED_TRACE("length " + std::to_string(len));
    // Every length from an exact-size heap buffer (ASan sees any read past its end) ...
    std::vector<uint8_t> buf(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    GGUFFile f;
    try {
      parse_gguf_buffer(buf.data(), buf.size(), "cut.gguf", f);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("cut.gguf: ", 0), 0u) << e.what();
      EXPECT_TRUE(is_truncation(e.what())) << e.what();
    }
    // ... and every 7th length (and the last few) as a real file through GGUFFile::open.
    if (len % 7 == 0 || len + 8 > good.size()) {
      EXPECT_TRUE(is_truncation(open_error(good.substr(0, len))));
    }
  }
}

TEST_F(GGUFBadInput, WrongMagic) {
  std::string b = good;
  b[3] = 'G';
  expect_error(b, "wrong magic");
  expect_error("GGML" + good.substr(4), "wrong magic");
  expect_error(std::string(64, '\0'), "wrong magic");
}

TEST_F(GGUFBadInput, UnsupportedVersion) {
  for (uint32_t v : {0u, 1u, 4u, 0xFFFFFFFFu}) {
    std::string b = good;
    put<uint32_t>(b, 4, v);
    expect_error(b, "unsupported GGUF version " + std::to_string(v));
  }
  std::string b = good;
  put<uint32_t>(b, 4, 0x03000000u);
  expect_error(b, "big-endian");
}

TEST_F(GGUFBadInput, UnknownTensorType) {
  const size_t type_at = after(good, "tensor_b") + 4 + 2 * 8;
  ASSERT_EQ(get<uint32_t>(good, type_at), static_cast<uint32_t>(DType::Q8_0));
  for (uint32_t t : {4u, 5u, 31u, 99u, 0x10000u, 0xFFFFFFFFu}) {
    std::string b = good;
    put<uint32_t>(b, type_at, t);
    expect_error(b, "tensor 'tensor_b': unknown tensor type " + std::to_string(t));
  }
}

TEST_F(GGUFBadInput, TensorDataPastEndOfFile) {
  const size_t off_at = after(good, "tensor_a") + 4 + 2 * 8 + 4;
  ASSERT_EQ(get<uint64_t>(good, off_at), 64u);
  for (uint64_t off : {uint64_t{96}, uint64_t{1} << 20, ~uint64_t{31}}) {
    std::string b = good;
    put<uint64_t>(b, off_at, off);
    expect_error(b, "tensor 'tensor_a': data past end of file");
  }
  // More rows than the bytes that follow.
  std::string b = good;
  put<uint64_t>(b, after(good, "tensor_a") + 4 + 8, 3);
  expect_error(b, "tensor 'tensor_a': data past end of file");
}

TEST_F(GGUFBadInput, RowLengthNotAMultipleOfTheBlock) {
  const size_t ne0_at = after(good, "tensor_b") + 4;
  ASSERT_EQ(get<uint64_t>(good, ne0_at), 32u);
  for (uint64_t ne0 : {16u, 33u, 48u}) {
    std::string b = good;
    put<uint64_t>(b, ne0_at, ne0);
    expect_error(b, "tensor 'tensor_b': row length " + std::to_string(ne0) + " is not a multiple of the Q8_0 block size 32");
  }
}

TEST_F(GGUFBadInput, AbsurdStringLength) {
  // The first key's length, the string value's length, an array item's length, a tensor name's.
  const size_t positions[] = {24, after(good, "general.architecture") + 4, find(good, "bb") - 8, find(good, "tensor_a") - 8};
  for (size_t at : positions) {
    for (uint64_t len : {uint64_t{1} << 62, ~uint64_t{0}, uint64_t{good.size()}}) {
      std::string b = good;
      put<uint64_t>(b, at, len);
      expect_error(b, "absurd string length " + std::to_string(len));
    }
  }
}

TEST_F(GGUFBadInput, AbsurdArrayCount) {
  const size_t count_at = after(good, "test.arr") + 4 + 4;
  ASSERT_EQ(get<uint64_t>(good, count_at), 3u);
  for (uint64_t n : {uint64_t{1} << 60, ~uint64_t{0}, uint64_t{good.size()}}) {
    std::string b = good;
    put<uint64_t>(b, count_at, n);
    expect_error(b, "metadata 'test.arr': absurd array count " + std::to_string(n));
  }
}

TEST_F(GGUFBadInput, AbsurdTensorAndMetadataCounts) {
  for (uint64_t n : {uint64_t{1} << 40, ~uint64_t{0}}) {
    std::string b = good;
    put<uint64_t>(b, 8, n);
    expect_error(b, "absurd tensor count " + std::to_string(n));
    b = good;
    put<uint64_t>(b, 16, n);
    expect_error(b, "absurd metadata count " + std::to_string(n));
  }
}

TEST_F(GGUFBadInput, AbsurdShape) {
  const size_t ne1_at = after(good, "tensor_a") + 4 + 8;
  for (uint64_t ne : {uint64_t{1} << 41, uint64_t{1} << 62, ~uint64_t{0}}) {
    std::string b = good;
    put<uint64_t>(b, ne1_at, ne);
    expect_error(b, "tensor 'tensor_a': absurd shape");
  }
}

TEST_F(GGUFBadInput, DuplicateTensorNames) {
  std::string b = good;
  b.replace(find(b, "tensor_b"), 8, "tensor_a");
  expect_error(b, "duplicate tensor name 'tensor_a'");
}

TEST_F(GGUFBadInput, DuplicateMetadataKeys) {
  std::string b = good;
  b.replace(find(b, "test.f32"), 8, "test.u32");
  expect_error(b, "duplicate metadata key 'test.u32'");
}

TEST_F(GGUFBadInput, BadValueTypes) {
  std::string b = good;
  put<uint32_t>(b, after(good, "test.u32"), 13);
  expect_error(b, "metadata 'test.u32': unknown value type 13");
  b = good;
  put<uint32_t>(b, after(good, "test.arr") + 4, 77);
  expect_error(b, "metadata 'test.arr': unknown array element type 77");
  b = good;
  b[after(good, "test.bool") + 4] = 2;
  expect_error(b, "metadata 'test.bool': invalid bool value 2");
}

TEST_F(GGUFBadInput, BadDimensionCount) {
  for (uint32_t n : {0u, 5u, 0xFFFFFFFFu}) {
    std::string b = good;
    put<uint32_t>(b, after(good, "tensor_a"), n);
    expect_error(b, "tensor 'tensor_a': invalid dimension count " + std::to_string(n));
  }
}

TEST_F(GGUFBadInput, MisalignedTensorOffset) {
  std::string b = good;
  put<uint64_t>(b, after(good, "tensor_a") + 4 + 2 * 8 + 4, 65);
  expect_error(b, "tensor 'tensor_a': data offset 65 is not aligned to 32");
}

TEST_F(GGUFBadInput, BadAlignment) {
  for (uint32_t al : {0u, 3u, 48u, 1u << 21}) {
    std::string b = good;
    put<uint32_t>(b, after(good, "general.alignment") + 4, al);
    expect_error(b, "invalid general.alignment " + std::to_string(al));
  }
}

// Written by hand: one key whose value nests arrays `depth` deep, innermost an empty u8 array.
std::string nested_array_file(int depth) {
  std::string b;
  auto u32 = [&](uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [&](uint64_t v) { b.append(reinterpret_cast<const char*>(&v), 8); };
  b += "GGUF";
  u32(3);
  u64(0);
  u64(1);
  u64(1);
  b += "k";
  u32(9);  // ARRAY
  for (int i = 1; i < depth; ++i) {
    u32(9);  // of ARRAY
    u64(1);
  }
  u32(0);  // of U8
  u64(0);
  return b;
}

TEST_F(GGUFBadInput, ArraysNestedTooDeeply) {
  const std::string path = tmp.file("nest.gguf");
  test::write_bytes(path, nested_array_file(4));
  EXPECT_NO_THROW((void)GGUFFile::open(path));
  expect_error(nested_array_file(5), "metadata 'k': arrays nested too deeply");
  expect_error(nested_array_file(100000), "metadata 'k': arrays nested too deeply");
}

TEST_F(GGUFBadInput, NotARegularFile) {
  try {
    (void)GGUFFile::open(tmp.path().string());
    ADD_FAILURE() << "opened a directory";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(tmp.path().string() + ": ", 0), 0u) << e.what();
  }
  EXPECT_THROW((void)GGUFFile::open(tmp.file("missing.gguf")), Error);
}

// Random damage: any result is fine except a crash, a non-qeval exception or (under ASan) a
// read outside the buffer. Files that still parse have their tensors decoded.
TEST_F(GGUFBadInput, RandomDamageNeverCrashes) {
  std::mt19937 rng(2024);
  int opened = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::string b = good;
    const int n_changes = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < n_changes; ++k) {
      const size_t at = rng() % b.size();
      switch (rng() % 4) {
        case 0: b[at] = static_cast<char>(rng()); break;
        case 1: b[at] = static_cast<char>(b[at] ^ (1 << (rng() % 8))); break;
        case 2: b[at] = static_cast<char>(0xFF); break;
        default: b.resize(at); break;
      }
      if (b.empty()) break;
    }
    // An exact-size heap copy, so that ASan sees any read past the end.
    std::vector<uint8_t> buf(b.begin(), b.end());
    GGUFFile f;
    try {
      parse_gguf_buffer(buf.data(), buf.size(), "fuzz", f);
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("fuzz: ", 0), 0u) << e.what();
      ++rejected;
      continue;
    }
    ++opened;
    for (const auto& ti : f.tensor_infos) {
      ASSERT_LE(f.data_offset + ti.offset + ti.nbytes, buf.size());
      if (ti.nbytes > (1u << 20) || ti.ne.empty() || ti.ne[0] == 0) continue;
      const int64_t cols = ti.ne[0];
      std::vector<float> row(static_cast<size_t>(cols));
      const size_t rb = *row_bytes(ti.type, cols);
      for (size_t r = 0; r * rb < ti.nbytes; ++r)
        dequantize_row(ti.type, buf.data() + f.data_offset + ti.offset + r * rb, row.data(), cols);
    }
  }
  EXPECT_GT(opened, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace qeval
