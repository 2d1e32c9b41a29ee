#include <gtest/gtest.h>

#include <set>

#include "io/test_model_support.h"
#include "qeval/io/architectures.h"
#include "qeval/io/hf_config.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval {
namespace {

using json = nlohmann::json;
using test::error_of;

ModelConfig parse(const std::string& text) { return config_from_hf_json(json::parse(text), "config.json"); }
std::string parse_error(const std::string& text) {
  return error_of([&] { parse(text); });
}

const char* kLlama = R"({"architectures":["LlamaForCausalLM"],"hidden_size":256,"intermediate_size":688,
  "num_hidden_layers":3,"num_attention_heads":8,"vocab_size":1000,"max_position_embeddings":2048,
  "rms_norm_eps":1e-6})";

TEST(HFConfig, SharedStories260K) {
  QEVAL_REQUIRE_SHARED("models/stories260K-hf/config.json");
  const ModelConfig c = load_hf_config(test::shared_path("models/stories260K-hf/config.json").string());
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.ffn_size, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.context_length, 512);
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.rope_theta, 10000.0f);
  EXPECT_EQ(c.rope_dim, 8);
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::None);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.norm, NormKind::RMSNorm);
  EXPECT_EQ(c.activation, ActivationKind::SiLU);
  EXPECT_TRUE(c.gated_ffn);
}

TEST(HFConfig, LlamaDefaults) {
  const ModelConfig c = parse(kLlama);
  EXPECT_EQ(c.n_kv_heads, 8);      // defaults to heads
  EXPECT_EQ(c.head_dim, 32);       // hidden / heads
  EXPECT_EQ(c.rope_dim, 32);
  EXPECT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FALSE(c.tied_embeddings);  // LlamaConfig default
  EXPECT_EQ(c.norm_eps, 1e-6f);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.q_dim(), 256);
  // attention_bias / mlp_bias switch on the biases.
  json j = json::parse(kLlama);
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  const ModelConfig b = config_from_hf_json(j, "config.json");
  EXPECT_TRUE(b.qkv_bias);
  EXPECT_TRUE(b.attn_out_bias);
  EXPECT_TRUE(b.ffn_bias);
}

TEST(HFConfig, RopeScaling) {
  json j = json::parse(kLlama);
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"factor", 32.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}, {"rope_type", "llama3"}};
  ModelConfig c = config_from_hf_json(j, "config.json");
  EXPECT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::Llama3);
  EXPECT_EQ(c.rope_scaling.factor, 32.0f);
  EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_context, 8192);

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  c = config_from_hf_json(j, "config.json");
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::Linear);
  EXPECT_EQ(c.rope_scaling.factor, 2.0f);

  j["rope_scaling"] = nullptr;
  EXPECT_EQ(config_from_hf_json(j, "config.json").rope_scaling.kind, RopeScalingKind::None);

  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_EQ(error_of([&] { config_from_hf_json(j, "config.json"); }),
            "config.json: unsupported rope_scaling type 'yarn' (supported: linear, llama3)");
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  EXPECT_EQ(error_of([&] { config_from_hf_json(j, "config.json"); }), "config.json: missing key 'low_freq_factor'");
}

TEST(HFConfig, Mistral) {
  json j = json::parse(kLlama);
  j["architectures"] = {"MistralForCausalLM"};
  j["num_key_value_heads"] = 2;
  j["sliding_window"] = 4096;
  ModelConfig c = config_from_hf_json(j, "config.json");
  EXPECT_EQ(c.architecture, "mistral");
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.kv_dim(), 64);
  EXPECT_EQ(c.sliding_window, 4096);
  j["sliding_window"] = nullptr;
  EXPECT_EQ(config_from_hf_json(j, "config.json").sliding_window, 0);
}

TEST(HFConfig, Qwen2HasQkvBiasAndGatedSlidingWindow) {
  json j = json::parse(kLlama);
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["sliding_window"] = 131072;
  j["use_sliding_window"] = false;
  j["tie_word_embeddings"] = true;
  ModelConfig c = config_from_hf_json(j, "config.json");
  EXPECT_EQ(c.architecture, "qwen2");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.attn_out_bias);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.sliding_window, 0);
  j["use_sliding_window"] = true;
  j["sliding_window"] = 4096;
  EXPECT_EQ(config_from_hf_json(j, "config.json").sliding_window, 4096);
}

