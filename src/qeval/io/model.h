#pragma once
// One in-memory model description, whatever the file format. Tensors carry canonical names
// (GGUF's naming: "token_embd.weight", "blk.3.attn_q.weight", "output_norm.weight", ...),
// QEval's row-major shapes ([out_features, in_features] for linear weights) and Q/K rows in
// the half-split rotary layout. Tensors stay memory-mapped until read.
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

  const Tensor& tensor(const std::string& name) const;  // throws naming the model path
  const Tensor* find(const std::string& name) const;
  int64_t parameter_count() const;
};

// Loads a GGUF file or an HF checkpoint directory (config.json + model.safetensors or a
// sharded index). Throws qeval::Error "<path>: <problem>".
Model load_model(const std::string& path);

// Canonical per-layer tensor name: layer_tensor(3, "attn_q.weight") == "blk.3.attn_q.weight".
std::string layer_tensor(int64_t layer, const std::string& suffix);

}  // namespace qeval
