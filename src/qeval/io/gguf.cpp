#include "qeval/io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"

namespace qeval {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;              // ggml's GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 4;
constexpr uint64_t kMaxReserve = 1 << 16;  // elements reserved up front from a count in the file

size_t scalar_size(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::U8: case GGUFValueType::I8: case GGUFValueType::BOOL: return 1;
    case GGUFValueType::U16: case GGUFValueType::I16: return 2;
    case GGUFValueType::U32: case GGUFValueType::I32: case GGUFValueType::F32: return 4;
    case GGUFValueType::U64: case GGUFValueType::I64: case GGUFValueType::F64: return 8;
    default: return 0;
  }
}

// Bounds-checked little-endian reader over the mapped bytes.
class Cursor {
 public:
  Cursor(const uint8_t* d, size_t n, const std::string& label) : d_(d), n_(n), label_(label) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }
  [[noreturn]] void error(const std::string& what) const { fail_file(label_, what); }

  void need(size_t k, const char* what) const {
    if (k > remaining())
      error(std::string("truncated file: ") + what + " needs " + std::to_string(k) + " bytes at offset " +
            std::to_string(pos_) + ", " + std::to_string(remaining()) + " left");
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, d_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    const uint64_t len = get<uint64_t>(what);
    if (len > remaining())
      error(std::string("absurd string length ") + std::to_string(len) + " for " + what + " at offset " +
            std::to_string(pos_ - 8) + ", " + std::to_string(remaining()) + " bytes left (corrupt or truncated file)");
    std::string s(reinterpret_cast<const char*>(d_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& label_;
};

GGUFValue read_value(Cursor& c, GGUFValueType type, const std::string& key, int depth) {
  GGUFValue v;
  v.type = type;
  switch (type) {
    case GGUFValueType::U8: v.value = uint64_t{c.get<uint8_t>(key.c_str())}; break;
    case GGUFValueType::I8: v.value = int64_t{c.get<int8_t>(key.c_str())}; break;
    case GGUFValueType::U16: v.value = uint64_t{c.get<uint16_t>(key.c_str())}; break;
    case GGUFValueType::I16: v.value = int64_t{c.get<int16_t>(key.c_str())}; break;
    case GGUFValueType::U32: v.value = uint64_t{c.get<uint32_t>(key.c_str())}; break;
    case GGUFValueType::I32: v.value = int64_t{c.get<int32_t>(key.c_str())}; break;
    case GGUFValueType::U64: v.value = c.get<uint64_t>(key.c_str()); break;
    case GGUFValueType::I64: v.value = c.get<int64_t>(key.c_str()); break;
    case GGUFValueType::F32: v.value = double{c.get<float>(key.c_str())}; break;
    case GGUFValueType::F64: v.value = c.get<double>(key.c_str()); break;
    case GGUFValueType::BOOL: {
      const uint8_t b = c.get<uint8_t>(key.c_str());
      if (b > 1) c.error("metadata '" + key + "': invalid bool value " + std::to_string(b));
      v.value = b != 0;
      break;
    }
    case GGUFValueType::STRING: v.value = c.str(key.c_str()); break;
    case GGUFValueType::ARRAY: {
      if (depth >= kMaxArrayDepth) c.error("metadata '" + key + "': arrays nested too deeply");
      const uint32_t et = c.get<uint32_t>(key.c_str());
      if (et > static_cast<uint32_t>(GGUFValueType::F64))
        c.error("metadata '" + key + "': unknown array element type " + std::to_string(et));
      const uint64_t count = c.get<uint64_t>(key.c_str());
      const auto elem = static_cast<GGUFValueType>(et);
      // Every element takes at least 1 byte (strings and arrays at least 8), so a count larger
      // than the bytes left is impossible: reject it before allocating anything.
      const size_t min_size = scalar_size(elem) ? scalar_size(elem) : 8;
      if (count > c.remaining() / min_size)
        c.error("metadata '" + key + "': absurd array count " + std::to_string(count) + ", " +
                std::to_string(c.remaining()) + " bytes left (corrupt or truncated file)");
      GGUFArray arr;
      arr.elem = elem;
      // An element in memory is much larger than its smallest encoding: reserve a bounded
      // amount and let the vector grow only as elements are actually read.
      arr.items.reserve(static_cast<size_t>(std::min<uint64_t>(count, kMaxReserve)));
      for (uint64_t i = 0; i < count; ++i) arr.items.push_back(read_value(c, elem, key, depth + 1));
      v.value = std::move(arr);
      break;
    }
    default:
      c.error("metadata '" + key + "': unknown value type " + std::to_string(static_cast<uint32_t>(type)));
  }
  return v;
}

}  // namespace

std::string_view gguf_type_name(GGUFValueType t) {
  static constexpr std::string_view names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                               "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(names) ? names[i] : "?";
}

GGUFValue GGUFValue::string_array(const std::vector<std::string>& v) {
  std::vector<GGUFValue> items;
  items.reserve(v.size());
  for (const auto& s : v) items.push_back(str(s));
  return array(GGUFValueType::STRING, std::move(items));
}
GGUFValue GGUFValue::f32_array(const std::vector<float>& v) {
  std::vector<GGUFValue> items;
  items.reserve(v.size());
  for (float f : v) items.push_back(f32(f));
  return array(GGUFValueType::F32, std::move(items));
}
GGUFValue GGUFValue::i32_array(const std::vector<int32_t>& v) {
  std::vector<GGUFValue> items;
  items.reserve(v.size());
  for (int32_t x : v) items.push_back(i32(x));
  return array(GGUFValueType::I32, std::move(items));
}

bool GGUFValue::is_integer() const {
  switch (type) {
    case GGUFValueType::U8: case GGUFValueType::I8: case GGUFValueType::U16: case GGUFValueType::I16:
    case GGUFValueType::U32: case GGUFValueType::I32: case GGUFValueType::U64: case GGUFValueType::I64:
      return true;
    default:
      return false;
  }
}

std::string GGUFValue::to_display_string(size_t max_items) const {
  if (auto* u = std::get_if<uint64_t>(&value)) return std::to_string(*u);
  if (auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&value)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", *d);
    return buf;
  }
  if (auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  if (auto* s = std::get_if<std::string>(&value)) {
    std::string out = "\"";
    for (char ch : s->substr(0, 120)) out += (ch == '\n') ? std::string("\\n") : std::string(1, ch);
    if (s->size() > 120) out += "...";
    return out + "\"";
  }
  const auto& arr = std::get<GGUFArray>(value);
  std::string out = std::string(gguf_type_name(arr.elem)) + "[" + std::to_string(arr.items.size()) + "] [";
  for (size_t i = 0; i < arr.items.size() && i < max_items; ++i) {
    if (i) out += ", ";
    out += arr.items[i].to_display_string(max_items);
  }
  if (arr.items.size() > max_items) out += ", ...";
  return out + "]";
}

// ---- metadata ----

void GGUFMetadata::set(std::string key, GGUFValue v) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    entries_[it->second].second = std::move(v);
    return;
  }
  index_.emplace(key, entries_.size());
  entries_.emplace_back(std::move(key), std::move(v));
}

