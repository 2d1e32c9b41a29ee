#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "io/test_model_support.h"
#include "qeval/io/architectures.h"
#include "qeval/io/hf_config.h"
#include "qeval/io/model.h"
#include "qeval/io/safetensors.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"
#include "test_support.h"

namespace qeval {
namespace {

using test::error_of;
using test::expect_same_config;
using test::expect_same_tensors;

TEST(RotaryRows, InterleavedToHalfSplit) {
  // head_dim 4: logical (c=0,j=0),(0,1),(1,0),(1,1) -> physical 2j+c = 0,2,1,3.
  EXPECT_EQ(interleaved_rotary_rows(1, 4), (std::vector<int32_t>{0, 2, 1, 3}));
  EXPECT_EQ(interleaved_rotary_rows(2, 6), (std::vector<int32_t>{0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11}));
  EXPECT_THROW(interleaved_rotary_rows(1, 3), Error);
}

// The HF and GGUF copies of a llama2.c model load to the same model, bit for bit.
void expect_hf_equals_gguf(const std::string& hf, const std::string& gguf) {
  QEVAL_REQUIRE_SHARED(hf);
  QEVAL_REQUIRE_SHARED(gguf);
  const Model h = load_model(test::shared_path(hf).string());
  const Model g = load_model(test::shared_path(gguf).string());
  EXPECT_EQ(h.format, ModelFormat::HFDirectory);
  EXPECT_EQ(g.format, ModelFormat::GGUF);
  // config.json ties the embeddings (lm_head.weight is a copy); the GGUF stores output.weight.
  EXPECT_TRUE(h.config.tied_embeddings);
  EXPECT_FALSE(g.config.tied_embeddings);
  expect_same_config(h.config, g.config, /*compare_tied=*/false);
  expect_same_tensors(h, g);

  // GGUF q/k rows are read through a permutation (no copy), HF ones directly.
  const Tensor& gq = g.tensor("blk.0.attn_q.weight");
  EXPECT_EQ(gq.row_order, interleaved_rotary_rows(g.config.n_heads, g.config.head_dim));
  EXPECT_EQ(g.tensor("blk.0.attn_k.weight").row_order, interleaved_rotary_rows(g.config.n_kv_heads, g.config.head_dim));
  EXPECT_TRUE(g.tensor("blk.0.attn_v.weight").row_order.empty());
  EXPECT_TRUE(h.tensor("blk.0.attn_q.weight").row_order.empty());

  // Negative control: without the permutation attn_q/attn_k differ from HF.
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_k.weight"}) {
    Tensor raw = g.tensor(name);
    raw.row_order.clear();
    EXPECT_FALSE(test::same_bits(raw.to_f32(), h.tensor(name).to_f32())) << name;
  }
}

TEST(LoadModel, Stories260KHFAndGGUFAreIdentical) {
  expect_hf_equals_gguf("models/stories260K-hf", "models/stories260K-gguf/stories260K-F32.gguf");
}

TEST(LoadModel, Aidreams260KHFAndGGUFAreIdentical) {
  expect_hf_equals_gguf("models/aidreams260K-hf", "models/aidreams260K-gguf/aidreams260K-F32.gguf");
}

TEST(LoadModel, F16GGUFIsTheF32FileRoundedToF16) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F16.gguf");
  const Model f32 = load_model(test::shared_path("models/stories260K-gguf/stories260K-F32.gguf").string());
  const Model f16 = load_model(test::shared_path("models/stories260K-gguf/stories260K-F16.gguf").string());
  expect_same_config(f32.config, f16.config);
  ASSERT_EQ(f32.tensors.size(), f16.tensors.size());
  int n_f16 = 0;
  for (const auto& [name, t] : f16.tensors) {
    std::vector<float> want = f32.tensor(name).to_f32();
    if (t.dtype == DType::F16) {
      ++n_f16;
      for (auto& x : want) x = fp16_to_f32(f32_to_fp16(x));
    } else {
      EXPECT_EQ(t.dtype, DType::F32) << name;
      EXPECT_EQ(t.shape.size(), 1u) << name;  // only norms stay F32
    }
    EXPECT_TRUE(test::same_bits(t.to_f32(), want)) << name;
  }
  EXPECT_EQ(n_f16, 1 + 1 + 5 * 7);  // token_embd, output, 7 matrices per layer
}

