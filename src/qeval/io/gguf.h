#pragma once
// GGUF v2/v3 container: typed key/value metadata, tensor infos, aligned tensor data.
// The reader validates every length against the file size before trusting it, so a
// truncated or hostile file gives one clear error instead of a crash.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "qeval/io/tensor.h"
#include "qeval/util/mapped_file.h"

namespace qeval {

enum class GGUFValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view gguf_type_name(GGUFValueType t);

struct GGUFValue;
struct GGUFArray {
  GGUFValueType elem = GGUFValueType::U8;
  std::vector<GGUFValue> items;
};

// One metadata value. The declared type is kept so that a written file repeats it exactly.
struct GGUFValue {
  GGUFValueType type = GGUFValueType::U8;
  std::variant<uint64_t, int64_t, double, bool, std::string, GGUFArray> value;

  static GGUFValue u32(uint32_t v) { return {GGUFValueType::U32, uint64_t{v}}; }
  static GGUFValue i32(int32_t v) { return {GGUFValueType::I32, int64_t{v}}; }
  static GGUFValue u64(uint64_t v) { return {GGUFValueType::U64, v}; }
  static GGUFValue f32(float v) { return {GGUFValueType::F32, double{v}}; }
  static GGUFValue boolean(bool v) { return {GGUFValueType::BOOL, v}; }
  static GGUFValue str(std::string v) { return {GGUFValueType::STRING, std::move(v)}; }
  static GGUFValue array(GGUFValueType elem, std::vector<GGUFValue> items) {
    return {GGUFValueType::ARRAY, GGUFArray{elem, std::move(items)}};
  }
  static GGUFValue string_array(const std::vector<std::string>& v);
  static GGUFValue f32_array(const std::vector<float>& v);
  static GGUFValue i32_array(const std::vector<int32_t>& v);

  bool is_integer() const;
  bool is_float() const { return type == GGUFValueType::F32 || type == GGUFValueType::F64; }
  std::string to_display_string(size_t max_items = 8) const;  // for `qeval info`
};

// Ordered key/value store with typed getters that name the file and key in their errors.
class GGUFMetadata {
 public:
  void set(std::string key, GGUFValue v);  // replaces an existing key in place
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  const GGUFValue* find(std::string_view key) const;
  void erase(std::string_view key);
  const std::vector<std::pair<std::string, GGUFValue>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

  void set_source(std::string path) { source_ = std::move(path); }
  int64_t get_int(std::string_view key) const;
  int64_t get_int(std::string_view key, int64_t fallback) const;
  double get_float(std::string_view key) const;
  double get_float(std::string_view key, double fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;
  const std::string& get_string(std::string_view key) const;
  std::string get_string(std::string_view key, std::string_view fallback) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;
  std::vector<int32_t> get_int_array(std::string_view key) const;

 private:
  const GGUFValue& require(std::string_view key) const;
  std::string source_;
  std::vector<std::pair<std::string, GGUFValue>> entries_;
  std::unordered_map<std::string, size_t> index_;
};

struct GGUFTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // GGUF order: ne[0] is the fastest-varying (row length)
  DType type = DType::F32;
  uint64_t offset = 0;      // relative to the start of the data section
  size_t nbytes = 0;
};

class GGUFFile {
 public:
  // Parses and validates; throws qeval::Error "<path>: <problem>".
  static GGUFFile open(const std::string& path);

  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;
  GGUFMetadata metadata;
  std::vector<GGUFTensorInfo> tensor_infos;

  const std::string& path() const { return file_->path(); }
  size_t file_size() const { return file_->size(); }
  // The tensor in QEval's row-major view (shape = reversed ne), pointing into the mapping.
  Tensor tensor(size_t index) const;
  const GGUFTensorInfo* find_tensor(std::string_view name) const;

 private:
  friend GGUFFile parse_gguf(std::shared_ptr<const MappedFile> file);
  std::shared_ptr<const MappedFile> file_;
};

// Parse from memory (for fuzzing and tests); `label` names the buffer in errors.
GGUFFile parse_gguf(std::shared_ptr<const MappedFile> file);
void parse_gguf_buffer(const uint8_t* data, size_t size, const std::string& label, GGUFFile& out);

// Writer. Tensors are written in the order given, each aligned; metadata in insertion order.
// general.alignment from the metadata is honoured (default 32). Atomic: temp file + rename.
struct GGUFWriteTensor {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> shape;  // row-major (QEval order); written reversed as ne[]
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
};
void write_gguf(const std::string& path, const GGUFMetadata& metadata, const std::vector<GGUFWriteTensor>& tensors,
                uint32_t version = 3);

}  // namespace qeval
