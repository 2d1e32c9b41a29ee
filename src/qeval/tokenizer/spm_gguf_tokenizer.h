#pragma once
// GGUF "llama" (SentencePiece-style) vocabularies: tokenizer.ggml.tokens / scores /
// token_type, tokenized the way llama.cpp does it (which is not always what SentencePiece
// does: llama.cpp ignores remove_extra_whitespaces, for instance).
//
// encode():
//  1. special-token partition: the text of every control, user-defined and unknown token is
//     cut out of the raw text, longest token text first (ties: lower id); control and unknown
//     tokens only with parse_special, user-defined ones always;
//  2. each text fragment gets a leading space when add_space_prefix is set and it is the
//     first fragment or follows a special token; U+0020 becomes U+2581;
//  3. the fragment is split into UTF-8 characters and the adjacent pair whose concatenation
//     is a vocabulary entry with the highest score is merged, repeatedly (ties: leftmost);
//  4. each final symbol maps to its id, or to its bytes as <0xXX> tokens (byte fallback).
// BOS first when add_special and tokenizer.ggml.add_bos_token (default true); EOS last when
// add_special and tokenizer.ggml.add_eos_token (default false).
//
// decode(): U+2581 -> space, <0xXX> tokens -> bytes, control / user-defined / unknown tokens
// as their text, unused tokens dropped; one leading space of the first token is removed when
// the vocabulary adds the space prefix.
#include <memory>
#include <string>

#include "qeval/io/gguf.h"
#include "qeval/tokenizer/tokenizer.h"

namespace qeval {

// GGUF token types (tokenizer.ggml.token_type).
enum class GGUFTokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

// `path` names the file in errors. Throws qeval::Error "<path>: <problem>" for a missing or
// inconsistent vocabulary.
std::unique_ptr<Tokenizer> make_spm_gguf_tokenizer(const GGUFMetadata& md, const std::string& path);

}  // namespace qeval