TEST(LoadModel, QuantizedGGUFKeepsTypesAndPermutesRows) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-Q4_0.gguf");
  const Model m = load_model(test::shared_path("models/stories260K-gguf/stories260K-Q4_0.gguf").string());
  EXPECT_EQ(m.tensor("blk.0.attn_q.weight").dtype, DType::Q4_0);
  EXPECT_EQ(m.tensor("blk.0.attn_q.weight").row_order.size(), 64u);
  EXPECT_EQ(m.tensor("blk.2.ffn_down.weight").dtype, DType::F16);
  EXPECT_EQ(m.tensor("output.weight").dtype, DType::Q8_0);
  EXPECT_EQ(m.tensor("output_norm.weight").dtype, DType::F32);
  EXPECT_EQ(m.tensors.size(), 48u);
  EXPECT_EQ(m.config.n_layers, 5);
}

// A synthetic llama GGUF whose Q rows hold their physical index: the loaded (logical) row r
// must hold physical row interleave(r).
TEST(LoadModel, SyntheticGGUFRotaryPermutation) {
  test::TempDir tmp;
  ModelConfig c = default_config(*find_architecture("llama"));
  c.vocab_size = 8;
  c.hidden_size = 8;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 4;
  c.ffn_size = 16;
  c.context_length = 32;
  c.rope_dim = 4;
  Model m = test::synthetic_model(c);
  std::vector<float> q(8 * 8);
  for (int r = 0; r < 8; ++r)
    for (int k = 0; k < 8; ++k) q[static_cast<size_t>(r * 8 + k)] = static_cast<float>(r);
  GGUFMetadata md;
  config_to_gguf_metadata(c, md);
  std::vector<GGUFWriteTensor> ws;
  for (auto& [name, t] : m.tensors) {
    if (name == "blk.0.attn_q.weight") t = Tensor::from_f32(name, {8, 8}, q);
    ws.push_back({name, t.dtype, t.shape, t.data, t.nbytes});
  }
  write_gguf(tmp.file("m.gguf"), md, ws);
  const Model g = load_model(tmp.file("m.gguf"));
  const auto v = g.tensor("blk.0.attn_q.weight").to_f32();
  const std::vector<float> want_rows = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int r = 0; r < 8; ++r) EXPECT_EQ(v[static_cast<size_t>(r * 8)], want_rows[static_cast<size_t>(r)]) << r;
  EXPECT_EQ(g.config.n_kv_heads, 1);
}

const char* kGPT2Config = R"({"architectures":["GPT2LMHeadModel"],"n_embd":8,"n_layer":2,"n_head":2,
  "n_positions":16,"layer_norm_epsilon":1e-5,"vocab_size":20,"activation_function":"gelu_new"})";

std::vector<std::pair<std::string, std::vector<int64_t>>> gpt2_hf_tensors(const std::string& prefix) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> v = {
      {prefix + "wte.weight", {20, 8}}, {prefix + "wpe.weight", {16, 8}}, {prefix + "ln_f.weight", {8}},
      {prefix + "ln_f.bias", {8}}};
  for (int l = 0; l < 2; ++l) {
    const std::string p = prefix + "h." + std::to_string(l) + ".";
    for (auto [n, s] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
             {"ln_1.weight", {8}}, {"ln_1.bias", {8}}, {"attn.c_attn.weight", {8, 24}}, {"attn.c_attn.bias", {24}},
             {"attn.c_proj.weight", {8, 8}}, {"attn.c_proj.bias", {8}}, {"ln_2.weight", {8}}, {"ln_2.bias", {8}},
             {"mlp.c_fc.weight", {8, 32}}, {"mlp.c_fc.bias", {32}}, {"mlp.c_proj.weight", {32, 8}},
             {"mlp.c_proj.bias", {8}}, {"attn.bias", {1, 1, 16, 16}}})
      v.push_back({p + n, s});
  }
  return v;
}

