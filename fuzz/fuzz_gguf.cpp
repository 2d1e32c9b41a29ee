// Fuzzes the GGUF parser and the tensor accessors: any byte string must give either a
// parsed file or a qeval::Error, never a crash, hang or huge allocation.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "qeval/io/gguf.h"
#include "qeval/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qeval::GGUFFile file;
  try {
    qeval::parse_gguf_buffer(data, size, "fuzz.gguf", file);
  } catch (const qeval::Error&) {
    return 0;
  }
  // Touch every tensor's bytes through the public accessors (bounds were validated).
  for (const auto& ti : file.tensor_infos) {
    const uint8_t* p = data + file.data_offset + ti.offset;
    uint8_t sink = 0;
    for (size_t i = 0; i < ti.nbytes; i += 64) sink ^= p[i];
    if (ti.nbytes > 0) sink ^= p[ti.nbytes - 1];
    asm volatile("" : : "r"(sink));  // keep the reads
  }
  for (const auto& [key, value] : file.metadata.entries()) (void)value.to_display_string();
  return 0;
}
