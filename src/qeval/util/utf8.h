#pragma once
// UTF-8 encoding shared by the tokenizers and the text metrics.
#include <string>

namespace qeval {

// Appends the UTF-8 encoding of one code point (no validation of surrogates).
void append_utf8(std::string& out, char32_t cp);

}  // namespace qeval
