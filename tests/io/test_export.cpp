#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>

#include "io/test_model_support.h"
#include "qeval/io/dequantize.h"
#include "qeval/io/hf_config.h"
#include "qeval/io/model.h"
#include "qeval/io/model_export.h"
#include "qeval/io/safetensors.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval {
namespace {

using test::error_of;
using test::expect_same_config;
using test::expect_same_tensors;

const char* kStoriesF32 = "models/stories260K-gguf/stories260K-F32.gguf";

std::set<std::string> key_set(const GGUFMetadata& md) {
  std::set<std::string> s;
  for (const auto& [k, v] : md.entries()) s.insert(k);
  return s;
}

// Raw bytes of every tensor of `out` equal the same-named tensor of `ref`.
void expect_same_file_bytes(const GGUFFile& ref, const GGUFFile& out, bool require_all = true) {
  if (require_all) {
    EXPECT_EQ(ref.tensor_infos.size(), out.tensor_infos.size());
  }
  for (size_t i = 0; i < out.tensor_infos.size(); ++i) {
    const Tensor t = out.tensor(i);
    const GGUFTensorInfo* ri = ref.find_tensor(t.name);
    ASSERT_NE(ri, nullptr) << t.name;
    const Tensor r = ref.tensor(static_cast<size_t>(ri - ref.tensor_infos.data()));
    EXPECT_EQ(r.dtype, t.dtype) << t.name;
    EXPECT_EQ(r.shape, t.shape) << t.name;
    ASSERT_EQ(r.nbytes, t.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(r.data, t.data, t.nbytes), 0) << t.name << ": bytes differ";
  }
}

TEST(ExportGGUF, StoriesF32RoundTripIsByteIdentical) {
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  test::TempDir tmp;
  const std::string src = test::shared_path(kStoriesF32).string();
  const Model m = load_model(src);
  GGUFExportOptions opt;
  opt.type = DType::F32;
  const auto report = save_gguf(m, tmp.file("out.gguf"), opt);
  EXPECT_EQ(report.size(), 48u);

  const Model r = load_model(tmp.file("out.gguf"));
  expect_same_config(m.config, r.config);
  expect_same_tensors(m, r);

  const GGUFFile a = GGUFFile::open(src);
  const GGUFFile b = GGUFFile::open(tmp.file("out.gguf"));
  // Same keys, plus the two the converter did not write.
  const auto ka = key_set(a.metadata), kb = key_set(b.metadata);
  for (const auto& k : ka) EXPECT_TRUE(kb.count(k)) << "lost key " << k;
  std::set<std::string> extra;
  for (const auto& k : kb)
    if (!ka.count(k)) extra.insert(k);
  EXPECT_EQ(extra, (std::set<std::string>{"general.file_type", "llama.rope.freq_base"}));
  EXPECT_EQ(b.metadata.get_int("general.file_type"), 0);
  for (const char* k : {"tokenizer.ggml.tokens"})
    EXPECT_EQ(a.metadata.get_string_array(k), b.metadata.get_string_array(k));
  EXPECT_EQ(a.metadata.get_float_array("tokenizer.ggml.scores"), b.metadata.get_float_array("tokenizer.ggml.scores"));
  EXPECT_EQ(a.metadata.get_int_array("tokenizer.ggml.token_type"), b.metadata.get_int_array("tokenizer.ggml.token_type"));
  // Every key shared by the two files has the same type and value.
  for (const auto& [k, v] : a.metadata.entries()) {
    const GGUFValue* w = b.metadata.find(k);
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(v.type, w->type) << k;
    EXPECT_EQ(v.to_display_string(1u << 20), w->to_display_string(1u << 20)) << k;
  }
  // Q/K rows went back to the interleaved order: the tensor bytes equal the original's.
  expect_same_file_bytes(a, b);
}

TEST(ExportGGUF, KeepTypesCopiesQuantizedBytes) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-Q4_0.gguf");
  test::TempDir tmp;
  const std::string src = test::shared_path("models/stories260K-gguf/stories260K-Q4_0.gguf").string();
  const Model m = load_model(src);
  save_gguf(m, tmp.file("same.gguf"));  // no type: keep every tensor's type and bytes
  const GGUFFile a = GGUFFile::open(src), b = GGUFFile::open(tmp.file("same.gguf"));
  expect_same_file_bytes(a, b);
  EXPECT_EQ(b.metadata.get_int("general.file_type"), 2);  // mostly Q4_0
  EXPECT_EQ(b.metadata.get_int("general.quantization_version"), 2);
}

