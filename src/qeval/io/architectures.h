#pragma once
// The architecture table: per-architecture defaults, config.json key names, and the mapping
// between HF tensor names and QEval's canonical (GGUF) names. Adding an architecture that
// fits the decoder template is adding one entry in architectures.cpp.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/io/model_config.h"

namespace qeval {

// What a canonical tensor is for. Names are GGUF's: see role_info().
enum class TensorRole : uint8_t {
  TokenEmbd, PositionEmbd, OutputNorm, OutputNormBias, Output,
  AttnNorm, AttnNormBias, AttnQ, AttnQBias, AttnK, AttnKBias, AttnV, AttnVBias,
  AttnOutput, AttnOutputBias, AttnQNorm, AttnKNorm,
  FfnNorm, FfnNormBias, FfnGate, FfnGateBias, FfnUp, FfnUpBias, FfnDown, FfnDownBias,
};

struct RoleInfo {
  TensorRole role;
  std::string_view name;  // "token_embd.weight" or, per layer, the suffix "attn_q.weight"
  bool per_layer;
};
const RoleInfo& role_info(TensorRole role);
const std::vector<RoleInfo>& all_roles();
// "token_embd.weight" or "blk.<layer>.attn_q.weight".
std::string canonical_name(TensorRole role, int64_t layer = -1);

// A tensor a model with this configuration must have, with its canonical row-major shape.
// output.weight is always listed (a tied model aliases token_embd.weight).
struct ExpectedTensor {
  TensorRole role;
  int64_t layer = -1;  // -1 for global tensors
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c);

// How tensors are stored in HF checkpoints.
enum class HFLayout {
  Linear,  // torch nn.Linear: [out, in], as QEval
  Conv1D,  // GPT-2's Conv1D: [in, out]; transposed on load and save
};
struct HFTensorRule {
  std::string_view hf_name;       // "{}" stands for the layer index
  std::vector<TensorRole> roles;  // several: the stored tensor's rows (after transposing) are
                                  // the roles' tensors one after another (GPT-2 c_attn = q|k|v)
  HFLayout layout = HFLayout::Linear;
};
// A GGUF tensor holding several canonical tensors stacked by rows (GPT-2 "attn_qkv").
struct GGUFFusedRule {
  std::string_view suffix;  // per-layer suffix, e.g. "attn_qkv.weight"
  std::vector<TensorRole> roles;
};

// config.json key names; an empty name means the architecture has no such key.
struct HFConfigKeys {
  std::string_view hidden = "hidden_size";
  std::string_view layers = "num_hidden_layers";
  std::string_view heads = "num_attention_heads";
  std::string_view kv_heads = "num_key_value_heads";  // default: heads
  std::string_view ffn = "intermediate_size";
  int64_t ffn_default_mult = 0;  // >0: ffn key optional/null means mult * hidden (GPT-2 n_inner)
  std::string_view context = "max_position_embeddings";
  std::string_view norm_eps = "rms_norm_eps";
  std::string_view rope_theta = "rope_theta";  // default 10000
  std::string_view head_dim = "head_dim";      // optional/null: hidden / heads
  std::string_view activation = "hidden_act";
  std::vector<std::string_view> activations = {"silu", "swish"};  // accepted values
  std::string_view attention_bias;      // bool key: q/k/v and o biases (Llama "attention_bias")
  std::string_view mlp_bias;            // bool key: FFN biases (Llama "mlp_bias")
  std::string_view sliding_window;      // int or null
  std::string_view use_sliding_window;  // bool gate for sliding_window (Qwen2)
};

struct ArchitectureInfo {
  std::string_view name;                     // QEval's name: "llama", "mistral", ...
  std::vector<std::string_view> hf_classes;  // config.json "architectures" (first = written)
  std::string_view hf_model_type;            // config.json "model_type"
  std::string_view gguf_arch;                // general.architecture (mistral -> "llama")

  // Defaults of the ModelConfig flags.
  NormKind norm = NormKind::RMSNorm;
  PositionKind position = PositionKind::Rope;
  ActivationKind activation = ActivationKind::SiLU;
  bool gated_ffn = true;
  bool qkv_bias = false;
  bool qk_norm = false;
  bool attn_out_bias = false;
  bool ffn_bias = false;
  bool tied_default = false;  // tie_word_embeddings when config.json does not say

  // llama.cpp stores Q/K rows of this architecture in the interleaved rotary order (pairs
  // (2i, 2i+1)); QEval permutes them to half-split on load and back on GGUF export.
  bool gguf_interleaved_rope = false;

  HFConfigKeys keys;
  std::vector<std::string_view> hf_prefixes = {""};  // tried in order before each HF name
  std::vector<HFTensorRule> hf_tensors;
  std::vector<GGUFFusedRule> gguf_fused;
  std::vector<std::string_view> hf_ignored_suffixes;  // buffers that are not weights
};

const std::vector<ArchitectureInfo>& architectures();
const ArchitectureInfo* find_architecture(std::string_view name);          // QEval name
const ArchitectureInfo* find_architecture_by_hf_class(std::string_view cls);
const ArchitectureInfo* find_architecture_by_hf_model_type(std::string_view model_type);
const ArchitectureInfo* find_architecture_by_gguf(std::string_view gguf_arch);  // first entry
const ArchitectureInfo& architecture(const ModelConfig& c);  // throws for an unknown name
std::string supported_hf_classes();  // "LlamaForCausalLM, MistralForCausalLM, ..."
std::string supported_gguf_archs();  // "llama, qwen2, qwen3, gpt2"

// The ModelConfig flags of an architecture's defaults (sizes left 0).
ModelConfig default_config(const ArchitectureInfo& a);

// Replace "{}" in an HF name template by the layer index.
std::string hf_tensor_name(std::string_view templ, int64_t layer);

}  // namespace qeval