const GGUFValue* GGUFMetadata::find(std::string_view key) const {
  auto it = index_.find(std::string(key));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

void GGUFMetadata::erase(std::string_view key) {
  auto it = index_.find(std::string(key));
  if (it == index_.end()) return;
  entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
}

const GGUFValue& GGUFMetadata::require(std::string_view key) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) fail_file(source_, "missing metadata key '" + std::string(key) + "'");
  return *v;
}

int64_t GGUFMetadata::get_int(std::string_view key) const {
  const GGUFValue& v = require(key);
  if (auto* u = std::get_if<uint64_t>(&v.value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail_file(source_, "metadata '" + std::string(key) + "' is out of range");
    return static_cast<int64_t>(*u);
  }
  if (auto* i = std::get_if<int64_t>(&v.value)) return *i;
  fail_file(source_, "metadata '" + std::string(key) + "' should be an integer, is " + std::string(gguf_type_name(v.type)));
}
int64_t GGUFMetadata::get_int(std::string_view key, int64_t fallback) const {
  return contains(key) ? get_int(key) : fallback;
}
double GGUFMetadata::get_float(std::string_view key) const {
  const GGUFValue& v = require(key);
  if (auto* d = std::get_if<double>(&v.value)) return *d;
  if (v.is_integer()) return static_cast<double>(get_int(key));
  fail_file(source_, "metadata '" + std::string(key) + "' should be a number, is " + std::string(gguf_type_name(v.type)));
}
double GGUFMetadata::get_float(std::string_view key, double fallback) const {
  return contains(key) ? get_float(key) : fallback;
}
bool GGUFMetadata::get_bool(std::string_view key, bool fallback) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) return fallback;
  if (auto* b = std::get_if<bool>(&v->value)) return *b;
  fail_file(source_, "metadata '" + std::string(key) + "' should be a bool, is " + std::string(gguf_type_name(v->type)));
}
const std::string& GGUFMetadata::get_string(std::string_view key) const {
  const GGUFValue& v = require(key);
  if (auto* s = std::get_if<std::string>(&v.value)) return *s;
  fail_file(source_, "metadata '" + std::string(key) + "' should be a string, is " + std::string(gguf_type_name(v.type)));
}
std::string GGUFMetadata::get_string(std::string_view key, std::string_view fallback) const {
  return contains(key) ? get_string(key) : std::string(fallback);
}

