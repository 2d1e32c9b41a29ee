#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "io/test_model_support.h"
#include "qeval/io/safetensors.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"
#include "test_support.h"

namespace qeval {
namespace {

using test::error_of;
using test::safetensors_bytes;

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

TEST(Safetensors, ReadsTensorsAndMetadataWithoutCopy) {
  test::TempDir tmp;
  const std::string header =
      R"({"__metadata__":{"format":"pt","note":"x"},)"
      R"("b":{"dtype":"F16","shape":[2],"data_offsets":[24,28]},)"
      R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  std::string data = f32_bytes({1, 2, 3, 4, 5, 6});
  const uint16_t h[2] = {f32_to_fp16(0.5f), f32_to_fp16(-2.0f)};
  data.append(reinterpret_cast<const char*>(h), 4);
  test::write_bytes(tmp.file("m.safetensors"), safetensors_bytes(header, data));

  const SafetensorsFile f = open_safetensors(tmp.file("m.safetensors"));
  EXPECT_EQ(f.header_size, header.size());
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].name, "a");  // sorted by offset
  EXPECT_EQ(f.tensors[1].name, "b");
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.metadata.at("note"), "x");
  const Tensor* a = f.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::F32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->to_f32(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(f.find("b")->to_f32(), (std::vector<float>{0.5f, -2.0f}));
  // Both point into one mapping, right after the header: no copy was made.
  EXPECT_EQ(f.find("b")->data, a->data + 24);
  EXPECT_TRUE(a->owner != nullptr);
  EXPECT_EQ(f.find("c"), nullptr);
}

TEST(Safetensors, ReadsTheSharedStoriesCheckpoint) {
  QEVAL_REQUIRE_SHARED("models/stories260K-hf/model.safetensors");
  const auto f = open_safetensors(test::shared_path("models/stories260K-hf/model.safetensors").string());
  EXPECT_EQ(f.tensors.size(), 48u);  // 1 + 5 * 9 + norm + lm_head copy
  EXPECT_NE(f.find("lm_head.weight"), nullptr);
  EXPECT_EQ(f.metadata.count("format"), 1u);
  const Tensor* q = f.find("model.layers.0.self_attn.k_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(q->dtype, DType::F32);
  EXPECT_EQ(f.find("model.embed_tokens.weight")->shape, (std::vector<int64_t>{512, 64}));
}

TEST(Safetensors, DtypeNames) {
  for (auto [name, t] : {std::pair{"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"I8", DType::I8},
                         {"U8", DType::U8}, {"I32", DType::I32}, {"I64", DType::I64}, {"I16", DType::I16}, {"F64", DType::F64}}) {
    EXPECT_EQ(safetensors_dtype(name), t) << name;
    EXPECT_EQ(safetensors_dtype_name(t), std::string_view(name));
  }
  EXPECT_FALSE(safetensors_dtype("f32"));  // the spec's names are upper case
  EXPECT_FALSE(safetensors_dtype("F8_E4M3"));
  EXPECT_FALSE(safetensors_dtype_name(DType::Q4_0));
  // U8 is no ggml type: a GGUF file cannot claim it.
  EXPECT_FALSE(dtype_traits(static_cast<uint32_t>(DType::U8)));
}

// One malformed file -> one-line error starting with the path and containing `what`.
void expect_rejected(const std::string& bytes, const std::string& what) {
  test::TempDir tmp;
  const std::string path = tmp.file("bad.safetensors");
  test::write_bytes(path, bytes);
  const std::string msg = error_of([&] { open_safetensors(path); });
  EXPECT_NE(msg.find(what), std::string::npos) << "message: " << msg << "\nexpected: " << what;
  EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(Safetensors, RejectsMalformedFiles) {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data8(8, '\0');
  // Sanity: the well-formed variant loads, so the failures below are about the one defect.
  {
    test::TempDir tmp;
    test::write_bytes(tmp.file("ok"), safetensors_bytes("{" + ok_entry + "}", data8));
    EXPECT_NO_THROW(open_safetensors(tmp.file("ok")));
  }
  expect_rejected("", "too short");
  expect_rejected("abc", "too short");
  std::string huge = safetensors_bytes("{}");
  huge[6] = 1;  // N = 2^48 + 2
  expect_rejected(huge, "absurd header length");
  std::string over = safetensors_bytes("{}");
  over[0] = 100;  // N = 100 > file
  expect_rejected(over, "exceeds the file size");
  expect_rejected(safetensors_bytes("[1,2]"), "not a JSON object");
  expect_rejected(safetensors_bytes("{\"a\": "), "not valid JSON");
  expect_rejected(safetensors_bytes("{\"a\":1}"), "entry should be an object, is number");
  expect_rejected(safetensors_bytes(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", data8), "missing 'dtype'");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", data8), "missing 'shape'");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", data8), "missing 'data_offsets'");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", data8),
                  "'dtype' should be a string, is number");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", data8),
                  "unsupported dtype 'Q9'");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", data8),
                  "'shape' should be an array");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8),
                  "shape entry should be a non-negative integer");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", data8),
                  "shape entry should be a non-negative integer, is number");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8),
                  "'data_offsets' should be an array of 2 integers");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data8), "reversed");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data8),
                  "past the end of the data");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8),
                  "needs 12");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                    data8),
                  "overlap");
  expect_rejected(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                    R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                    data8),
                  "duplicate tensor name 'a'");
  expect_rejected(safetensors_bytes(R"({"__metadata__":{"k":1},)" + ok_entry + "}", data8),
                  "'__metadata__' entry 'k' should be a string, is number");
  expect_rejected(safetensors_bytes(R"({"__metadata__":[],)" + ok_entry + "}", data8),
                  "'__metadata__' should be an object");
}

