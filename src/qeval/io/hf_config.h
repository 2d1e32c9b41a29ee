#pragma once
// Model configuration readers and writers: HF config.json <-> ModelConfig, and GGUF metadata
// <-> ModelConfig. Per-architecture key names and defaults come from io/architectures.h.
// Every error names the file and the key: "<dir>/config.json: 'num_hidden_layers' should be
// an integer, is string".
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qeval/io/gguf.h"
#include "qeval/io/model_config.h"

namespace qeval {

// Reads and parses a JSON file; "<path>: cannot open ..." / "<path>: not valid JSON: ...".
nlohmann::json read_json_file(const std::string& path);

// config.json -> ModelConfig. `path` names the file in errors.
ModelConfig config_from_hf_json(const nlohmann::json& j, const std::string& path);
ModelConfig load_hf_config(const std::string& config_json_path);

// GGUF metadata (+ tensor infos, for the vocabulary size fallback and for the optional
// tensors that decide biases, q/k norms and tied embeddings) -> ModelConfig.
ModelConfig config_from_gguf(const GGUFMetadata& md, const std::vector<GGUFTensorInfo>& tensors,
                             const std::string& path);

// ModelConfig -> config.json (architecture keys only; the caller adds token ids, torch_dtype).
nlohmann::ordered_json config_to_hf_json(const ModelConfig& c);
// ModelConfig -> "<arch>.*" GGUF keys plus general.architecture, set in `md` (llama.cpp types:
// u32 counts, f32 floats).
void config_to_gguf_metadata(const ModelConfig& c, GGUFMetadata& md);

// A float as the shortest decimal that reads back as the same float (1e-05, not
// 9.999999747378752e-06), for JSON output.
double float_for_json(float f);

}  // namespace qeval
