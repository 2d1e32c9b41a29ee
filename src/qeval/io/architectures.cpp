#include "qeval/io/architectures.h"

#include "qeval/util/error.h"

namespace qeval {
namespace {

using R = TensorRole;

const std::vector<RoleInfo> kRoles = {
    {R::TokenEmbd, "token_embd.weight", false},
    {R::PositionEmbd, "position_embd.weight", false},
    {R::OutputNorm, "output_norm.weight", false},
    {R::OutputNormBias, "output_norm.bias", false},
    {R::Output, "output.weight", false},
    {R::AttnNorm, "attn_norm.weight", true},
    {R::AttnNormBias, "attn_norm.bias", true},
    {R::AttnQ, "attn_q.weight", true},
    {R::AttnQBias, "attn_q.bias", true},
    {R::AttnK, "attn_k.weight", true},
    {R::AttnKBias, "attn_k.bias", true},
    {R::AttnV, "attn_v.weight", true},
    {R::AttnVBias, "attn_v.bias", true},
    {R::AttnOutput, "attn_output.weight", true},
    {R::AttnOutputBias, "attn_output.bias", true},
    {R::AttnQNorm, "attn_q_norm.weight", true},
    {R::AttnKNorm, "attn_k_norm.weight", true},
    {R::FfnNorm, "ffn_norm.weight", true},
    {R::FfnNormBias, "ffn_norm.bias", true},
    {R::FfnGate, "ffn_gate.weight", true},
    {R::FfnGateBias, "ffn_gate.bias", true},
    {R::FfnUp, "ffn_up.weight", true},
    {R::FfnUpBias, "ffn_up.bias", true},
    {R::FfnDown, "ffn_down.weight", true},
    {R::FfnDownBias, "ffn_down.bias", true},
};

// nn.Linear checkpoints in the Llama naming (Llama, Mistral, Qwen2, Qwen3). Rules whose roles
// a configuration does not have (biases, q/k norms) are simply not used.
const std::vector<HFTensorRule> kLlamaTensors = {
    {"model.embed_tokens.weight", {R::TokenEmbd}},
    {"model.norm.weight", {R::OutputNorm}},
    {"lm_head.weight", {R::Output}},
    {"model.layers.{}.input_layernorm.weight", {R::AttnNorm}},
    {"model.layers.{}.self_attn.q_proj.weight", {R::AttnQ}},
    {"model.layers.{}.self_attn.q_proj.bias", {R::AttnQBias}},
    {"model.layers.{}.self_attn.k_proj.weight", {R::AttnK}},
    {"model.layers.{}.self_attn.k_proj.bias", {R::AttnKBias}},
    {"model.layers.{}.self_attn.v_proj.weight", {R::AttnV}},
    {"model.layers.{}.self_attn.v_proj.bias", {R::AttnVBias}},
    {"model.layers.{}.self_attn.o_proj.weight", {R::AttnOutput}},
    {"model.layers.{}.self_attn.o_proj.bias", {R::AttnOutputBias}},
    {"model.layers.{}.self_attn.q_norm.weight", {R::AttnQNorm}},
    {"model.layers.{}.self_attn.k_norm.weight", {R::AttnKNorm}},
    {"model.layers.{}.post_attention_layernorm.weight", {R::FfnNorm}},
    {"model.layers.{}.mlp.gate_proj.weight", {R::FfnGate}},
    {"model.layers.{}.mlp.gate_proj.bias", {R::FfnGateBias}},
    {"model.layers.{}.mlp.up_proj.weight", {R::FfnUp}},
    {"model.layers.{}.mlp.up_proj.bias", {R::FfnUpBias}},
    {"model.layers.{}.mlp.down_proj.weight", {R::FfnDown}},
    {"model.layers.{}.mlp.down_proj.bias", {R::FfnDownBias}},
};

const std::vector<HFTensorRule> kGPT2Tensors = {
    {"wte.weight", {R::TokenEmbd}},
    {"wpe.weight", {R::PositionEmbd}},
    {"ln_f.weight", {R::OutputNorm}},
    {"ln_f.bias", {R::OutputNormBias}},
    {"lm_head.weight", {R::Output}},
    {"h.{}.ln_1.weight", {R::AttnNorm}},
    {"h.{}.ln_1.bias", {R::AttnNormBias}},
    {"h.{}.attn.c_attn.weight", {R::AttnQ, R::AttnK, R::AttnV}, HFLayout::Conv1D},
    {"h.{}.attn.c_attn.bias", {R::AttnQBias, R::AttnKBias, R::AttnVBias}},
    {"h.{}.attn.c_proj.weight", {R::AttnOutput}, HFLayout::Conv1D},
    {"h.{}.attn.c_proj.bias", {R::AttnOutputBias}},
    {"h.{}.ln_2.weight", {R::FfnNorm}},
    {"h.{}.ln_2.bias", {R::FfnNormBias}},
    {"h.{}.mlp.c_fc.weight", {R::FfnUp}, HFLayout::Conv1D},
    {"h.{}.mlp.c_fc.bias", {R::FfnUpBias}},
    {"h.{}.mlp.c_proj.weight", {R::FfnDown}, HFLayout::Conv1D},
    {"h.{}.mlp.c_proj.bias", {R::FfnDownBias}},
};

std::vector<ArchitectureInfo> make_table() {
  std::vector<ArchitectureInfo> t;

  ArchitectureInfo llama;
  llama.name = "llama";
  llama.hf_classes = {"LlamaForCausalLM"};
  llama.hf_model_type = "llama";
  llama.gguf_arch = "llama";
  llama.gguf_interleaved_rope = true;
  llama.keys.attention_bias = "attention_bias";
  llama.keys.mlp_bias = "mlp_bias";
  llama.hf_tensors = kLlamaTensors;
  llama.hf_ignored_suffixes = {"rotary_emb.inv_freq"};
  t.push_back(llama);

  ArchitectureInfo mistral = llama;  // llama.cpp runs Mistral as "llama"
  mistral.name = "mistral";
  mistral.hf_classes = {"MistralForCausalLM"};
  mistral.hf_model_type = "mistral";
  mistral.keys.attention_bias = "";
  mistral.keys.mlp_bias = "";
  mistral.keys.sliding_window = "sliding_window";
  t.push_back(mistral);

  ArchitectureInfo qwen2 = llama;
  qwen2.name = "qwen2";
  qwen2.hf_classes = {"Qwen2ForCausalLM"};
  qwen2.hf_model_type = "qwen2";
  qwen2.gguf_arch = "qwen2";
  qwen2.gguf_interleaved_rope = false;  // llama.cpp runs qwen2 with NEOX (half-split) rope
  qwen2.qkv_bias = true;
  qwen2.keys.attention_bias = "";
  qwen2.keys.mlp_bias = "";
  qwen2.keys.sliding_window = "sliding_window";
  qwen2.keys.use_sliding_window = "use_sliding_window";
  t.push_back(qwen2);

  ArchitectureInfo qwen3 = llama;
  qwen3.name = "qwen3";
  qwen3.hf_classes = {"Qwen3ForCausalLM"};
  qwen3.hf_model_type = "qwen3";
  qwen3.gguf_arch = "qwen3";
  qwen3.gguf_interleaved_rope = false;
  qwen3.qk_norm = true;
  qwen3.keys.attention_bias = "attention_bias";
  qwen3.keys.mlp_bias = "";
  qwen3.keys.sliding_window = "sliding_window";
  qwen3.keys.use_sliding_window = "use_sliding_window";
  t.push_back(qwen3);

  ArchitectureInfo gpt2;
  gpt2.name = "gpt2";
  gpt2.hf_classes = {"GPT2LMHeadModel"};
  gpt2.hf_model_type = "gpt2";
  gpt2.gguf_arch = "gpt2";
  gpt2.norm = NormKind::LayerNorm;
  gpt2.position = PositionKind::Learned;
  gpt2.activation = ActivationKind::GELUTanh;
  gpt2.gated_ffn = false;
  gpt2.qkv_bias = true;
  gpt2.attn_out_bias = true;
  gpt2.ffn_bias = true;
  gpt2.tied_default = true;
  gpt2.keys.hidden = "n_embd";
  gpt2.keys.layers = "n_layer";
  gpt2.keys.heads = "n_head";
  gpt2.keys.kv_heads = "";
  gpt2.keys.ffn = "n_inner";
  gpt2.keys.ffn_default_mult = 4;
  gpt2.keys.context = "n_positions";
  gpt2.keys.norm_eps = "layer_norm_epsilon";
  gpt2.keys.rope_theta = "";
  gpt2.keys.head_dim = "";
  gpt2.keys.activation = "activation_function";
  gpt2.keys.activations = {"gelu_new", "gelu_pytorch_tanh"};
  gpt2.hf_prefixes = {"", "transformer."};
  gpt2.hf_tensors = kGPT2Tensors;
  gpt2.gguf_fused = {{"attn_qkv.weight", {R::AttnQ, R::AttnK, R::AttnV}},
                     {"attn_qkv.bias", {R::AttnQBias, R::AttnKBias, R::AttnVBias}}};
  gpt2.hf_ignored_suffixes = {".attn.bias", ".attn.masked_bias"};
  t.push_back(gpt2);
  return t;
}

}  // namespace

const RoleInfo& role_info(TensorRole role) { return kRoles.at(static_cast<size_t>(role)); }
const std::vector<RoleInfo>& all_roles() { return kRoles; }

std::string canonical_name(TensorRole role, int64_t layer) {
  const RoleInfo& r = role_info(role);
  if (!r.per_layer) return std::string(r.name);
  return "blk." + std::to_string(layer) + "." + std::string(r.name);
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  std::vector<ExpectedTensor> out;
  auto add = [&](TensorRole role, int64_t layer, std::vector<int64_t> shape) {
    out.push_back({role, layer, canonical_name(role, layer), std::move(shape)});
  };
  const bool ln = c.norm == NormKind::LayerNorm;
  const int64_t h = c.hidden_size;
  add(R::TokenEmbd, -1, {c.vocab_size, h});
  if (c.position == PositionKind::Learned) add(R::PositionEmbd, -1, {c.context_length, h});
  add(R::OutputNorm, -1, {h});
  if (ln) add(R::OutputNormBias, -1, {h});
  add(R::Output, -1, {c.vocab_size, h});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    add(R::AttnNorm, l, {h});
    if (ln) add(R::AttnNormBias, l, {h});
    add(R::AttnQ, l, {c.q_dim(), h});
    add(R::AttnK, l, {c.kv_dim(), h});
    add(R::AttnV, l, {c.kv_dim(), h});
    if (c.qkv_bias) {
      add(R::AttnQBias, l, {c.q_dim()});
      add(R::AttnKBias, l, {c.kv_dim()});
      add(R::AttnVBias, l, {c.kv_dim()});
    }
    add(R::AttnOutput, l, {h, c.q_dim()});
    if (c.attn_out_bias) add(R::AttnOutputBias, l, {h});
    if (c.qk_norm) {
      add(R::AttnQNorm, l, {c.head_dim});
      add(R::AttnKNorm, l, {c.head_dim});
    }
    add(R::FfnNorm, l, {h});
    if (ln) add(R::FfnNormBias, l, {h});
    if (c.gated_ffn) add(R::FfnGate, l, {c.ffn_size, h});
    add(R::FfnUp, l, {c.ffn_size, h});
    add(R::FfnDown, l, {h, c.ffn_size});
    if (c.ffn_bias) {
      if (c.gated_ffn) add(R::FfnGateBias, l, {c.ffn_size});
      add(R::FfnUpBias, l, {c.ffn_size});
      add(R::FfnDownBias, l, {h});
    }
  }
  return out;
}

