#pragma once
// Helpers shared by the io model/safetensors/export tests: synthetic checkpoints and exact
// tensor comparison.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "qeval/io/architectures.h"
#include "qeval/io/model.h"
#include "qeval/io/safetensors.h"
#include "test_support.h"

namespace qeval::test {

// A safetensors file from a header text and data bytes (for malformed-file tests).
inline std::string safetensors_bytes(const std::string& header, const std::string& data = {}) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

inline std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.5f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// Writes config.json (text as given) and model.safetensors holding random F32 tensors of the
// given names and shapes. Returns the tensors written (for value checks).
inline std::vector<Tensor> write_hf_dir(const std::filesystem::path& dir, const std::string& config_json,
                                        const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors,
                                        uint32_t seed = 1) {
  std::filesystem::create_directories(dir);
  write_bytes(dir / "config.json", config_json);
  std::vector<Tensor> ts;
  for (const auto& [name, shape] : tensors)
    ts.push_back(Tensor::from_f32(name, shape, random_values(static_cast<size_t>(numel_of(shape)), seed++)));
  write_safetensors((dir / "model.safetensors").string(), ts);
  return ts;
}

// A model of the given configuration with random F32 weights for every expected tensor.
inline Model synthetic_model(const ModelConfig& c, uint32_t seed = 7) {
  Model m;
  m.path = "<synthetic>";
  m.config = c;
  for (const auto& e : expected_tensors(c)) {
    if (e.role == TensorRole::Output && c.tied_embeddings) continue;
    m.tensors[e.name] = Tensor::from_f32(e.name, e.shape, random_values(static_cast<size_t>(numel_of(e.shape)), seed++));
  }
  if (c.tied_embeddings) {
    Tensor o = m.tensors.at("token_embd.weight");
    o.name = "output.weight";
    m.tensors["output.weight"] = o;
  }
  m.metadata.set("general.name", GGUFValue::str("synthetic"));
  return m;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Same canonical tensor names, shapes, and bit-identical to_f32() for every tensor.
inline void expect_same_tensors(const Model& a, const Model& b) {
  std::vector<std::string> na, nb;
  for (const auto& [n, t] : a.tensors) na.push_back(n);
  for (const auto& [n, t] : b.tensors) nb.push_back(n);
  ASSERT_EQ(na, nb);
  for (const auto& [n, t] : a.tensors) {
    const Tensor& u = b.tensor(n);
    EXPECT_EQ(t.shape, u.shape) << n;
    if (t.shape != u.shape) continue;
    EXPECT_TRUE(same_bits(t.to_f32(), u.to_f32())) << "tensor " << n << " differs";
  }
}

// Every ModelConfig field, tied_embeddings optional.
inline void expect_same_config(const ModelConfig& a, const ModelConfig& b, bool compare_tied = true) {
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.ffn_size, b.ffn_size);
  EXPECT_EQ(a.context_length, b.context_length);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.norm, b.norm);
  EXPECT_EQ(a.position, b.position);
  EXPECT_EQ(a.activation, b.activation);
  EXPECT_EQ(a.gated_ffn, b.gated_ffn);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.attn_out_bias, b.attn_out_bias);
  EXPECT_EQ(a.ffn_bias, b.ffn_bias);
  if (compare_tied) {
    EXPECT_EQ(a.tied_embeddings, b.tied_embeddings);
  }
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_dim, b.rope_dim);
  EXPECT_EQ(a.rope_scaling.kind, b.rope_scaling.kind);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
  EXPECT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
  EXPECT_EQ(a.rope_scaling.original_context, b.rope_scaling.original_context);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
}

// The message of the qeval::Error `f` throws ("" when it does not throw).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace qeval::test