TEST(ExportGGUF, F16MatchesLlamaQuantize) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F16.gguf");
  test::TempDir tmp;
  const Model m = load_model(test::shared_path(kStoriesF32).string());
  GGUFExportOptions opt;
  opt.type = DType::F16;
  save_gguf(m, tmp.file("f16.gguf"), opt);
  const GGUFFile ref = GGUFFile::open(test::shared_path("models/stories260K-gguf/stories260K-F16.gguf").string());
  const GGUFFile out = GGUFFile::open(tmp.file("f16.gguf"));
  expect_same_file_bytes(ref, out);  // matrices F16 (round to nearest even), norms F32
  EXPECT_EQ(out.metadata.get_int("general.file_type"), 1);
}

TEST(ExportGGUF, FromHFEqualsTheConvertedGGUF) {
  QEVAL_REQUIRE_SHARED("models/stories260K-hf");
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  test::TempDir tmp;
  const Model h = load_model(test::shared_path("models/stories260K-hf").string());
  GGUFExportOptions opt;
  opt.type = DType::F32;
  save_gguf(h, tmp.file("hf.gguf"), opt);
  const GGUFFile ref = GGUFFile::open(test::shared_path(kStoriesF32).string());
  const GGUFFile out = GGUFFile::open(tmp.file("hf.gguf"));
  // The tied output is not written; every other tensor equals llama.cpp's conversion of the
  // llama2.c original byte for byte (so HF half-split -> GGUF interleaved is right).
  EXPECT_EQ(out.find_tensor("output.weight"), nullptr);
  EXPECT_EQ(out.tensor_infos.size() + 1, ref.tensor_infos.size());
  expect_same_file_bytes(ref, out, /*require_all=*/false);
  // The SentencePiece vocabulary became the same tokenizer keys.
  EXPECT_EQ(out.metadata.get_string_array("tokenizer.ggml.tokens"), ref.metadata.get_string_array("tokenizer.ggml.tokens"));
  EXPECT_EQ(out.metadata.get_float_array("tokenizer.ggml.scores"), ref.metadata.get_float_array("tokenizer.ggml.scores"));
  EXPECT_EQ(out.metadata.get_int("tokenizer.ggml.bos_token_id"), 1);

  const Model r = load_model(tmp.file("hf.gguf"));
  expect_same_config(h.config, r.config);  // tied both ways now
  expect_same_tensors(h, r);
}

TEST(ExportGGUF, QuantizedTypesFallBackLikeLlamaQuantize) {
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    if (!can_quantize(type)) {
      GTEST_SKIP() << "quantize_row cannot produce " << dtype_name(type) << " yet";
    }
    SCOPED_TRACE(std::string(dtype_name(type)));
    test::TempDir tmp;
    const Model m = load_model(test::shared_path(kStoriesF32).string());
    GGUFExportOptions opt;
    opt.type = type;
    opt.tensor_types["output.weight"] = DType::Q8_0;
    const auto report = save_gguf(m, tmp.file("q.gguf"), opt);
    int fallbacks = 0;
    for (const auto& e : report) {
      if (e.name.find("ffn_down") != std::string::npos) {
        EXPECT_EQ(e.type, DType::F16) << e.name;  // 172 columns
        EXPECT_TRUE(e.fallback);
      } else if (e.name.find("norm") != std::string::npos) {
        EXPECT_EQ(e.type, DType::F32) << e.name;
      } else if (e.name == "output.weight") {
        EXPECT_EQ(e.type, DType::Q8_0);
      } else {
        EXPECT_EQ(e.type, type) << e.name;
      }
      fallbacks += e.fallback;
    }
    EXPECT_EQ(fallbacks, 5);
    const Model q = load_model(tmp.file("q.gguf"));
    EXPECT_EQ(q.tensor("blk.0.attn_q.weight").dtype, type);
    // Quantized weights stay close to the originals (through the permutation, too).
    const auto a = m.tensor("blk.0.attn_q.weight").to_f32();
    const auto b = q.tensor("blk.0.attn_q.weight").to_f32();
    double err = 0, norm = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      err += (a[i] - b[i]) * (a[i] - b[i]);
      norm += a[i] * a[i];
    }
    EXPECT_LT(std::sqrt(err / norm), type == DType::Q8_0 ? 0.01 : 0.2);
    if (type == DType::Q4_0) {
      // The shared Q4_0 file was made by llama-quantize from the same F32 file.
      const GGUFFile ref = GGUFFile::open(test::shared_path("models/stories260K-gguf/stories260K-Q4_0.gguf").string());
      expect_same_file_bytes(ref, GGUFFile::open(tmp.file("q.gguf")));
    }
  }
}

