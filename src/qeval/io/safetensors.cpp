#include "qeval/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "qeval/io/hf_config.h"
#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct DTypeName {
  DType type;
  std::string_view name;
};
constexpr DTypeName kNames[] = {
    {DType::F32, "F32"}, {DType::F16, "F16"}, {DType::BF16, "BF16"}, {DType::F64, "F64"}, {DType::I8, "I8"},
    {DType::U8, "U8"},   {DType::I16, "I16"}, {DType::I32, "I32"},   {DType::I64, "I64"},
};

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string json_type(const json& j) { return j.type_name(); }

// Parses the header, rejecting a tensor name that appears twice (nlohmann would keep the last).
json parse_header(const char* begin, const char* end, const std::string& path) {
  std::unordered_set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second) duplicate = key;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(begin, end, cb);
  } catch (const json::exception& e) {
    fail_file(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) fail_file(path, "duplicate tensor name '" + duplicate + "' in the header");
  if (!header.is_object()) fail_file(path, "header is not a JSON object (is " + json_type(header) + ")");
  return header;
}

uint64_t get_uint(const json& j, const std::string& path, const std::string& what) {
  if (!j.is_number_integer()) fail_file(path, what + " should be a non-negative integer, is " + json_type(j));
  if (!j.is_number_unsigned() && j.get<int64_t>() < 0)
    fail_file(path, what + " should be a non-negative integer, is " + std::to_string(j.get<int64_t>()));
  return j.get<uint64_t>();
}

}  // namespace

std::optional<DType> safetensors_dtype(std::string_view name) {
  for (const auto& n : kNames)
    if (n.name == name) return n.type;
  return std::nullopt;
}

std::optional<std::string_view> safetensors_dtype_name(DType t) {
  for (const auto& n : kNames)
    if (n.type == t) return n.name;
  return std::nullopt;
}