TEST(LoadModel, HFGPT2TransposesConv1DAndSplitsQKV) {
  for (const std::string prefix : {"", "transformer."}) {
    test::TempDir tmp;
    const auto written = test::write_hf_dir(tmp.path(), kGPT2Config, gpt2_hf_tensors(prefix));
    auto src = [&](const std::string& n) -> const Tensor& {
      for (const auto& t : written)
        if (t.name == prefix + n) return t;
      throw std::runtime_error("no " + n);
    };
    const Model m = load_model(tmp.path().string());
    EXPECT_EQ(m.config.architecture, "gpt2");
    EXPECT_TRUE(m.config.tied_embeddings);
    EXPECT_TRUE(m.is_alias("output.weight"));
    EXPECT_EQ(m.tensor("output.weight").data, m.tensor("token_embd.weight").data);
    // c_attn [in=8, out=24]: q = columns 0..7, k = 8..15, v = 16..23, transposed to [out, in].
    const auto ca = src("h.1.attn.c_attn.weight").to_f32();
    for (auto [name, off] : {std::pair{"blk.1.attn_q.weight", 0}, {"blk.1.attn_k.weight", 8}, {"blk.1.attn_v.weight", 16}}) {
      const Tensor& t = m.tensor(name);
      ASSERT_EQ(t.shape, (std::vector<int64_t>{8, 8}));
      const auto v = t.to_f32();
      for (int o = 0; o < 8; ++o)
        for (int i = 0; i < 8; ++i) EXPECT_EQ(v[static_cast<size_t>(o * 8 + i)], ca[static_cast<size_t>(i * 24 + off + o)]);
    }
    const auto cb = src("h.1.attn.c_attn.bias").to_f32();
    EXPECT_EQ(m.tensor("blk.1.attn_v.bias").to_f32(), std::vector<float>(cb.begin() + 16, cb.end()));
    const auto fc = src("h.0.mlp.c_fc.weight").to_f32();  // [8, 32] -> ffn_up [32, 8]
    const auto up = m.tensor("blk.0.ffn_up.weight").to_f32();
    EXPECT_EQ(m.tensor("blk.0.ffn_up.weight").shape, (std::vector<int64_t>{32, 8}));
    EXPECT_EQ(up[static_cast<size_t>(5 * 8 + 3)], fc[static_cast<size_t>(3 * 32 + 5)]);
    EXPECT_EQ(m.tensor("blk.0.ffn_down.weight").shape, (std::vector<int64_t>{8, 32}));
    EXPECT_EQ(m.tensor("position_embd.weight").shape, (std::vector<int64_t>{16, 8}));
    EXPECT_EQ(m.source_names.at("blk.1.attn_k.weight"), prefix + "h.1.attn.c_attn.weight");
    EXPECT_EQ(m.tensor("output_norm.bias").to_f32(), src("ln_f.bias").to_f32());
  }
}