TEST(ExportGGUF, AlignmentAndErrors) {
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  test::TempDir tmp;
  const Model m = load_model(test::shared_path(kStoriesF32).string());
  GGUFExportOptions opt;
  opt.alignment = 64;
  opt.name = "tiny";
  save_gguf(m, tmp.file("a.gguf"), opt);
  const GGUFFile f = GGUFFile::open(tmp.file("a.gguf"));
  EXPECT_EQ(f.alignment, 64u);
  EXPECT_EQ(f.metadata.get_string("general.name"), "tiny");
  EXPECT_EQ(f.data_offset % 64, 0u);
  expect_same_tensors(m, load_model(tmp.file("a.gguf")));

  opt = {};
  opt.type = DType::Q6_K;
  if (!can_quantize(DType::Q6_K)) {
    EXPECT_NE(error_of([&] { save_gguf(m, tmp.file("k.gguf"), opt); }).find("cannot write tensors as Q6_K"),
              std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(tmp.file("k.gguf")));
  }
  opt = {};
  opt.alignment = 48;
  EXPECT_NE(error_of([&] { save_gguf(m, tmp.file("b.gguf"), opt); }).find("power of two"), std::string::npos);
}

ModelConfig small(const std::string& arch_json) { return config_from_hf_json(nlohmann::json::parse(arch_json), "c.json"); }

// Synthetic models of every architecture: GGUF and HF exports reload to the same model.
TEST(Export, EveryArchitectureRoundTrips) {
  const std::vector<std::string> configs = {
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":16,"intermediate_size":40,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":30,"max_position_embeddings":64,
        "rms_norm_eps":1e-5,"attention_bias":true})",
      R"({"architectures":["MistralForCausalLM"],"hidden_size":16,"intermediate_size":40,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":1,"vocab_size":30,"max_position_embeddings":64,
        "rms_norm_eps":1e-5,"sliding_window":32})",
      R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":16,"intermediate_size":40,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":30,"max_position_embeddings":64,
        "rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":true})",
      R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":16,"intermediate_size":40,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"vocab_size":30,
        "max_position_embeddings":64,"rms_norm_eps":1e-6})",
      R"({"architectures":["GPT2LMHeadModel"],"n_embd":16,"n_layer":2,"n_head":4,"n_positions":64,
        "layer_norm_epsilon":1e-5,"vocab_size":30})",
  };
  for (const auto& text : configs) {
    const ModelConfig c = small(text);
    SCOPED_TRACE(c.architecture);
    test::TempDir tmp;
    const Model m = test::synthetic_model(c);

    save_hf(m, tmp.file("hf"));
    const Model h = load_model(tmp.file("hf"));
    expect_same_config(m.config, h.config);
    expect_same_tensors(m, h);
    EXPECT_TRUE(std::filesystem::exists(tmp.path() / "hf" / "generation_config.json"));

    GGUFExportOptions opt;
    opt.type = DType::F32;
    save_gguf(m, tmp.file("m.gguf"), opt);
    const Model g = load_model(tmp.file("m.gguf"));
    ModelConfig want = m.config;
    if (want.architecture == "mistral") {
      want.architecture = "llama";  // llama.cpp has no separate mistral arch
    }
    expect_same_config(want, g.config);
    expect_same_tensors(m, g);
    if (c.architecture == "gpt2") {
      const GGUFFile f = GGUFFile::open(tmp.file("m.gguf"));
      EXPECT_NE(f.find_tensor("blk.1.attn_qkv.weight"), nullptr);
      EXPECT_EQ(f.find_tensor("blk.1.attn_q.weight"), nullptr);
    }
  }
}