const std::vector<ArchitectureInfo>& architectures() {
  static const std::vector<ArchitectureInfo> table = make_table();
  return table;
}

const ArchitectureInfo* find_architecture(std::string_view name) {
  for (const auto& a : architectures())
    if (a.name == name) return &a;
  return nullptr;
}

const ArchitectureInfo* find_architecture_by_hf_class(std::string_view cls) {
  for (const auto& a : architectures())
    for (auto c : a.hf_classes)
      if (c == cls) return &a;
  return nullptr;
}

const ArchitectureInfo* find_architecture_by_hf_model_type(std::string_view model_type) {
  for (const auto& a : architectures())
    if (a.hf_model_type == model_type) return &a;
  return nullptr;
}

const ArchitectureInfo* find_architecture_by_gguf(std::string_view gguf_arch) {
  for (const auto& a : architectures())
    if (a.gguf_arch == gguf_arch) return &a;
  return nullptr;
}

const ArchitectureInfo& architecture(const ModelConfig& c) {
  const ArchitectureInfo* a = find_architecture(c.architecture);
  if (a == nullptr) fail("unknown architecture '" + c.architecture + "'");
  return *a;
}

std::string supported_hf_classes() {
  std::string s;
  for (const auto& a : architectures())
    for (auto c : a.hf_classes) s += (s.empty() ? "" : ", ") + std::string(c);
  return s;
}

std::string supported_gguf_archs() {
  std::string s;
  for (const auto& a : architectures()) {
    if (a.name != a.gguf_arch) continue;  // aliases (mistral) are read as their GGUF arch
    s += (s.empty() ? "" : ", ") + std::string(a.gguf_arch);
  }
  return s;
}

ModelConfig default_config(const ArchitectureInfo& a) {
  ModelConfig c;
  c.architecture = std::string(a.name);
  c.norm = a.norm;
  c.position = a.position;
  c.activation = a.activation;
  c.gated_ffn = a.gated_ffn;
  c.qkv_bias = a.qkv_bias;
  c.qk_norm = a.qk_norm;
  c.attn_out_bias = a.attn_out_bias;
  c.ffn_bias = a.ffn_bias;
  c.tied_embeddings = a.tied_default;
  return c;
}

std::string hf_tensor_name(std::string_view templ, int64_t layer) {
  std::string s(templ);
  const auto pos = s.find("{}");
  if (pos != std::string::npos) s.replace(pos, 2, std::to_string(layer));
  return s;
}

}  // namespace qeval
