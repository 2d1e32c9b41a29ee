#pragma once
// Where each token of a prompt starts in the prompt's text, for OpenAI's text_offset.
// Offsets count Unicode code points (as Python's str indices do, which is what OpenAI clients
// compare them with); a token that starts inside a multi-byte character gets the index of the
// next character.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/tokenizer/tokenizer.h"

namespace qeval::serve {

struct AlignedText {
  std::string text;                  // the prompt text the offsets refer to
  std::vector<size_t> byte_offsets;  // per token, into text
};

// Aligns the tokens' text pieces with `text` (the prompt as given): a piece matches at the
// current position, or matches without its leading space (SentencePiece's dummy prefix), or
// is a special token absent from the text (BOS: zero width). When the pieces do not spell
// `text` (a lossy tokenizer), the offsets refer to the tokenizer's own decoding instead, which
// is then returned as `text`. For a prompt given as token ids pass the decoded text.
AlignedText align_tokens(const Tokenizer& tok, const std::vector<TokenId>& tokens, const std::string& text);

// Code points in s[0, byte_offset) (continuation bytes are not counted).
size_t code_points(std::string_view s, size_t byte_offset);
inline size_t code_points(std::string_view s) { return code_points(s, s.size()); }

}  // namespace qeval::serve