TEST(HFConfig, Qwen3ExplicitHeadDimAndQkNorm) {
  const ModelConfig c = parse(R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":1024,"intermediate_size":3072,
    "num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"vocab_size":151936,
    "max_position_embeddings":40960,"rms_norm_eps":1e-6,"rope_theta":1000000,"rope_scaling":null,
    "tie_word_embeddings":true,"hidden_act":"silu","attention_bias":false,"sliding_window":null,"use_sliding_window":false})");
  EXPECT_EQ(c.architecture, "qwen3");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.q_dim(), 2048);  // != hidden
  EXPECT_EQ(c.kv_dim(), 1024);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.rope_theta, 1e6f);  // an integer value is a number too
  EXPECT_EQ(c.rope_dim, 128);
  EXPECT_TRUE(c.tied_embeddings);
}

TEST(HFConfig, GPT2) {
  const ModelConfig c = parse(R"({"architectures":["GPT2LMHeadModel"],"model_type":"gpt2","n_embd":768,"n_layer":12,
    "n_head":12,"n_positions":1024,"n_ctx":1024,"n_inner":null,"layer_norm_epsilon":1e-5,"vocab_size":50257,
    "activation_function":"gelu_new"})");
  EXPECT_EQ(c.architecture, "gpt2");
  EXPECT_EQ(c.hidden_size, 768);
  EXPECT_EQ(c.n_layers, 12);
  EXPECT_EQ(c.n_heads, 12);
  EXPECT_EQ(c.n_kv_heads, 12);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.ffn_size, 3072);  // n_inner null -> 4 * n_embd
  EXPECT_EQ(c.context_length, 1024);
  EXPECT_EQ(c.norm, NormKind::LayerNorm);
  EXPECT_EQ(c.position, PositionKind::Learned);
  EXPECT_EQ(c.activation, ActivationKind::GELUTanh);
  EXPECT_FALSE(c.gated_ffn);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.attn_out_bias);
  EXPECT_TRUE(c.ffn_bias);
  EXPECT_TRUE(c.tied_embeddings);  // GPT-2 default
  EXPECT_EQ(c.rope_dim, 0);
}

TEST(HFConfig, ErrorsNameFileAndKey) {
  EXPECT_EQ(parse_error(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64})"),
            "config.json: missing key 'num_hidden_layers'");
  json j = json::parse(kLlama);
  j["num_hidden_layers"] = "3";
  EXPECT_EQ(error_of([&] { config_from_hf_json(j, "config.json"); }),
            "config.json: 'num_hidden_layers' should be an integer, is string");
  j = json::parse(kLlama);
  j["hidden_size"] = 64.0;
  EXPECT_EQ(error_of([&] { config_from_hf_json(j, "config.json"); }),
            "config.json: 'hidden_size' should be an integer, is number");
  j = json::parse(kLlama);
  j["num_attention_heads"] = 0;
  EXPECT_EQ(error_of([&] { config_from_hf_json(j, "config.json"); }),
            "config.json: 'num_attention_heads' should be positive, is 0");
  j = json::parse(kLlama);
  j["rms_norm_eps"] = "small";
  EXPECT_EQ(error_of([&] { config_from_hf_json(j, "config.json"); }),
            "config.json: 'rms_norm_eps' should be a number, is string");
  j = json::parse(kLlama);
  j["tie_word_embeddings"] = 1;
  EXPECT_EQ(error_of([&] { config_from_hf_json(j, "config.json"); }),
            "config.json: 'tie_word_embeddings' should be a boolean, is number");
  j = json::parse(kLlama);
  j["num_key_value_heads"] = 3;
  EXPECT_NE(error_of([&] { config_from_hf_json(j, "config.json"); }).find("is not a multiple of"), std::string::npos);
  j = json::parse(kLlama);
  j["hidden_act"] = "gelu";
  EXPECT_EQ(error_of([&] { config_from_hf_json(j, "config.json"); }),
            "config.json: unsupported hidden_act 'gelu' (supported: silu, swish)");

  const std::string unknown = parse_error(R"({"architectures":["FalconForCausalLM"]})");
  EXPECT_EQ(unknown, "config.json: unsupported architecture 'FalconForCausalLM' (supported: LlamaForCausalLM, "
                     "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, GPT2LMHeadModel)");
  EXPECT_EQ(parse_error(R"({"hidden_size":1})"), "config.json: missing key 'architectures'");
  EXPECT_EQ(parse_error(R"({"architectures":"LlamaForCausalLM"})"),
            "config.json: 'architectures' should be a non-empty array of strings, is string");
  EXPECT_EQ(parse_error("[1]"), "config.json: should hold a JSON object, holds array");
  // model_type is the fallback when "architectures" is absent.
  json m = json::parse(kLlama);
  m.erase("architectures");
  m["model_type"] = "qwen2";
  EXPECT_EQ(config_from_hf_json(m, "config.json").architecture, "qwen2");
}

