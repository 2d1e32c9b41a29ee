#pragma once
// Safetensors: an 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {str: str}, "<tensor>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
// then the data section; offsets are relative to the first byte after the header.
// The reader maps the file and validates everything before handing out tensors that point
// into the mapping (no copy). The writer follows the format exactly (header padded with
// spaces to a multiple of 8, data contiguous in the listed order), so the `safetensors`
// library and HF transformers load its output.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/io/tensor.h"
#include "qeval/util/mapped_file.h"

namespace qeval {

// Safetensors dtype spelling <-> DType. Supported: F32 F16 BF16 F64 I8 U8 I16 I32 I64.
std::optional<DType> safetensors_dtype(std::string_view name);
std::optional<std::string_view> safetensors_dtype_name(DType t);

// Largest header the reader accepts (the reference implementation's limit).
inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

struct SafetensorsFile {
  std::string path;
  uint64_t header_size = 0;                     // N (JSON bytes, padding included)
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::vector<Tensor> tensors;                  // sorted by data offset (file order)

  const Tensor* find(std::string_view name) const;
};

// Opens and validates; throws qeval::Error "<path>: <problem>" (one line).
SafetensorsFile open_safetensors(const std::string& path);
SafetensorsFile parse_safetensors(std::shared_ptr<const MappedFile> file);

// A checkpoint: one model.safetensors or the shards listed by model.safetensors.index.json.
struct SafetensorsCheckpoint {
  std::vector<SafetensorsFile> files;
  std::map<std::string, Tensor> tensors;     // name -> tensor, across every shard
  std::map<std::string, std::string> where;  // name -> file path (for error messages)
};

// `path` is an HF directory (uses model.safetensors, else model.safetensors.index.json), an
// index .json file, or a single .safetensors file. A name in two shards, a weight_map entry
// whose shard lacks it, or a shard path leaving the directory are errors.
SafetensorsCheckpoint open_safetensors_checkpoint(const std::string& path);

// Writes tensors (bytes as they are, rows in logical order when a tensor has a row_order)
// atomically. Tensor names must be unique and not "__metadata__"; the dtype must have a
// safetensors spelling. An empty metadata map writes no "__metadata__" entry.
void write_safetensors(const std::string& path, const std::vector<Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace qeval