TEST(LoadModel, GGUFGPT2FusedQKVIsSlicedWithoutCopy) {
  test::TempDir tmp;
  const ModelConfig c = config_from_hf_json(nlohmann::json::parse(kGPT2Config), "config.json");
  const Model ref = test::synthetic_model(c);
  GGUFMetadata md;
  config_to_gguf_metadata(c, md);
  std::vector<GGUFWriteTensor> ws;
  std::vector<std::vector<float>> keep;
  for (const auto& [name, t] : ref.tensors) {
    if (name == "output.weight") continue;  // tied
    if (name.find("attn_k") != std::string::npos || name.find("attn_v") != std::string::npos) continue;
    if (name.find("attn_q.") != std::string::npos) {
      const std::string layer = name.substr(0, name.find("attn_q."));
      const std::string suffix = name.substr(name.find("attn_q.") + 7);  // weight / bias
      std::vector<float> fused;
      for (const char* p : {"attn_q.", "attn_k.", "attn_v."}) {
        const auto v = ref.tensor(layer + p + suffix).to_f32();
        fused.insert(fused.end(), v.begin(), v.end());
      }
      keep.push_back(std::move(fused));
      std::vector<int64_t> shape = t.shape;
      shape[0] *= 3;
      ws.push_back({layer + "attn_qkv." + suffix, DType::F32, shape,
                    reinterpret_cast<const uint8_t*>(keep.back().data()), keep.back().size() * 4});
      continue;
    }
    ws.push_back({name, t.dtype, t.shape, t.data, t.nbytes});
  }
  write_gguf(tmp.file("g.gguf"), md, ws);
  const Model g = load_model(tmp.file("g.gguf"));
  expect_same_config(ref.config, g.config);
  expect_same_tensors(ref, g);
  const Tensor& q = g.tensor("blk.0.attn_q.weight");
  const Tensor& k = g.tensor("blk.0.attn_k.weight");
  EXPECT_EQ(k.data, q.data + q.nbytes);  // slices of one mapping
  EXPECT_EQ(g.source_names.at("blk.0.attn_v.bias"), "blk.0.attn_qkv.bias");
  EXPECT_EQ(g.tensors.count("blk.0.attn_qkv.weight"), 0u);
}

// Hand-written HF names (independent of the architecture table) for Qwen3 and Qwen2.
std::vector<std::pair<std::string, std::vector<int64_t>>> llama_style_tensors(int layers, int64_t h, int64_t q, int64_t kv,
                                                                              int64_t ffn, int64_t vocab, int64_t hd,
                                                                              bool bias, bool qk_norm, bool lm_head) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> v = {{"model.embed_tokens.weight", {vocab, h}},
                                                                 {"model.norm.weight", {h}}};
  if (lm_head) v.push_back({"lm_head.weight", {vocab, h}});
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    v.push_back({p + "input_layernorm.weight", {h}});
    v.push_back({p + "self_attn.q_proj.weight", {q, h}});
    v.push_back({p + "self_attn.k_proj.weight", {kv, h}});
    v.push_back({p + "self_attn.v_proj.weight", {kv, h}});
    if (bias) {
      v.push_back({p + "self_attn.q_proj.bias", {q}});
      v.push_back({p + "self_attn.k_proj.bias", {kv}});
      v.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    if (qk_norm) {
      v.push_back({p + "self_attn.q_norm.weight", {hd}});
      v.push_back({p + "self_attn.k_norm.weight", {hd}});
    }
    v.push_back({p + "self_attn.o_proj.weight", {h, q}});
    v.push_back({p + "post_attention_layernorm.weight", {h}});
    v.push_back({p + "mlp.gate_proj.weight", {ffn, h}});
    v.push_back({p + "mlp.up_proj.weight", {ffn, h}});
    v.push_back({p + "mlp.down_proj.weight", {h, ffn}});
  }
  return v;
}

