// Fuzzes tokenizer.json loading: any document must load or give a qeval::Error; a loaded
// tokenizer then encodes and decodes a fixed mixed-script text without crashing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "qeval/tokenizer/tokenizer_json.h"
#include "qeval/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto tok = qeval::parse_tokenizer_json(text, "fuzz/tokenizer.json");
    const auto ids = tok->encode("Hello  world 123 <s> héllo\n\t日本 \xff");
    (void)tok->decode(ids);
  } catch (const qeval::Error&) {
  }
  return 0;
}