const Tensor* SafetensorsFile::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsFile parse_safetensors(std::shared_ptr<const MappedFile> file) {
  const std::string& path = file->path();
  const uint8_t* base = file->data();
  const uint64_t size = file->size();
  if (size < 8)
    fail_file(path, "truncated file: " + std::to_string(size) + " bytes, too short for a safetensors header");
  const uint64_t n = read_le64(base);
  if (n > kSafetensorsMaxHeader)
    fail_file(path, "absurd header length " + std::to_string(n) + " (limit " + std::to_string(kSafetensorsMaxHeader) +
                        "): not a safetensors file?");
  if (n > size - 8)
    fail_file(path, "header length " + std::to_string(n) + " exceeds the file size " + std::to_string(size) +
                        ": truncated or not a safetensors file");
  const char* hbeg = reinterpret_cast<const char*>(base + 8);
  if (n == 0 || hbeg[0] != '{') fail_file(path, "header is not a JSON object");
  const json header = parse_header(hbeg, hbeg + n, path);

  SafetensorsFile out;
  out.path = path;
  out.header_size = n;
  const uint64_t data_size = size - 8 - n;
  const uint8_t* data = base + 8 + n;

  struct Span {
    uint64_t b, e;
    size_t index;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (entry.is_null()) continue;
      if (!entry.is_object()) fail_file(path, "'__metadata__' should be an object, is " + json_type(entry));
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string())
          fail_file(path, "'__metadata__' entry '" + k + "' should be a string, is " + json_type(v));
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor '" + name + "'";
    if (!entry.is_object()) fail_file(path, what + ": entry should be an object, is " + json_type(entry));
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!entry.contains(key)) fail_file(path, what + ": missing '" + key + "'");
    const json& jd = entry["dtype"];
    if (!jd.is_string()) fail_file(path, what + ": 'dtype' should be a string, is " + json_type(jd));
    const auto dtype = safetensors_dtype(jd.get<std::string>());
    if (!dtype) fail_file(path, what + ": unsupported dtype '" + jd.get<std::string>() + "'");
    const json& js = entry["shape"];
    if (!js.is_array()) fail_file(path, what + ": 'shape' should be an array, is " + json_type(js));
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& d : js) {
      const uint64_t dim = get_uint(d, path, what + ": shape entry");
      if (dim > (uint64_t{1} << 48) || (dim != 0 && numel > (uint64_t{1} << 56) / dim))
        fail_file(path, what + ": absurd shape");
      numel *= dim;
      shape.push_back(static_cast<int64_t>(dim));
    }
    const json& jo = entry["data_offsets"];
    if (!jo.is_array() || jo.size() != 2)
      fail_file(path, what + ": 'data_offsets' should be an array of 2 integers");
    const uint64_t b = get_uint(jo[0], path, what + ": data offset");
    const uint64_t e = get_uint(jo[1], path, what + ": data offset");
    if (b > e) fail_file(path, what + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] are reversed");
    if (e > data_size)
      fail_file(path, what + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                          "] past the end of the data (" + std::to_string(data_size) + " bytes)");
    const uint64_t expect = numel * traits(*dtype).block_bytes;
    if (e - b != expect)
      fail_file(path, what + ": data_offsets span " + std::to_string(e - b) + " bytes, shape " + shape_string(shape) +
                          " of " + std::string(jd.get<std::string>()) + " needs " + std::to_string(expect));
    Tensor t;
    t.name = name;
    t.dtype = *dtype;
    t.shape = std::move(shape);
    t.data = data + b;
    t.nbytes = static_cast<size_t>(e - b);
    t.owner = file;
    spans.push_back({b, e, out.tensors.size()});
    out.tensors.push_back(std::move(t));
  }

  std::sort(spans.begin(), spans.end(), [](const Span& x, const Span& y) { return x.b != y.b ? x.b < y.b : x.e < y.e; });
  // Overlap check over non-empty spans; `last` is the span reaching furthest so far.
  const Span* last = nullptr;
  for (const Span& cur : spans) {
    if (cur.b == cur.e) continue;
    if (last != nullptr && cur.b < last->e)
      fail_file(path, "tensors '" + out.tensors[last->index].name + "' and '" + out.tensors[cur.index].name +
                          "' overlap (bytes " + std::to_string(cur.b) + ".." + std::to_string(std::min(last->e, cur.e)) +
                          ")");
    if (last == nullptr || cur.e > last->e) last = &cur;
  }
  std::vector<Tensor> ordered;
  ordered.reserve(spans.size());
  for (const auto& s : spans) ordered.push_back(std::move(out.tensors[s.index]));
  out.tensors = std::move(ordered);
  return out;
}

SafetensorsFile open_safetensors(const std::string& path) { return parse_safetensors(MappedFile::open(path)); }

