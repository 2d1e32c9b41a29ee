#include "qeval/serve/text_offsets.h"

namespace qeval::serve {

size_t code_points(std::string_view s, size_t byte_offset) {
  size_t n = 0;
  for (size_t i = 0; i < byte_offset && i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) ++n;
  return n;
}

namespace {

bool align_pieces(const std::vector<std::string>& pieces, const std::string& text, std::vector<size_t>& offsets) {
  offsets.assign(pieces.size(), 0);
  size_t pos = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::string& p = pieces[i];
    offsets[i] = pos;
    if (p.empty()) continue;
    if (text.compare(pos, p.size(), p) == 0) {
      pos += p.size();
    } else if (p[0] == ' ' && text.compare(pos, p.size() - 1, p, 1) == 0) {
      pos += p.size() - 1;
    }
    // else: a token with no text of its own here (BOS); it takes no width.
  }
  return pos == text.size();
}

}  // namespace

AlignedText align_tokens(const Tokenizer& tok, const std::vector<TokenId>& tokens, const std::string& text) {
  std::vector<std::string> pieces;
  pieces.reserve(tokens.size());
  for (TokenId t : tokens) pieces.push_back(tok.token_text(t));
  AlignedText out;
  if (align_pieces(pieces, text, out.byte_offsets)) {
    out.text = text;
    return out;
  }
  // Lossy tokenization: align with the concatenated pieces, which spell the decoding.
  out.text.clear();
  for (const auto& p : pieces) out.text += p;
  align_pieces(pieces, out.text, out.byte_offsets);
  return out;
}

}  // namespace qeval::serve
