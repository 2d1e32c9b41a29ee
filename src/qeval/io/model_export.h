#pragma once
// Writing a loaded Model back out: as a GGUF file llama.cpp can load (llama, mistral ->
// "llama", qwen2, qwen3, gpt2), or as an HF checkpoint directory (config.json,
// generation_config.json, model.safetensors, tokenizer files copied from an HF source).
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qeval/io/dtype.h"
#include "qeval/io/model.h"

namespace qeval {

struct GGUFExportOptions {
  // Type of the matrices. nullopt keeps every tensor's current type (bytes copied as they
  // are). Otherwise 1-D tensors (norms, biases) stay F32, as llama-quantize keeps them, and a
  // matrix whose rows are not a multiple of the type's block size falls back to F16.
  std::optional<DType> type;
  // Per-tensor types by canonical name; they win over `type` (same F16 fallback).
  std::map<std::string, DType> tensor_types;
  std::string name;         // general.name; empty: the source's general.name, else the file stem
  uint64_t alignment = 32;  // written as general.alignment when not 32
};

// What save_gguf wrote for one tensor.
struct ExportedTensor {
  std::string name;
  DType type;
  bool fallback = false;  // the requested type could not hold the rows; F16 used instead
};

// Writes `model` as GGUF (atomically). Q/K rows go back to llama.cpp's interleaved order for
// architectures that use it; an aliased output.weight is not written (llama.cpp re-ties it);
// gpt2 q/k/v are fused into attn_qkv again; llama3 rope scaling is written as llama.cpp's
// rope_freqs.weight. Every tokenizer.* key of model.metadata is copied. Throws qeval::Error.
std::vector<ExportedTensor> save_gguf(const Model& model, const std::string& path, const GGUFExportOptions& options = {});

// general.file_type (llama.cpp's LLAMA_FTYPE) of a file whose matrices are mostly `type`.
uint32_t gguf_file_type(DType type);

struct HFExportOptions {
  // F32, F16 or BF16. nullopt: F32/F16/BF16 tensors keep their type, others become F32.
  std::optional<DType> dtype;
};

// Writes an HF checkpoint into `dir` (created if needed): config.json, generation_config.json,
// model.safetensors (HF names, HF layout: half-split Q/K, Conv1D for GPT-2; lm_head omitted
// when the embeddings are tied), plus tokenizer.model / tokenizer.json / tokenizer_config.json
// / special_tokens_map.json copied from the source directory of an HF model.
void save_hf(const Model& model, const std::string& dir, const HFExportOptions& options = {});

}  // namespace qeval