SafetensorsCheckpoint open_safetensors_checkpoint(const std::string& path) {
  SafetensorsCheckpoint ck;
  auto add_file = [&](SafetensorsFile f) {
    for (const auto& t : f.tensors) {
      if (auto it = ck.where.find(t.name); it != ck.where.end())
        fail_file(f.path, "tensor '" + t.name + "' is also in " + it->second);
      ck.where[t.name] = f.path;
      ck.tensors[t.name] = t;
    }
    ck.files.push_back(std::move(f));
  };

  fs::path p(path);
  fs::path index;
  if (fs::is_directory(p)) {
    if (fs::exists(p / "model.safetensors")) {
      add_file(open_safetensors((p / "model.safetensors").string()));
      return ck;
    }
    if (!fs::exists(p / "model.safetensors.index.json")) {
      if (fs::exists(p / "pytorch_model.bin") || fs::exists(p / "pytorch_model.bin.index.json"))
        fail_file(path, "only PyTorch .bin weights found; QEval reads safetensors (convert with save_pretrained(safe_serialization=True))");
      fail_file(path, "no model.safetensors or model.safetensors.index.json");
    }
    index = p / "model.safetensors.index.json";
  } else if (p.extension() == ".json") {
    index = p;
  } else {
    add_file(open_safetensors(path));
    return ck;
  }

  const std::string ipath = index.string();
  const json j = read_json_file(ipath);
  if (!j.is_object() || !j.contains("weight_map")) fail_file(ipath, "missing 'weight_map'");
  const json& wm = j["weight_map"];
  if (!wm.is_object()) fail_file(ipath, "'weight_map' should be an object, is " + json_type(wm));
  std::vector<std::string> shards;
  std::map<std::string, std::string> listed;  // tensor -> shard
  for (const auto& [name, v] : wm.items()) {
    if (!v.is_string()) fail_file(ipath, "'weight_map' entry '" + name + "' should be a string, is " + json_type(v));
    const std::string shard = v.get<std::string>();
    const fs::path sp(shard);
    bool escapes = sp.is_absolute() || shard.empty();
    for (const auto& part : sp) escapes = escapes || part == "..";
    if (escapes) fail_file(ipath, "shard path '" + shard + "' leaves the checkpoint directory");
    if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
    listed[name] = shard;
  }
  if (shards.empty()) fail_file(ipath, "'weight_map' is empty");
  const fs::path dir = index.parent_path();
  std::map<std::string, std::string> shard_path;
  for (const auto& s : shards) {
    shard_path[s] = (dir / s).string();
    if (!fs::exists(dir / s)) fail_file(ipath, "shard '" + s + "' does not exist");
    add_file(open_safetensors((dir / s).string()));
  }
  for (const auto& [name, shard] : listed) {
    auto it = ck.where.find(name);
    if (it == ck.where.end() || it->second != shard_path[shard])
      fail_file(ipath, "tensor '" + name + "' is listed in shard '" + shard + "' but not found there");
  }
  return ck;
}

void write_safetensors(const std::string& path, const std::vector<Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json md = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) md[k] = v;
    header["__metadata__"] = std::move(md);
  }
  std::set<std::string> names;
  uint64_t off = 0;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") fail_file(path, "a tensor cannot be named '__metadata__'");
    if (!names.insert(t.name).second) fail_file(path, "duplicate tensor name '" + t.name + "'");
    const auto dname = safetensors_dtype_name(t.dtype);
    if (!dname)
      fail_file(path, "tensor '" + t.name + "': type " + std::string(dtype_name(t.dtype)) +
                          " cannot be stored in safetensors (dequantize it first)");
    for (auto d : t.shape)
      if (d < 0) fail_file(path, "tensor '" + t.name + "': negative dimension in shape " + shape_string(t.shape));
    const uint64_t expect = static_cast<uint64_t>(t.numel()) * traits(t.dtype).block_bytes;
    if (expect != t.nbytes)
      fail_file(path, "tensor '" + t.name + "': " + std::to_string(t.nbytes) + " bytes do not match shape " +
                          shape_string(t.shape) + " of " + std::string(*dname));
    if (!t.row_order.empty() && t.row_order.size() != static_cast<size_t>(t.rows()))
      fail_file(path, "tensor '" + t.name + "': row order has the wrong length");
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = *dname;
    e["shape"] = t.shape;
    e["data_offsets"] = {off, off + t.nbytes};
    header[t.name] = std::move(e);
    off += t.nbytes;
  }
  std::string hs;
  try {
    hs = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail_file(path, std::string("cannot encode the header: ") + e.what());
  }
  while (hs.size() % 8 != 0) hs.push_back(' ');

  AtomicFile f(path);
  uint8_t len[8];
  uint64_t n = hs.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  f.write(len, 8);
  f.write(hs);
  for (const auto& t : tensors) {
    if (t.row_order.empty() || t.nbytes == 0) {
      f.write(t.data, t.nbytes);
    } else {
      const size_t rb = t.bytes_per_row();
      for (int64_t r = 0; r < t.rows(); ++r) f.write(t.row_data(r), rb);
    }
  }
  f.commit();
}

}  // namespace qeval
