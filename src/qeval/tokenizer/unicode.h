#pragma once
// UTF-8 helpers shared by the BPE tokenizers: code point iteration that tolerates invalid
// input, the byte <-> unicode table of byte-level BPE (GPT-2's bytes_to_unicode), Unicode
// normalization forms (utf8proc) and the Oniguruma whitespace set that HF tokenizers use.
//
// Invalid UTF-8 policy (everywhere in the tokenizer): a byte that does not start a valid,
// shortest-form sequence of a scalar value (no surrogates, <= U+10FFFF) is one "character" of
// its own. It is never changed by normalization, never matched by a regex character class,
// and is carried to the model as that byte (byte-level BPE maps it like any other byte;
// byte_fallback gives <0xXX>). So byte-level tokenizers stay lossless on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "qeval/util/utf8.h"
#include <string_view>

namespace qeval::unicode {

// The character at s[pos]: its code point and byte length. An invalid byte gives
// {valid=false, len=1, cp=the byte}.
struct Utf8Char {
  char32_t cp = 0;
  uint32_t len = 1;
  bool valid = false;
};
Utf8Char utf8_next(std::string_view s, size_t pos);
bool is_valid_utf8(std::string_view s);
using ::qeval::append_utf8;
std::string utf8_encode(char32_t cp);

// GPT-2 byte-level alphabet: bytes '!'..'~', 0xA1..0xAC, 0xAE..0xFF map to the code point of
// the same value; the other 68 bytes map, in byte order, to U+0100, U+0101, ...
// byte_to_unicode(b) is the UTF-8 text of that code point.
const std::string& byte_to_unicode(uint8_t b);
int unicode_to_byte(char32_t cp);  // -1 when cp is not in the alphabet
// Maps every byte of `bytes` (valid UTF-8 or not).
std::string bytes_to_byte_level(std::string_view bytes);
// Inverse: each character of the alphabet becomes its byte; any other character (or invalid
// byte) is copied unchanged.
std::string byte_level_to_bytes(std::string_view text);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
// Normalizes each maximal valid UTF-8 run; invalid bytes are kept where they are.
std::string normalize(std::string_view s, NormalForm form);
std::string to_lower(std::string_view s);

// Oniguruma's (and Rust's char::is_whitespace) whitespace: U+0009-U+000D, U+0020, U+0085,
// U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
bool is_whitespace(char32_t cp);
// Letter, mark, number or connector punctuation (Oniguruma's \w), for single_word.
bool is_word_char(char32_t cp);

}  // namespace qeval::unicode