TEST(Safetensors, DuplicateKeysInsideAnEntryAreNotTensorNames) {
  // Only top-level keys are tensor names; a zero-size tensor at another's offset is fine.
  test::TempDir tmp;
  test::write_bytes(tmp.file("z"), safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                                     R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                                                     std::string(8, '\0')));
  const auto f = open_safetensors(tmp.file("z"));
  EXPECT_EQ(f.tensors.size(), 2u);
}

// Parses a written file by hand, the way the reference implementation validates it.
void expect_spec_conformant(const std::string& path, const std::vector<std::string>& order) {
  const std::string bytes = test::read_text(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  ASSERT_LE(8 + n, bytes.size());
  EXPECT_EQ((8 + n) % 8, 0u) << "data must start 8-byte aligned";
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  const auto last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}') << "padding must be spaces";
  const auto j = nlohmann::ordered_json::parse(header);
  std::vector<std::string> names;
  uint64_t expect_begin = 0;
  for (const auto& [k, v] : j.items()) {
    if (k == "__metadata__") continue;
    names.push_back(k);
    ASSERT_TRUE(v.contains("dtype") && v.contains("shape") && v.contains("data_offsets")) << k;
    EXPECT_EQ(v["data_offsets"][0].get<uint64_t>(), expect_begin) << k << ": data not contiguous";
    expect_begin = v["data_offsets"][1].get<uint64_t>();
  }
  EXPECT_EQ(names, order);
  EXPECT_EQ(8 + n + expect_begin, bytes.size()) << "data section must end the file";
}

TEST(Safetensors, WriterRoundTripsEveryDtypeAndFollowsTheSpec) {
  test::TempDir tmp;
  std::vector<Tensor> ts;
  ts.push_back(Tensor::from_f32("w", {2, 3}, {1, -2, 3.5f, 4, 5, 6}));
  auto bytes_of = [](size_t n, uint8_t start) {
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(start + 7 * i);
    return b;
  };
  ts.push_back(Tensor::from_bytes("h", DType::F16, {3}, bytes_of(6, 1)));
  ts.push_back(Tensor::from_bytes("bf", DType::BF16, {2, 1}, bytes_of(4, 2)));
  ts.push_back(Tensor::from_bytes("i8", DType::I8, {5}, bytes_of(5, 3)));
  ts.push_back(Tensor::from_bytes("u8", DType::U8, {1, 3}, bytes_of(3, 4)));
  ts.push_back(Tensor::from_bytes("i32", DType::I32, {2}, bytes_of(8, 5)));
  ts.push_back(Tensor::from_bytes("i64", DType::I64, {1}, bytes_of(8, 6)));
  ts.push_back(Tensor::from_f32("scalar", {}, {42.0f}));
  const std::string path = tmp.file("out.safetensors");
  write_safetensors(path, ts, {{"format", "pt"}, {"qeval", "1"}});
  expect_spec_conformant(path, {"w", "h", "bf", "i8", "u8", "i32", "i64", "scalar"});

  const auto f = open_safetensors(path);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.metadata.at("qeval"), "1");
  ASSERT_EQ(f.tensors.size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& r = f.tensors[i];  // file order == listed order
    EXPECT_EQ(r.name, ts[i].name);
    EXPECT_EQ(r.dtype, ts[i].dtype);
    EXPECT_EQ(r.shape, ts[i].shape);
    ASSERT_EQ(r.nbytes, ts[i].nbytes);
    EXPECT_EQ(std::memcmp(r.data, ts[i].data, r.nbytes), 0) << r.name;
  }
  EXPECT_EQ(test::read_text(path).substr(8, 15), R"({"__metadata__")");
}