TEST(LoadModel, HFQwen3AndQwen2) {
  {
    test::TempDir tmp;
    const auto written = test::write_hf_dir(
        tmp.path(),
        R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"vocab_size":30,"max_position_embeddings":64,
        "rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":true})",
        llama_style_tensors(2, 16, 32, 16, 24, 30, 8, false, true, false));
    const Model m = load_model(tmp.path().string());
    EXPECT_EQ(m.config.architecture, "qwen3");
    EXPECT_EQ(m.tensor("blk.1.attn_q.weight").shape, (std::vector<int64_t>{32, 16}));
    EXPECT_EQ(m.tensor("blk.1.attn_k_norm.weight").shape, (std::vector<int64_t>{8}));
    EXPECT_EQ(m.tensors.size(), written.size() + 1);  // + aliased output
    for (const auto& t : written) {
      if (t.name == "model.layers.1.self_attn.q_norm.weight") {
        EXPECT_TRUE(test::same_bits(t.to_f32(), m.tensor("blk.1.attn_q_norm.weight").to_f32()));
      }
    }
    EXPECT_EQ(m.parameter_count(), [&] {
      int64_t n = 0;
      for (const auto& t : written) n += t.numel();
      return n;
    }());
  }
  {
    test::TempDir tmp;
    test::write_hf_dir(
        tmp.path(),
        R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":16,"intermediate_size":24,"num_hidden_layers":1,
        "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":30,"max_position_embeddings":64,
        "rms_norm_eps":1e-6})",
        llama_style_tensors(1, 16, 16, 8, 24, 30, 4, true, false, true));
    const Model m = load_model(tmp.path().string());
    EXPECT_EQ(m.config.architecture, "qwen2");
    EXPECT_FALSE(m.config.tied_embeddings);
    EXPECT_FALSE(m.is_alias("output.weight"));
    EXPECT_EQ(m.tensor("blk.0.attn_k.bias").shape, (std::vector<int64_t>{8}));
  }
}

TEST(LoadModel, Errors) {
  test::TempDir tmp;
  const auto dir = tmp.path() / "m";
  std::filesystem::create_directories(dir);
  EXPECT_EQ(error_of([&] { load_model(dir.string()); }),
            dir.string() + ": no config.json (an HF model directory needs config.json and model.safetensors)");

  const std::string cfg = R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":16,"intermediate_size":24,
    "num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":30,
    "max_position_embeddings":64,"rms_norm_eps":1e-6})";
  auto tensors = llama_style_tensors(4, 16, 16, 8, 24, 30, 4, true, false, true);
  auto without = tensors;
  std::erase_if(without, [](const auto& p) { return p.first == "model.layers.3.mlp.up_proj.weight"; });
  test::write_hf_dir(dir, cfg, without);
  EXPECT_EQ(error_of([&] { load_model(dir.string()); }),
            dir.string() + ": missing tensor 'model.layers.3.mlp.up_proj.weight'");

  auto wrong = tensors;
  for (auto& [n, s] : wrong)
    if (n == "model.layers.2.self_attn.k_proj.weight") s = {16, 16};
  test::write_hf_dir(dir, cfg, wrong);
  EXPECT_EQ(error_of([&] { load_model(dir.string()); }),
            dir.string() + ": tensor 'model.layers.2.self_attn.k_proj.weight' has shape [16, 16], config.json implies [8, 16]");

  test::write_hf_dir(dir, R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":16})", tensors);
  EXPECT_EQ(error_of([&] { load_model(dir.string()); }), (dir / "config.json").string() + ": missing key 'num_hidden_layers'");
  test::write_hf_dir(dir, R"({"architectures":["BertModel"]})", tensors);
  EXPECT_NE(error_of([&] { load_model(dir.string()); }).find("unsupported architecture 'BertModel' (supported: LlamaForCausalLM"),
            std::string::npos);

  // No weights at all.
  std::filesystem::remove(dir / "model.safetensors");
  test::write_bytes(dir / "config.json", cfg);
  EXPECT_EQ(error_of([&] { load_model(dir.string()); }), dir.string() + ": no model.safetensors or model.safetensors.index.json");

  // A GGUF whose tensor contradicts its metadata; a file that is neither.
  ModelConfig c = config_from_hf_json(nlohmann::json::parse(cfg), "config.json");
  c.n_layers = 1;
  const Model ref = test::synthetic_model(c);
  GGUFMetadata md;
  config_to_gguf_metadata(c, md);
  std::vector<GGUFWriteTensor> ws;
  const Tensor bad = Tensor::from_f32("blk.0.ffn_up.weight", {23, 16}, std::vector<float>(23 * 16));
  for (const auto& [name, t] : ref.tensors)
    ws.push_back(name == "blk.0.ffn_up.weight" ? GGUFWriteTensor{name, bad.dtype, bad.shape, bad.data, bad.nbytes}
                                               : GGUFWriteTensor{name, t.dtype, t.shape, t.data, t.nbytes});
  write_gguf(tmp.file("bad.gguf"), md, ws);
  EXPECT_EQ(error_of([&] { load_model(tmp.file("bad.gguf")); }),
            tmp.file("bad.gguf") + ": tensor 'blk.0.ffn_up.weight' has shape [23, 16], the metadata implies [24, 16]");
  ws.erase(ws.begin());
  write_gguf(tmp.file("missing.gguf"), md, ws);
  EXPECT_NE(error_of([&] { load_model(tmp.file("missing.gguf")); }).find(": missing tensor '"), std::string::npos);
  test::write_bytes(tmp.file("x.bin"), "hello world, not a model");
  EXPECT_NE(error_of([&] { load_model(tmp.file("x.bin")); }).find("not a GGUF file"), std::string::npos);
  EXPECT_NE(error_of([&] { load_model(tmp.file("nonexistent.gguf")); }).find("cannot open"), std::string::npos);
}

