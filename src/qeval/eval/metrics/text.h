#pragma once
// Text helpers shared by the metrics: UTF-8 <-> code points, and the few Python str operations
// (lower(), split(), rstrip(), isalnum()) whose exact Unicode behaviour the reference values
// depend on.
#include <cstddef>
#include <optional>
#include <string>

#include "qeval/util/utf8.h"
#include <string_view>
#include <vector>

namespace qeval::eval::text {

// Byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates and code points
// above U+10FFFF are invalid), or nullopt when the whole string is valid.
std::optional<size_t> find_invalid_utf8(std::string_view s);

// Lenient decoding: every byte of an invalid sequence becomes U+FFFD.
std::u32string decode_utf8(std::string_view s);
std::string encode_utf8(std::u32string_view s);
using ::qeval::append_utf8;

bool is_space(char32_t c);  // Python str.isspace()
bool is_alnum(char32_t c);  // Python str.isalnum()
bool is_word(char32_t c);   // Python re \w on str: isalnum() or '_'

// Python str.lower(): full lower-case mapping (U+0130 -> "i\u0307") with the final-sigma rule.
std::u32string lower(std::u32string_view s);

// Python str.split() with no argument: runs of whitespace separate, no empty fields.
std::vector<std::u32string_view> split_whitespace(std::u32string_view s);
// Python str.rstrip() with no argument.
std::u32string_view rstrip(std::u32string_view s);

}  // namespace qeval::eval::text
