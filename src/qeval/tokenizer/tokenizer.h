#pragma once
// One tokenizer interface over every vocabulary kind QEval reads: SentencePiece .model files,
// GGUF "llama" (SPM) vocabularies, byte-level BPE from tokenizer.json or GGUF "gpt2".
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qeval {

struct Model;

using TokenId = int32_t;

struct EncodeOptions {
  bool add_special = true;     // BOS/EOS as the tokenizer's configuration says (HF post-processor)
  bool parse_special = true;   // match special/added token text in the input (HF behaviour)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual std::vector<TokenId> encode(std::string_view text, const EncodeOptions& opts = {}) const = 0;
  // Inverse of encode wherever the tokenizer is lossless; special tokens are kept as text.
  virtual std::string decode(const std::vector<TokenId>& ids) const = 0;
  // The text piece of one token as it appears in generated output (for streaming).
  virtual std::string token_text(TokenId id) const = 0;
  // The vocabulary string of a token (e.g. "▁Hello", "<0x0A>", "ĠHello").
  virtual std::string token_string(TokenId id) const = 0;
  virtual int32_t vocab_size() const = 0;

  virtual TokenId bos_id() const = 0;  // -1 when none
  virtual TokenId eos_id() const = 0;
  virtual bool adds_bos() const = 0;   // does encode(add_special=true) put BOS first
  virtual bool adds_eos() const = 0;
  virtual std::string kind() const = 0;  // "sentencepiece", "spm-gguf", "bpe", ...
};

// Loads a tokenizer from: a SentencePiece .model file; a tokenizer.json; a GGUF file (its
// tokenizer.ggml.* arrays); an HF directory (tokenizer.json, else tokenizer.model).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);
// The tokenizer that belongs to a loaded model (GGUF metadata or files of the HF directory).
std::unique_ptr<Tokenizer> load_tokenizer(const Model& model);

}  // namespace qeval