TEST(HFConfig, ReadJsonFileErrors) {
  test::TempDir tmp;
  EXPECT_NE(error_of([&] { read_json_file(tmp.file("none.json")); }).find("none.json: cannot open"), std::string::npos);
  test::write_bytes(tmp.file("bad.json"), "{\"a\":");
  EXPECT_NE(error_of([&] { read_json_file(tmp.file("bad.json")); }).find("bad.json: not valid JSON"), std::string::npos);
}

// config -> config.json -> config gives the same config, for every architecture.
TEST(HFConfig, JsonRoundTripEveryArchitecture) {
  std::vector<std::string> texts = {
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,"num_hidden_layers":2,
        "num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,"max_position_embeddings":512,
        "rms_norm_eps":1e-5,"rope_theta":500000.0,"attention_bias":true,"tie_word_embeddings":true,
        "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
        "original_max_position_embeddings":8192}})",
      R"({"architectures":["MistralForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":300,"max_position_embeddings":1024,
        "rms_norm_eps":1e-5,"sliding_window":256,"rope_scaling":{"type":"linear","factor":2.0}})",
      R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":300,"max_position_embeddings":1024,
        "rms_norm_eps":1e-6,"rope_theta":1000000.0,"use_sliding_window":true,"sliding_window":64})",
      R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"head_dim":32,"vocab_size":300,
        "max_position_embeddings":1024,"rms_norm_eps":1e-6,"tie_word_embeddings":true})",
      R"({"architectures":["GPT2LMHeadModel"],"n_embd":64,"n_layer":2,"n_head":4,"n_positions":128,
        "layer_norm_epsilon":1e-5,"vocab_size":300,"tie_word_embeddings":false})",
  };
  for (const auto& t : texts) {
    const ModelConfig a = parse(t);
    const auto out = config_to_hf_json(a);
    const ModelConfig b = config_from_hf_json(json::parse(out.dump()), "config.json");
    SCOPED_TRACE(out.dump());
    test::expect_same_config(a, b);
  }
  // Floats are written as their shortest decimal.
  EXPECT_NE(config_to_hf_json(parse(texts[0])).dump().find("\"rms_norm_eps\":1e-05"), std::string::npos);
}

// GGUF metadata: the shared file, and config -> GGUF keys -> config for every architecture.
TEST(GGUFConfig, SharedStories260K) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  const GGUFFile f = GGUFFile::open(test::shared_path("models/stories260K-gguf/stories260K-F32.gguf").string());
  const ModelConfig c = config_from_gguf(f.metadata, f.tensor_infos, f.path());
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.rope_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);  // tokenizer.ggml.tokens
  EXPECT_EQ(c.context_length, 512);
  EXPECT_EQ(c.rope_theta, 10000.0f);  // key absent: default
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FALSE(c.tied_embeddings);  // the file has output.weight
}

std::vector<GGUFTensorInfo> infos_for(const ModelConfig& c) {
  std::vector<GGUFTensorInfo> v;
  for (const auto& e : expected_tensors(c)) {
    if (e.role == TensorRole::Output && c.tied_embeddings) continue;
    GGUFTensorInfo ti;
    ti.name = e.name;
    ti.ne.assign(e.shape.rbegin(), e.shape.rend());
    v.push_back(ti);
  }
  return v;
}

TEST(GGUFConfig, RoundTripEveryArchitecture) {
  for (const char* t : {
           R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,"num_hidden_layers":2,
             "num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,"max_position_embeddings":512,
             "rms_norm_eps":1e-5,"rope_theta":500000.0,"rope_scaling":{"type":"linear","factor":4.0}})",
           R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
             "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":300,"max_position_embeddings":1024,
             "rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":true})",
           R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
             "num_attention_heads":4,"num_key_value_heads":2,"head_dim":32,"vocab_size":300,
             "max_position_embeddings":1024,"rms_norm_eps":1e-6})",
           R"({"architectures":["GPT2LMHeadModel"],"n_embd":64,"n_layer":2,"n_head":4,"n_positions":128,
             "layer_norm_epsilon":1e-5,"vocab_size":300})",
       }) {
    const ModelConfig a = parse(t);
    GGUFMetadata md;
    config_to_gguf_metadata(a, md);
    const ModelConfig b = config_from_gguf(md, infos_for(a), "x.gguf");
    SCOPED_TRACE(t);
    test::expect_same_config(a, b);
  }
}