TEST(LoadModel, WarnsAboutUnusedHFTensors) {
  test::TempDir tmp;
  auto tensors = llama_style_tensors(1, 16, 16, 8, 24, 30, 4, true, false, true);
  tensors.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", {2}});  // a known buffer: silent
  tensors.push_back({"model.layers.0.mlp.extra.weight", {2}});
  test::write_hf_dir(tmp.path(), R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":16,"intermediate_size":24,
    "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":30,
    "max_position_embeddings":64,"rms_norm_eps":1e-6})", tensors);
  testing::internal::CaptureStderr();
  const Model m = load_model(tmp.path().string());
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("ignoring 1 tensor(s)"), std::string::npos) << err;
  EXPECT_NE(err.find("model.layers.0.mlp.extra.weight"), std::string::npos) << err;
  EXPECT_EQ(err.find("inv_freq"), std::string::npos) << err;
}

TEST(CheckFinite, FindsNaNAndInfInFloatTensors) {
  Model m;
  m.path = "mem";
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  m.tensors["clean"] = Tensor::from_f32("clean", {2}, {1.0f, -3.0f});
  m.tensors["f32_nan"] = Tensor::from_f32("f32_nan", {3}, {1.0f, nan, 2.0f});
  m.tensors["f32_inf"] = Tensor::from_f32("f32_inf", {1}, {-inf});
  std::vector<uint8_t> h(4);
  const uint16_t hv[2] = {f32_to_fp16(1.0f), 0x7C00};  // +Inf
  std::memcpy(h.data(), hv, 4);
  m.tensors["f16_inf"] = Tensor::from_bytes("f16_inf", DType::F16, {2}, h);
  const uint16_t bv[2] = {f32_to_bf16(2.0f), f32_to_bf16(nan)};
  std::memcpy(h.data(), bv, 4);
  m.tensors["bf16_nan"] = Tensor::from_bytes("bf16_nan", DType::BF16, {2}, h);
  const uint16_t big[2] = {f32_to_fp16(65504.0f), f32_to_bf16(3e38f)};  // largest finite values are fine
  std::memcpy(h.data(), big, 4);
  m.tensors["f16_max"] = Tensor::from_bytes("f16_max", DType::F16, {1}, std::vector<uint8_t>(h.begin(), h.begin() + 2));
  testing::internal::CaptureStderr();
  const auto bad = check_finite(m);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(bad, (std::vector<std::string>{"bf16_nan", "f16_inf", "f32_inf", "f32_nan"}));
  EXPECT_NE(err.find("mem: tensor 'f32_nan' contains NaN or Inf values"), std::string::npos) << err;
  EXPECT_EQ(err.find("clean"), std::string::npos);
}

