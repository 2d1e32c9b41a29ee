#pragma once
// SentencePiece .model files, tokenized by the sentencepiece library itself, so the model's
// own normalizer flags (add_dummy_prefix, remove_extra_whitespaces, split_digits, byte
// fallback) apply exactly as in Python's sentencepiece.
#include <memory>
#include <string>

#include "qeval/tokenizer/tokenizer.h"

namespace qeval {

struct SentencePieceOptions {
  bool add_bos = true;   // Llama-style default; from an HF directory: tokenizer_config.json add_bos_token
  bool add_eos = false;  // tokenizer_config.json add_eos_token
};

// Throws qeval::Error "<path>: <problem>" when the file is missing or not a SentencePiece model.
//
// encode(): with parse_special, the text of control pieces (<s>, </s>) and of the unknown
// piece (<unk>) is matched first (leftmost, longest) and each text segment in between is
// encoded on its own, as HF's LlamaTokenizer does; without it the whole text goes to
// SentencePiece, which spells such literals out as text.
// decode(): SentencePiece's decoding, except that control and unknown tokens are kept as
// their piece text and the dummy-prefix space is removed only at the very start.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path,
                                                        const SentencePieceOptions& options = {});

}  // namespace qeval