namespace {
const GGUFArray& as_array(const GGUFValue& v, const std::string& source, std::string_view key) {
  if (auto* a = std::get_if<GGUFArray>(&v.value)) return *a;
  fail_file(source, "metadata '" + std::string(key) + "' should be an array, is " + std::string(gguf_type_name(v.type)));
}
}  // namespace

std::vector<std::string> GGUFMetadata::get_string_array(std::string_view key) const {
  const GGUFArray& a = as_array(require(key), source_, key);
  if (a.elem != GGUFValueType::STRING) fail_file(source_, "metadata '" + std::string(key) + "' should be an array of strings");
  std::vector<std::string> out;
  out.reserve(a.items.size());
  for (const auto& it : a.items) out.push_back(std::get<std::string>(it.value));
  return out;
}
std::vector<float> GGUFMetadata::get_float_array(std::string_view key) const {
  const GGUFArray& a = as_array(require(key), source_, key);
  std::vector<float> out;
  out.reserve(a.items.size());
  for (const auto& it : a.items) {
    if (auto* d = std::get_if<double>(&it.value)) out.push_back(static_cast<float>(*d));
    else fail_file(source_, "metadata '" + std::string(key) + "' should be an array of floats");
  }
  return out;
}
std::vector<int32_t> GGUFMetadata::get_int_array(std::string_view key) const {
  const GGUFArray& a = as_array(require(key), source_, key);
  std::vector<int32_t> out;
  out.reserve(a.items.size());
  for (const auto& it : a.items) {
    if (auto* u = std::get_if<uint64_t>(&it.value)) out.push_back(static_cast<int32_t>(*u));
    else if (auto* i = std::get_if<int64_t>(&it.value)) out.push_back(static_cast<int32_t>(*i));
    else fail_file(source_, "metadata '" + std::string(key) + "' should be an array of integers");
  }
  return out;
}

// ---- reader ----