TEST(CheckFinite, LoadModelWarnsNamingTheTensor) {
  test::TempDir tmp;
  const auto tensors = llama_style_tensors(1, 16, 16, 8, 24, 30, 4, true, false, true);
  auto written = test::write_hf_dir(tmp.path(), R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":16,
    "intermediate_size":24,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":30,
    "max_position_embeddings":64,"rms_norm_eps":1e-6})", tensors);
  for (auto& t : written)
    if (t.name == "model.layers.0.mlp.down_proj.weight") {
      auto v = t.to_f32();
      v[5] = std::numeric_limits<float>::quiet_NaN();
      t = Tensor::from_f32(t.name, t.shape, v);
    }
  write_safetensors((tmp.path() / "model.safetensors").string(), written);
  testing::internal::CaptureStderr();
  load_model(tmp.path().string());
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("tensor 'blk.0.ffn_down.weight' contains NaN or Inf"), std::string::npos) << err;
  // Never: no scan, no warning.
  LoadOptions opt;
  opt.check_finite = LoadOptions::FiniteCheck::Never;
  testing::internal::CaptureStderr();
  load_model(tmp.path().string(), opt);
  err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("NaN"), std::string::npos) << err;
  // Auto skips models over the size limit.
  opt.check_finite = LoadOptions::FiniteCheck::Auto;
  opt.finite_check_max_bytes = 100;
  testing::internal::CaptureStderr();
  load_model(tmp.path().string(), opt);
  err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("NaN"), std::string::npos) << err;
}

TEST(LoadModel, HFMetadataCarriesTokenizerSettings) {
  QEVAL_REQUIRE_SHARED("models/stories260K-hf/tokenizer.model");
  const Model h = load_model(test::shared_path("models/stories260K-hf").string());
  const Model g = load_model(test::shared_path("models/stories260K-gguf/stories260K-F32.gguf").string());
  EXPECT_EQ(h.metadata.get_string("general.architecture"), "llama");
  EXPECT_EQ(h.metadata.get_int("llama.block_count"), 5);
  EXPECT_EQ(h.metadata.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(h.metadata.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(h.metadata.get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(h.metadata.get_int("tokenizer.ggml.unknown_token_id"), 0);
  EXPECT_TRUE(h.metadata.get_bool("tokenizer.ggml.add_bos_token", false));
  // tokenizer.model (SentencePiece) and the GGUF (from tok512.bin) hold the same vocabulary.
  EXPECT_EQ(h.metadata.get_string_array("tokenizer.ggml.tokens"), g.metadata.get_string_array("tokenizer.ggml.tokens"));
  EXPECT_EQ(h.metadata.get_float_array("tokenizer.ggml.scores"), g.metadata.get_float_array("tokenizer.ggml.scores"));
  EXPECT_EQ(h.metadata.get_int_array("tokenizer.ggml.token_type"), g.metadata.get_int_array("tokenizer.ggml.token_type"));
}

TEST(LoadModel, HFBpeTokenizerJson) {
  test::TempDir tmp;
  test::write_hf_dir(tmp.path(), kGPT2Config, gpt2_hf_tensors(""));
  test::write_bytes(tmp.path() / "tokenizer.json",
                    R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b",["ab","b"]]},)"
                    R"("added_tokens":[{"id":3,"content":"<|endoftext|>","special":true}]})");
  test::write_bytes(tmp.path() / "generation_config.json", R"({"bos_token_id":3,"eos_token_id":[3,1]})");
  const Model m = load_model(tmp.path().string());
  const auto toks = m.metadata.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(toks.size(), 20u);  // padded to vocab_size
  EXPECT_EQ(toks[2], "ab");
  EXPECT_EQ(toks[3], "<|endoftext|>");
  EXPECT_EQ(toks[4], "[PAD4]");
  EXPECT_EQ(m.metadata.get_int_array("tokenizer.ggml.token_type")[3], 3);
  EXPECT_EQ(m.metadata.get_string_array("tokenizer.ggml.merges"), (std::vector<std::string>{"a b", "ab b"}));
  EXPECT_EQ(m.metadata.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(m.metadata.get_int("tokenizer.ggml.eos_token_id"), 3);
}

}  // namespace
}  // namespace qeval
