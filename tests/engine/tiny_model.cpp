#include "tiny_model.h"

#include <vector>

namespace qeval::test {

uint64_t splitmix64(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ull;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t tensor_stream(uint64_t seed, const std::string& name) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 0x100000001B3ull;
  }
  return h ^ seed;
}

namespace {

std::vector<float> values(uint64_t seed, const std::string& name, int64_t n, float scale, float offset) {
  uint64_t st = tensor_stream(seed, name);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) {
    const int64_t k = static_cast<int64_t>(splitmix64(st) % 513) - 256;
    x = offset + static_cast<float>(k) / 256.0f * scale;
  }
  return v;
}

void add(Model& m, uint64_t seed, const std::string& name, std::vector<int64_t> shape, float scale, float offset = 0.0f) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  m.tensors[name] = Tensor::from_f32(name, shape, values(seed, name, n, scale, offset));
}

}  // namespace

Model make_tiny_model(const ModelConfig& c, uint64_t seed) {
  Model m;
  m.path = "tiny-" + c.architecture;
  m.config = c;
  const int64_t H = c.hidden_size, V = c.vocab_size, F = c.ffn_size, qd = c.q_dim(), kd = c.kv_dim();
  const bool ln = c.norm == NormKind::LayerNorm;
  add(m, seed, "token_embd.weight", {V, H}, 0.5f);
  if (c.position == PositionKind::Learned) add(m, seed, "position_embd.weight", {c.context_length, H}, 0.25f);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(m, seed, b + "attn_norm.weight", {H}, 0.125f, 1.0f);
    add(m, seed, b + "ffn_norm.weight", {H}, 0.125f, 1.0f);
    if (ln) {
      add(m, seed, b + "attn_norm.bias", {H}, 0.125f);
      add(m, seed, b + "ffn_norm.bias", {H}, 0.125f);
    }
    add(m, seed, b + "attn_q.weight", {qd, H}, 0.25f);
    add(m, seed, b + "attn_k.weight", {kd, H}, 0.25f);
    add(m, seed, b + "attn_v.weight", {kd, H}, 0.25f);
    add(m, seed, b + "attn_output.weight", {H, qd}, 0.25f);
    if (c.qkv_bias) {
      add(m, seed, b + "attn_q.bias", {qd}, 0.125f);
      add(m, seed, b + "attn_k.bias", {kd}, 0.125f);
      add(m, seed, b + "attn_v.bias", {kd}, 0.125f);
    }
    if (c.attn_out_bias) add(m, seed, b + "attn_output.bias", {H}, 0.125f);
    if (c.qk_norm) {
      add(m, seed, b + "attn_q_norm.weight", {c.head_dim}, 0.125f, 1.0f);
      add(m, seed, b + "attn_k_norm.weight", {c.head_dim}, 0.125f, 1.0f);
    }
    if (c.gated_ffn) add(m, seed, b + "ffn_gate.weight", {F, H}, 0.25f);
    add(m, seed, b + "ffn_up.weight", {F, H}, 0.25f);
    add(m, seed, b + "ffn_down.weight", {H, F}, 0.25f);
    if (c.ffn_bias) {
      if (c.gated_ffn) add(m, seed, b + "ffn_gate.bias", {F}, 0.125f);
      add(m, seed, b + "ffn_up.bias", {F}, 0.125f);
      add(m, seed, b + "ffn_down.bias", {H}, 0.125f);
    }
  }
  add(m, seed, "output_norm.weight", {H}, 0.125f, 1.0f);
  if (ln) add(m, seed, "output_norm.bias", {H}, 0.125f);
  if (c.tied_embeddings)
    m.tensors["output.weight"] = m.tensors["token_embd.weight"];
  else
    add(m, seed, "output.weight", {V, H}, 0.25f);
  return m;
}

ModelConfig tiny_config(const std::string& arch) {
  ModelConfig c;
  c.architecture = arch;
  c.vocab_size = 37;
  c.hidden_size = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  c.rope_dim = 4;
  c.ffn_size = 24;
  c.context_length = 64;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  if (arch == "llama") {
    c.n_kv_heads = 2;
  } else if (arch == "llama3") {  // llama with llama3 rope scaling and MQA
    c.architecture = "llama";
    c.n_kv_heads = 1;
    c.rope_theta = 500000.0f;
    c.rope_scaling = {RopeScalingKind::Llama3, 8.0f, 1.0f, 4.0f, 16};
  } else if (arch == "mistral") {
    c.sliding_window = 5;
  } else if (arch == "qwen2") {
    c.qkv_bias = true;
    c.tied_embeddings = true;
    c.rope_theta = 1000000.0f;
    c.norm_eps = 1e-6f;
  } else if (arch == "qwen3") {
    c.qk_norm = true;
    c.head_dim = 8;  // q_dim 32 != hidden 16, as in real Qwen3
    c.rope_dim = 8;
    c.norm_eps = 1e-6f;
    c.rope_theta = 1000000.0f;
  } else if (arch == "gpt2") {
    c.norm = NormKind::LayerNorm;
    c.position = PositionKind::Learned;
    c.activation = ActivationKind::GELUTanh;
    c.gated_ffn = false;
    c.qkv_bias = c.attn_out_bias = c.ffn_bias = true;
    c.n_kv_heads = 4;
    c.tied_embeddings = true;
    c.ffn_size = 64;
    c.context_length = 32;
  }
  return c;
}

}  // namespace qeval::test