void parse_gguf_buffer(const uint8_t* data, size_t size, const std::string& label, GGUFFile& out) {
  Cursor c(data, size, label);
  if (size < 4) c.error("truncated file: too short for a GGUF header");
  const uint32_t magic = c.get<uint32_t>("magic");
  if (magic != kMagic) c.error("wrong magic: not a GGUF file");
  out.version = c.get<uint32_t>("version");
  if (out.version == 1) c.error("unsupported GGUF version 1 (only v2 and v3 are read)");
  if (out.version != 2 && out.version != 3) {
    if (out.version == 0x02000000u || out.version == 0x03000000u) c.error("big-endian GGUF is not supported");
    c.error("unsupported GGUF version " + std::to_string(out.version));
  }
  const uint64_t n_tensors = c.get<uint64_t>("tensor count");
  const uint64_t n_kv = c.get<uint64_t>("metadata count");
  // Each KV needs >= 12 bytes, each tensor info >= 24: absurd counts fail before allocation.
  const std::string left = ", " + std::to_string(c.remaining()) + " bytes left (corrupt or truncated file)";
  if (n_kv > c.remaining() / 12) c.error("absurd metadata count " + std::to_string(n_kv) + left);
  if (n_tensors > c.remaining() / 24) c.error("absurd tensor count " + std::to_string(n_tensors) + left);

  out.metadata = GGUFMetadata();
  out.metadata.set_source(label);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str("metadata key");
    const uint32_t t = c.get<uint32_t>("metadata type");
    if (t > static_cast<uint32_t>(GGUFValueType::F64))
      c.error("metadata '" + key + "': unknown value type " + std::to_string(t));
    if (out.metadata.contains(key)) c.error("duplicate metadata key '" + key + "'");
    GGUFValue v = read_value(c, static_cast<GGUFValueType>(t), key, 0);
    out.metadata.set(std::move(key), std::move(v));
  }

  out.alignment = 32;
  if (const GGUFValue* a = out.metadata.find("general.alignment")) {
    if (!a->is_integer()) c.error("general.alignment is not an integer");
    const int64_t al = out.metadata.get_int("general.alignment");
    if (al <= 0 || (al & (al - 1)) != 0 || al > (1 << 20)) c.error("invalid general.alignment " + std::to_string(al));
    out.alignment = static_cast<uint64_t>(al);
  }

  out.tensor_infos.clear();
  out.tensor_infos.reserve(static_cast<size_t>(std::min<uint64_t>(n_tensors, kMaxReserve)));
  std::unordered_set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GGUFTensorInfo ti;
    ti.name = c.str("tensor name");
    if (!names.insert(ti.name).second) c.error("duplicate tensor name '" + ti.name + "'");
    const uint32_t n_dims = c.get<uint32_t>("tensor dims");
    if (n_dims == 0 || n_dims > kMaxDims) c.error("tensor '" + ti.name + "': invalid dimension count " + std::to_string(n_dims));
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.get<uint64_t>("tensor shape");
      if (ne > (uint64_t{1} << 40) || (ne != 0 && static_cast<uint64_t>(numel) > (uint64_t{1} << 50) / ne))
        c.error("tensor '" + ti.name + "': absurd shape");
      ti.ne.push_back(static_cast<int64_t>(ne));
      numel *= static_cast<int64_t>(ne);
    }
    const uint32_t type = c.get<uint32_t>("tensor type");
    const auto tr = dtype_traits(type);
    if (!tr) c.error("tensor '" + ti.name + "': unknown tensor type " + std::to_string(type));
    ti.type = tr->type;
    ti.offset = c.get<uint64_t>("tensor offset");
    if (ti.ne[0] % tr->block_elems != 0)
      c.error("tensor '" + ti.name + "': row length " + std::to_string(ti.ne[0]) + " is not a multiple of the " +
              std::string(tr->name) + " block size " + std::to_string(tr->block_elems));
    ti.nbytes = static_cast<size_t>(numel / tr->block_elems) * tr->block_bytes;
    if (ti.offset % out.alignment != 0)
      c.error("tensor '" + ti.name + "': data offset " + std::to_string(ti.offset) + " is not aligned to " +
              std::to_string(out.alignment));
    out.tensor_infos.push_back(std::move(ti));
  }

  const uint64_t pos = c.pos();
  out.data_offset = (pos + out.alignment - 1) / out.alignment * out.alignment;
  for (const auto& ti : out.tensor_infos) {
    if (ti.offset > size || out.data_offset > size - ti.offset || ti.nbytes > size - out.data_offset - ti.offset)
      c.error("tensor '" + ti.name + "': data past end of file (needs bytes up to " +
              std::to_string(out.data_offset + ti.offset + ti.nbytes) + ", file has " + std::to_string(size) + ")");
  }
}

GGUFFile parse_gguf(std::shared_ptr<const MappedFile> file) {
  GGUFFile out;
  parse_gguf_buffer(file->data(), file->size(), file->path(), out);
  out.file_ = std::move(file);
  return out;
}