TEST(Safetensors, WriterMaterializesRowOrderAndRejectsBadInput) {
  test::TempDir tmp;
  Tensor t = Tensor::from_f32("p", {3, 2}, {0, 1, 10, 11, 20, 21});
  t.row_order = {2, 0, 1};
  write_safetensors(tmp.file("p.safetensors"), {t});
  EXPECT_EQ(open_safetensors(tmp.file("p.safetensors")).tensors[0].to_f32(), (std::vector<float>{20, 21, 0, 1, 10, 11}));
  expect_spec_conformant(tmp.file("p.safetensors"), {"p"});

  const Tensor q = Tensor::from_bytes("q", DType::Q8_0, {1, 32}, std::vector<uint8_t>(34));
  EXPECT_NE(error_of([&] { write_safetensors(tmp.file("q"), {q}); }).find("Q8_0 cannot be stored"), std::string::npos);
  EXPECT_NE(error_of([&] { write_safetensors(tmp.file("d"), {t, t}); }).find("duplicate tensor name 'p'"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(tmp.file("q")));
}

TEST(Safetensors, ShardedCheckpoint) {
  test::TempDir tmp;
  const auto dir = tmp.path();
  write_safetensors((dir / "model-00001-of-00002.safetensors").string(),
                    {Tensor::from_f32("a", {2}, {1, 2}), Tensor::from_f32("b", {1}, {3})});
  write_safetensors((dir / "model-00002-of-00002.safetensors").string(), {Tensor::from_f32("c", {1}, {4})});
  test::write_bytes(dir / "model.safetensors.index.json",
                    R"({"metadata":{"total_size":16},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
                    R"("b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})");
  const auto ck = open_safetensors_checkpoint(dir.string());
  EXPECT_EQ(ck.files.size(), 2u);
  ASSERT_EQ(ck.tensors.size(), 3u);
  EXPECT_EQ(ck.tensors.at("c").to_f32(), std::vector<float>{4});
  EXPECT_EQ(ck.tensors.at("a").to_f32(), (std::vector<float>{1, 2}));
  EXPECT_EQ(ck.where.at("c"), (dir / "model-00002-of-00002.safetensors").string());
  // The index file itself works as the path too.
  EXPECT_EQ(open_safetensors_checkpoint((dir / "model.safetensors.index.json").string()).tensors.size(), 3u);

  auto index_error = [&](const std::string& text) {
    test::write_bytes(dir / "model.safetensors.index.json", text);
    return error_of([&] { open_safetensors_checkpoint(dir.string()); });
  };
  EXPECT_NE(index_error(R"({"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00001-of-00002.safetensors"}})")
                .find("tensor 'a' is listed in shard 'model-00002-of-00002.safetensors' but not found there"),
            std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"a":"missing.safetensors"}})").find("shard 'missing.safetensors' does not exist"),
            std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"a":"../x.safetensors"}})").find("leaves the checkpoint directory"),
            std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"a":3}})").find("'weight_map' entry 'a' should be a string"), std::string::npos);
  EXPECT_NE(index_error(R"({"nothing":{}})").find("missing 'weight_map'"), std::string::npos);
  EXPECT_NE(index_error("{").find("not valid JSON"), std::string::npos);

  // The same name in two shards.
  write_safetensors((dir / "model-00002-of-00002.safetensors").string(), {Tensor::from_f32("a", {2}, {5, 6})});
  EXPECT_NE(index_error(R"({"weight_map":{"a":"model-00001-of-00002.safetensors","x":"model-00002-of-00002.safetensors"}})")
                .find("tensor 'a' is also in"),
            std::string::npos);

  test::TempDir empty;
  EXPECT_NE(error_of([&] { open_safetensors_checkpoint(empty.path().string()); })
                .find("no model.safetensors or model.safetensors.index.json"),
            std::string::npos);
}

}  // namespace
}  // namespace qeval