TEST(ExportHF, StoriesRoundTripAndFiles) {
  QEVAL_REQUIRE_SHARED("models/stories260K-hf");
  test::TempDir tmp;
  const std::string src = test::shared_path("models/stories260K-hf").string();
  const Model h = load_model(src);
  const std::string out = tmp.file("out");
  save_hf(h, out);
  const Model r = load_model(out);
  expect_same_config(h.config, r.config);
  expect_same_tensors(h, r);
  for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
    EXPECT_EQ(test::read_text(std::filesystem::path(out) / f), test::read_text(std::filesystem::path(src) / f)) << f;
  const auto cfg = read_json_file(out + "/config.json");
  EXPECT_EQ(cfg["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(cfg["bos_token_id"], 1);
  EXPECT_EQ(cfg["eos_token_id"], 2);
  EXPECT_EQ(cfg["torch_dtype"], "float32");
  EXPECT_EQ(cfg["rms_norm_eps"].get<double>(), 1e-5);
  const auto st = open_safetensors(out + "/model.safetensors");
  EXPECT_EQ(st.metadata.at("format"), "pt");
  EXPECT_EQ(st.find("lm_head.weight"), nullptr);  // tied: transformers re-ties it
  // Same HF tensors as the original file (minus the tied copy), byte for byte.
  const auto orig = open_safetensors(src + "/model.safetensors");
  EXPECT_EQ(st.tensors.size() + 1, orig.tensors.size());
  for (const auto& t : st.tensors) {
    const Tensor* o = orig.find(t.name);
    ASSERT_NE(o, nullptr) << t.name;
    ASSERT_EQ(o->nbytes, t.nbytes);
    EXPECT_EQ(std::memcmp(o->data, t.data, t.nbytes), 0) << t.name;
  }
}

TEST(ExportHF, FromGGUFUsesHFLayoutAndDtypeOption) {
  QEVAL_REQUIRE_SHARED("models/stories260K-hf");
  test::TempDir tmp;
  const Model g = load_model(test::shared_path(kStoriesF32).string());
  save_hf(g, tmp.file("out"));
  // The GGUF's interleaved q/k come out half-split: equal to the HF original's bytes.
  const auto st = open_safetensors(tmp.file("out") + "/model.safetensors");
  const auto orig = open_safetensors(test::shared_path("models/stories260K-hf/model.safetensors").string());
  EXPECT_EQ(st.tensors.size(), orig.tensors.size());  // lm_head written: the GGUF is untied
  for (const auto& t : st.tensors) {
    const Tensor* o = orig.find(t.name);
    ASSERT_NE(o, nullptr) << t.name;
    EXPECT_EQ(std::memcmp(o->data, t.data, t.nbytes), 0) << t.name;
  }
  HFExportOptions opt;
  opt.dtype = DType::BF16;
  save_hf(g, tmp.file("bf16"), opt);
  const Model b = load_model(tmp.file("bf16"));
  EXPECT_EQ(b.tensor("blk.0.attn_q.weight").dtype, DType::BF16);
  EXPECT_EQ(read_json_file(tmp.file("bf16") + "/config.json")["torch_dtype"], "bfloat16");
  opt.dtype = DType::Q4_0;
  EXPECT_NE(error_of([&] { save_hf(g, tmp.file("q"), opt); }).find("F32, F16 or BF16"), std::string::npos);
}

TEST(ExportGGUF, Llama3RopeScalingBecomesRopeFreqs) {
  ModelConfig c = small(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":64,
    "num_hidden_layers":1,"num_attention_heads":2,"vocab_size":30,"max_position_embeddings":64,"rms_norm_eps":1e-5,
    "rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
    "high_freq_factor":4.0,"original_max_position_embeddings":8192}})");
  test::TempDir tmp;
  save_gguf(test::synthetic_model(c), tmp.file("l3.gguf"));
  const Model g = load_model(tmp.file("l3.gguf"));
  const auto f = g.tensor("rope_freqs.weight").to_f32();
  ASSERT_EQ(f.size(), 16u);  // head_dim 32 / 2
  EXPECT_EQ(f.front(), 1.0f);  // highest frequency: unscaled
  EXPECT_EQ(f.back(), 8.0f);   // lowest frequency: divided by the factor
  for (size_t i = 1; i < f.size(); ++i) EXPECT_GE(f[i], f[i - 1]);
}

}  // namespace
}  // namespace qeval
