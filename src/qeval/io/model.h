#pragma once
// One in-memory model description, whatever the file format. Tensors carry canonical names
// (GGUF's naming: "token_embd.weight", "blk.3.attn_q.weight", "output_norm.weight", ...),
// QEval's row-major shapes ([out_features, in_features] for linear weights) and Q/K rows in
// the half-split rotary layout. Tensors stay memory-mapped until read.
//
// How files become this view (io/model.cpp):
//  - GGUF "llama" (and Mistral, which llama.cpp runs as llama) stores Q/K rows interleaved
//    (rotary pairs (2i, 2i+1)); attn_q/attn_k get a Tensor::row_order so that logical row
//    h*hd + c*(hd/2) + j reads physical row h*hd + 2j + c (no copy; biases, being 1-D, are
//    copied permuted). qwen2/qwen3 GGUFs are half-split already.
//  - GGUF gpt2's fused blk.N.attn_qkv.{weight,bias} becomes attn_q/attn_k/attn_v: row slices
//    of the mapped tensor, no copy.
//  - HF GPT-2 Conv1D weights ([in, out]) are transposed into owned buffers; c_attn is split.
//  - Tied embeddings: when the file has no output.weight (or config.json ties them, as
//    transformers does), tensors["output.weight"] is an alias of token_embd.weight (same
//    bytes, same owner) and config.tied_embeddings is true. parameter_count() counts it once.
//  - GGUF tensors outside the template (e.g. llama 3.1's "rope_freqs.weight", rotary
//    frequency divisors) are kept under their own names; HF tensors outside it are dropped
//    with a warning.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qeval/io/gguf.h"
#include "qeval/io/model_config.h"
#include "qeval/io/tensor.h"

namespace qeval {

enum class ModelFormat { GGUF, HFDirectory };

struct Model {
  std::string path;  // the GGUF file or the HF directory
  ModelFormat format = ModelFormat::GGUF;
  ModelConfig config;
  std::map<std::string, Tensor> tensors;  // canonical name -> tensor
  // GGUF: the file's metadata. HF: config.json and tokenizer settings mapped to GGUF keys, so
  // tokenizer loading and GGUF export have one source of truth.
  GGUFMetadata metadata;
  // Canonical name -> the name it has in the file, where they differ (HF names; GGUF fused
  // tensors: "blk.0.attn_qkv.weight"). For messages and `qeval info`.
  std::map<std::string, std::string> source_names;

  const Tensor& tensor(const std::string& name) const;  // throws naming the model path
  const Tensor* find(const std::string& name) const;
  int64_t parameter_count() const;  // elements of all tensors; an aliased output counted once
  bool is_alias(const std::string& name) const;  // output.weight sharing token_embd's bytes
};

struct LoadOptions {
  enum class FiniteCheck { Auto, Always, Never };
  // Auto scans F32/F16/BF16 tensors for NaN/Inf only when they total at most
  // finite_check_max_bytes, so that opening a large model does not read every weight.
  FiniteCheck check_finite = FiniteCheck::Auto;
  size_t finite_check_max_bytes = size_t{256} << 20;
};

// Loads a GGUF file or an HF checkpoint directory (config.json + model.safetensors or a
// sharded index). Throws qeval::Error "<path>: <problem>".
Model load_model(const std::string& path);
Model load_model(const std::string& path, const LoadOptions& options);

// Scans the F32/F16/BF16 tensors (block-quantized ones are not decoded) for NaN or Inf and
// warns once per offending tensor, naming it. Returns the names found.
std::vector<std::string> check_finite(const Model& model);

// Logical row -> physical row map of Q/K rows stored in the interleaved rotary order:
// logical h*hd + c*(hd/2) + j is physical h*hd + 2j + c.
std::vector<int32_t> interleaved_rotary_rows(int64_t n_heads, int64_t head_dim);

// Canonical per-layer tensor name: layer_tensor(3, "attn_q.weight") == "blk.3.attn_q.weight".
std::string layer_tensor(int64_t layer, const std::string& suffix);

}  // namespace qeval
