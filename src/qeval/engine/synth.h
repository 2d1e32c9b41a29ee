#pragma once
// Deterministic random-weight models of real shapes (for speed and memory measurements and
// for tests that need a model of a given size). Weights: N(0, 0.02) for matrices, 1 for norm
// weights, from splitmix64 streams seeded by (seed, tensor name, 1M-element chunk), so the
// bytes depend only on the seed, never on the thread count.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/io/gguf.h"
#include "qeval/io/model.h"

namespace qeval {

// "tinyllama-1.1b", "smollm-135m", "stories260k" (llama architecture). Throws for others.
ModelConfig synth_preset(std::string_view preset);
std::vector<std::string> synth_presets();

// A minimal byte-level SentencePiece vocabulary for llama.cpp's "llama" tokenizer:
// <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then lower-case letter pieces
// ("▁a", "a", ..., "▁ab", ...) with decreasing scores, up to `vocab_size` tokens (>= 259).
GGUFMetadata synth_spm_vocab(int64_t vocab_size);

// The tokenizer.* keys of a GGUF file.
GGUFMetadata tokenizer_metadata_from(const std::string& gguf_path);

// Random model with `vocab` as its tokenizer metadata (its token count must equal
// cfg.vocab_size). Tensors are F32 and owned by the model.
Model synth_model(const ModelConfig& cfg, uint64_t seed, const GGUFMetadata& vocab, int threads = 0);

}  // namespace qeval
