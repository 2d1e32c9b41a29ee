#pragma once
// The architecture of a decoder-only model as data. Every supported architecture is an
// entry in the table of io/architectures.cpp; the engine reads only this struct.
#include <cstdint>
#include <string>

namespace qeval {

enum class NormKind { RMSNorm, LayerNorm };
enum class PositionKind { Rope, Learned };
enum class ActivationKind { SiLU, GELUTanh };
enum class RopeScalingKind { None, Linear, Llama3 };

struct RopeScaling {
  RopeScalingKind kind = RopeScalingKind::None;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;   // llama3
  float high_freq_factor = 4.0f;  // llama3
  int64_t original_context = 8192;  // llama3: original_max_position_embeddings
};

struct ModelConfig {
  std::string architecture;  // "llama", "mistral", "qwen2", "qwen3", "gpt2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn_size = 0;
  int64_t context_length = 0;
  float norm_eps = 1e-5f;

  NormKind norm = NormKind::RMSNorm;
  PositionKind position = PositionKind::Rope;
  ActivationKind activation = ActivationKind::SiLU;
  bool gated_ffn = true;        // SwiGLU (gate, up, down) vs plain (up, down)
  bool qkv_bias = false;        // Qwen2, GPT-2
  bool qk_norm = false;         // Qwen3: RMSNorm on each head of q and k
  bool attn_out_bias = false;   // GPT-2
  bool ffn_bias = false;        // GPT-2
  bool tied_embeddings = false;

  // Rotary embedding. Q/K rows are always held in the half-split ("rotate_half", NEOX)
  // layout; loaders permute files that store the interleaved layout.
  float rope_theta = 10000.0f;
  int64_t rope_dim = 0;  // rotated dimensions per head (== head_dim unless partial)
  RopeScaling rope_scaling;
  int64_t sliding_window = 0;  // 0: full attention (Mistral sets e.g. 4096)

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

}  // namespace qeval
