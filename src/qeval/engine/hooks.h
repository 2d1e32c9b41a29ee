#pragma once
// Observation and in-place transformation points of the forward pass. Quantization code
// (calibration statistics, activation capture, activation / KV fake-quantization) plugs in
// here without touching the decoder. With no hooks installed the engine pays nothing: the
// hook pointer is checked once per linear layer and no copy is made.
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qeval {

enum class LinearRole : uint8_t { AttnQ, AttnK, AttnV, AttnOutput, FfnGate, FfnUp, FfnDown, Output };

// GGUF spelling: "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
// "output".
std::string_view role_name(LinearRole role);
std::optional<LinearRole> role_from_name(std::string_view name);

// One linear layer of the decoder. `layer` is -1 for the output projection (lm head).
struct LinearId {
  int layer = -1;
  LinearRole role = LinearRole::Output;

  // The tensor name without ".weight": "blk.3.attn_q", "output".
  std::string name() const;
  static LinearId output() { return {-1, LinearRole::Output}; }
  // Parses "blk.3.attn_q", "blk.3.attn_q.weight" or "output"; nullopt otherwise.
  static std::optional<LinearId> parse(std::string_view tensor_name);
  auto operator<=>(const LinearId&) const = default;
};

// Override what you need. Buffers are row-major and may be modified in place; what a hook
// leaves there is what the model uses.
//  - linear_input: the activation entering the layer, rows x cols (cols = in_features). Each
//    linear layer gets its own copy, so transforming the input of attn_q does not change what
//    attn_k sees. (In ggml-compatible mode the hook sees the activation before llama.cpp-style
//    rounding.)
//  - linear_output: the result (bias included), rows x cols (cols = out_features).
//  - kv: K (after RoPE and QK-norm) and V of `tokens` new positions, just before they are
//    written to the KV cache; tokens x kv_dim each.
// In a batched forward the rows of every sequence in the batch are concatenated in order.
// The output projection is evaluated only at positions whose logits are needed, in chunks.
struct ForwardHooks {
  virtual ~ForwardHooks() = default;
  virtual void linear_input(const LinearId& /*id*/, float* /*x*/, int64_t /*rows*/, int64_t /*cols*/) {}
  virtual void linear_output(const LinearId& /*id*/, float* /*y*/, int64_t /*rows*/, int64_t /*cols*/) {}
  virtual void kv(int /*layer*/, float* /*k*/, float* /*v*/, int64_t /*tokens*/, int64_t /*kv_dim*/) {}
};

}  // namespace qeval