TEST(GGUFConfig, KeysDefaultsAndErrors) {
  GGUFMetadata md;
  md.set_source("m.gguf");
  md.set("general.architecture", GGUFValue::str("qwen3"));
  md.set("qwen3.embedding_length", GGUFValue::u32(64));
  md.set("qwen3.block_count", GGUFValue::u32(1));
  md.set("qwen3.feed_forward_length", GGUFValue::u32(96));
  md.set("qwen3.attention.head_count", GGUFValue::u32(4));
  md.set("qwen3.context_length", GGUFValue::u32(256));
  md.set("qwen3.attention.layer_norm_rms_epsilon", GGUFValue::f32(1e-6f));
  md.set("qwen3.attention.key_length", GGUFValue::u32(32));
  md.set("qwen3.rope.freq_base", GGUFValue::f32(1e6f));
  md.set("qwen3.attention.sliding_window", GGUFValue::u32(128));
  std::vector<GGUFTensorInfo> infos(2);
  infos[0].name = "token_embd.weight";
  infos[0].ne = {64, 77};  // vocab from the embedding when there is no tokenizer
  infos[1].name = "blk.0.attn_q_norm.weight";
  infos[1].ne = {32};
  ModelConfig c = config_from_gguf(md, infos, "m.gguf");
  EXPECT_EQ(c.vocab_size, 77);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.rope_dim, 32);
  EXPECT_EQ(c.rope_theta, 1e6f);
  EXPECT_EQ(c.sliding_window, 128);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.tied_embeddings);

  md.set("qwen3.rope.scaling.type", GGUFValue::str("yarn"));
  EXPECT_EQ(error_of([&] { config_from_gguf(md, infos, "m.gguf"); }),
            "m.gguf: unsupported rope.scaling.type 'yarn' (supported: none, linear)");
  md.set("qwen3.rope.scaling.type", GGUFValue::str("linear"));
  md.set("qwen3.rope.scaling.factor", GGUFValue::f32(2.5f));
  c = config_from_gguf(md, infos, "m.gguf");
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::Linear);
  EXPECT_EQ(c.rope_scaling.factor, 2.5f);

  md.erase("qwen3.block_count");
  EXPECT_EQ(error_of([&] { config_from_gguf(md, infos, "m.gguf"); }), "m.gguf: missing metadata key 'qwen3.block_count'");
  md.set("qwen3.block_count", GGUFValue::str("one"));
  EXPECT_EQ(error_of([&] { config_from_gguf(md, infos, "m.gguf"); }),
            "m.gguf: metadata 'qwen3.block_count' should be an integer, is string");
  md.set("general.architecture", GGUFValue::str("mamba"));
  EXPECT_EQ(error_of([&] { config_from_gguf(md, infos, "m.gguf"); }),
            "m.gguf: unsupported GGUF architecture 'mamba' (supported: llama, qwen2, qwen3, gpt2)");
}

TEST(Architectures, TableIsConsistent) {
  for (size_t i = 0; i < all_roles().size(); ++i)
    EXPECT_EQ(static_cast<size_t>(all_roles()[i].role), i) << all_roles()[i].name;
  EXPECT_EQ(canonical_name(TensorRole::AttnQ, 3), "blk.3.attn_q.weight");
  EXPECT_EQ(canonical_name(TensorRole::TokenEmbd), "token_embd.weight");
  EXPECT_EQ(hf_tensor_name("model.layers.{}.mlp.up_proj.weight", 12), "model.layers.12.mlp.up_proj.weight");
  for (const auto& a : architectures()) {
    SCOPED_TRACE(std::string(a.name));
    EXPECT_EQ(find_architecture(a.name), &a);
    EXPECT_FALSE(a.hf_classes.empty());
    EXPECT_EQ(find_architecture_by_hf_class(a.hf_classes.front()), &a);
    ASSERT_NE(find_architecture_by_gguf(a.gguf_arch), nullptr);
    // Every role a model of this architecture can have (all options on) has an HF rule, once.
    ModelConfig c = default_config(a);
    c.vocab_size = c.hidden_size = c.n_heads = c.n_kv_heads = c.head_dim = c.ffn_size = c.context_length = 2;
    c.n_layers = 1;
    c.qkv_bias = c.attn_out_bias = c.ffn_bias = true;
    c.qk_norm = a.qk_norm;
    std::multiset<TensorRole> covered;
    for (const auto& r : a.hf_tensors)
      for (TensorRole role : r.roles) covered.insert(role);
    for (const auto& e : expected_tensors(c)) EXPECT_EQ(covered.count(e.role), 1u) << e.name;
  }
  EXPECT_EQ(find_architecture_by_gguf("llama")->name, "llama");  // mistral is read as llama
  EXPECT_EQ(find_architecture("mistral")->gguf_arch, "llama");
  EXPECT_TRUE(find_architecture("llama")->gguf_interleaved_rope);
  EXPECT_TRUE(find_architecture("mistral")->gguf_interleaved_rope);
  EXPECT_FALSE(find_architecture("qwen2")->gguf_interleaved_rope);
  EXPECT_FALSE(find_architecture("qwen3")->gguf_interleaved_rope);
}

}  // namespace
}  // namespace qeval