GGUFFile GGUFFile::open(const std::string& path) { return parse_gguf(MappedFile::open(path)); }

Tensor GGUFFile::tensor(size_t index) const {
  const GGUFTensorInfo& ti = tensor_infos.at(index);
  Tensor t;
  t.name = ti.name;
  t.dtype = ti.type;
  t.shape.assign(ti.ne.rbegin(), ti.ne.rend());
  t.data = file_->data() + data_offset + ti.offset;
  t.nbytes = ti.nbytes;
  t.owner = file_;
  return t;
}

const GGUFTensorInfo* GGUFFile::find_tensor(std::string_view name) const {
  for (const auto& ti : tensor_infos)
    if (ti.name == name) return &ti;
  return nullptr;
}

// ---- writer ----

namespace {

class Out {
 public:
  explicit Out(AtomicFile& f) : f_(f) {}
  template <typename T>
  void put(T v) { f_.write(&v, sizeof v); }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    f_.write(s.data(), s.size());
  }
  void value(const GGUFValue& v) {
    switch (v.type) {
      case GGUFValueType::U8: put<uint8_t>(static_cast<uint8_t>(uint_of(v))); break;
      case GGUFValueType::I8: put<int8_t>(static_cast<int8_t>(int_of(v))); break;
      case GGUFValueType::U16: put<uint16_t>(static_cast<uint16_t>(uint_of(v))); break;
      case GGUFValueType::I16: put<int16_t>(static_cast<int16_t>(int_of(v))); break;
      case GGUFValueType::U32: put<uint32_t>(static_cast<uint32_t>(uint_of(v))); break;
      case GGUFValueType::I32: put<int32_t>(static_cast<int32_t>(int_of(v))); break;
      case GGUFValueType::U64: put<uint64_t>(uint_of(v)); break;
      case GGUFValueType::I64: put<int64_t>(int_of(v)); break;
      case GGUFValueType::F32: put<float>(static_cast<float>(std::get<double>(v.value))); break;
      case GGUFValueType::F64: put<double>(std::get<double>(v.value)); break;
      case GGUFValueType::BOOL: put<uint8_t>(std::get<bool>(v.value) ? 1 : 0); break;
      case GGUFValueType::STRING: str(std::get<std::string>(v.value)); break;
      case GGUFValueType::ARRAY: {
        const auto& a = std::get<GGUFArray>(v.value);
        put<uint32_t>(static_cast<uint32_t>(a.elem));
        put<uint64_t>(a.items.size());
        for (const auto& it : a.items) value(it);
        break;
      }
    }
  }

 private:
  static uint64_t uint_of(const GGUFValue& v) {
    if (auto* u = std::get_if<uint64_t>(&v.value)) return *u;
    return static_cast<uint64_t>(std::get<int64_t>(v.value));
  }
  static int64_t int_of(const GGUFValue& v) {
    if (auto* i = std::get_if<int64_t>(&v.value)) return *i;
    return static_cast<int64_t>(std::get<uint64_t>(v.value));
  }
  AtomicFile& f_;
};

// The value holds what its declared type says (array items: the array's element type).
void check_value(const std::string& path, const std::string& key, const GGUFValue& v, int depth) {
  bool ok = false;
  switch (v.type) {
    case GGUFValueType::U8: case GGUFValueType::U16: case GGUFValueType::U32: case GGUFValueType::U64:
    case GGUFValueType::I8: case GGUFValueType::I16: case GGUFValueType::I32: case GGUFValueType::I64:
      ok = std::holds_alternative<uint64_t>(v.value) || std::holds_alternative<int64_t>(v.value);
      break;
    case GGUFValueType::F32: case GGUFValueType::F64: ok = std::holds_alternative<double>(v.value); break;
    case GGUFValueType::BOOL: ok = std::holds_alternative<bool>(v.value); break;
    case GGUFValueType::STRING: ok = std::holds_alternative<std::string>(v.value); break;
    case GGUFValueType::ARRAY: ok = std::holds_alternative<GGUFArray>(v.value); break;
  }
  if (!ok) fail_file(path, "metadata '" + key + "': value does not hold a " + std::string(gguf_type_name(v.type)));
  if (const auto* a = std::get_if<GGUFArray>(&v.value)) {
    if (depth >= kMaxArrayDepth) fail_file(path, "metadata '" + key + "': arrays nested too deeply");
    for (const auto& it : a->items) {
      if (it.type != a->elem)
        fail_file(path, "metadata '" + key + "': array of " + std::string(gguf_type_name(a->elem)) + " holds a " +
                            std::string(gguf_type_name(it.type)));
      check_value(path, key, it, depth + 1);
    }
  }
}

}  // namespace

