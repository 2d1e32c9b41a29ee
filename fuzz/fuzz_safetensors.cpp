// Fuzzes the safetensors parser (8-byte header length + JSON header + data offsets): any
// byte string must give a validated file or a qeval::Error, never a crash or huge allocation.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "qeval/io/safetensors.h"
#include "qeval/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = qeval::MappedFile::from_memory("fuzz.safetensors", std::vector<uint8_t>(data, data + size));
  try {
    const qeval::SafetensorsFile st = qeval::parse_safetensors(file);
    for (const auto& t : st.tensors) {
      uint8_t sink = 0;
      if (t.nbytes > 0) sink ^= t.data[0] ^ t.data[t.nbytes - 1];
      asm volatile("" : : "r"(sink));  // keep the reads
    }
  } catch (const qeval::Error&) {
  }
  return 0;
}