void write_gguf(const std::string& path, const GGUFMetadata& metadata, const std::vector<GGUFWriteTensor>& tensors,
                uint32_t version) {
  // Everything is checked before the output is created, so that what is written reads back.
  if (version != 2 && version != 3) fail_file(path, "can only write GGUF version 2 or 3, not " + std::to_string(version));
  for (const auto& [k, v] : metadata.entries()) check_value(path, k, v, 0);
  uint64_t alignment = 32;
  if (const GGUFValue* a = metadata.find("general.alignment"); a != nullptr && a->is_integer()) {
    const int64_t al = metadata.get_int("general.alignment");
    if (al <= 0 || (al & (al - 1)) != 0 || al > (1 << 20))
      fail_file(path, "invalid general.alignment " + std::to_string(al) + " (must be a power of two up to 2^20)");
    alignment = static_cast<uint64_t>(al);
  }
  std::vector<uint64_t> offsets;
  uint64_t off = 0;
  std::unordered_set<std::string_view> names;
  for (const auto& t : tensors) {
    if (t.shape.empty() || t.shape.size() > static_cast<size_t>(kMaxDims))
      fail_file(path, "tensor '" + t.name + "': a GGUF tensor has 1 to " + std::to_string(kMaxDims) + " dimensions, not " +
                          std::to_string(t.shape.size()));
    if (!dtype_traits(static_cast<uint32_t>(t.type)))
      fail_file(path, "tensor '" + t.name + "': type " + std::string(dtype_name(t.type)) + " cannot be stored in GGUF");
    if (!names.insert(t.name).second) fail_file(path, "duplicate tensor name '" + t.name + "'");
    int64_t n = 1;
    for (auto d : t.shape) {
      if (d < 0) fail_file(path, "tensor '" + t.name + "': negative dimension " + std::to_string(d));
      n *= d;
    }
    const auto rb = row_bytes(t.type, t.shape.empty() ? 1 : t.shape.back());
    if (!rb) fail_file(path, "tensor '" + t.name + "': row length is not a multiple of the block size");
    const size_t expect = t.shape.empty() ? *rb : *rb * static_cast<size_t>(n / t.shape.back());
    if (expect != t.nbytes) fail_file(path, "tensor '" + t.name + "': byte size does not match shape and type");
    offsets.push_back(off);
    off = (off + t.nbytes + alignment - 1) / alignment * alignment;
  }

  AtomicFile f(path);
  Out o(f);
  o.put<uint32_t>(kMagic);
  o.put<uint32_t>(version);
  o.put<uint64_t>(tensors.size());
  o.put<uint64_t>(metadata.size());
  for (const auto& [k, v] : metadata.entries()) {
    o.str(k);
    o.put<uint32_t>(static_cast<uint32_t>(v.type));
    o.value(v);
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    o.str(t.name);
    o.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) o.put<uint64_t>(static_cast<uint64_t>(*it));
    o.put<uint32_t>(static_cast<uint32_t>(t.type));
    o.put<uint64_t>(offsets[i]);
  }
  // A metadata-only file ends right after the header (as gguf-py writes vocabulary files).
  if (!tensors.empty()) {
    const uint64_t data_start = (f.offset() + alignment - 1) / alignment * alignment;
    f.pad_to(data_start);
    for (size_t i = 0; i < tensors.size(); ++i) {
      f.pad_to(data_start + offsets[i]);
      f.write(tensors[i].data, tensors[i].nbytes);
    }
    f.pad_to((f.offset() + alignment - 1) / alignment * alignment);
  }
  f.commit();
}

}  // namespace qeval
