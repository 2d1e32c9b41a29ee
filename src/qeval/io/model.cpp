#include "qeval/io/model.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "qeval/io/architectures.h"
#include "qeval/io/hf_config.h"
#include "qeval/io/safetensors.h"
#include "qeval/util/error.h"
#include "qeval/util/log.h"
#include "qeval/util/mapped_file.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Rows [begin, begin+count) of dim 0 of t, pointing into t's bytes (no copy).
Tensor slice_dim0(const Tensor& t, int64_t begin, int64_t count, std::string name) {
  const size_t stride = t.shape.size() == 1 ? traits(t.dtype).block_bytes : t.nbytes / static_cast<size_t>(t.shape[0]);
  Tensor s = t;
  s.name = std::move(name);
  s.shape[0] = count;
  s.data = t.data + static_cast<size_t>(begin) * stride;
  s.nbytes = static_cast<size_t>(count) * stride;
  s.row_order.clear();
  return s;
}

// [a, b] -> [b, a] in an owned buffer of the same element type.
Tensor transpose2d(const Tensor& t, std::string name) {
  const size_t es = traits(t.dtype).block_bytes;
  const auto a = static_cast<size_t>(t.shape[0]);
  const auto b = static_cast<size_t>(t.shape[1]);
  std::vector<uint8_t> out(t.nbytes);
  for (size_t i = 0; i < a; ++i)
    for (size_t j = 0; j < b; ++j) std::memcpy(out.data() + (j * a + i) * es, t.data + (i * b + j) * es, es);
  return Tensor::from_bytes(std::move(name), t.dtype, {t.shape[1], t.shape[0]}, std::move(out));
}

// A 1-D tensor with its elements reordered (logical i <- physical order[i]), owned.
Tensor permute_1d(const Tensor& t, const std::vector<int32_t>& order) {
  const size_t es = traits(t.dtype).block_bytes;
  std::vector<uint8_t> out(t.nbytes);
  for (size_t i = 0; i < order.size(); ++i)
    std::memcpy(out.data() + i * es, t.data + static_cast<size_t>(order[i]) * es, es);
  return Tensor::from_bytes(t.name, t.dtype, t.shape, std::move(out));
}

std::vector<int64_t> stacked_shape(const std::vector<ExpectedTensor>& parts) {
  std::vector<int64_t> s = parts.front().shape;
  s[0] = 0;
  for (const auto& p : parts) s[0] += p.shape[0];
  return s;
}

void alias_output(Model& m) {
  Tensor o = m.tensors.at("token_embd.weight");
  o.name = "output.weight";
  m.tensors["output.weight"] = std::move(o);
  m.config.tied_embeddings = true;
}

// Every expected tensor present with its shape; `what` says where the shape comes from.
void validate(const Model& m, const std::vector<ExpectedTensor>& expected, const std::string& what) {
  for (const auto& e : expected) {
    auto it = m.tensors.find(e.name);
    if (it == m.tensors.end()) fail_file(m.path, "missing tensor '" + e.name + "'");
    if (it->second.shape != e.shape) {
      auto src = m.source_names.find(e.name);
      const std::string name = src == m.source_names.end() ? e.name : src->second + "' (as '" + e.name;
      fail_file(m.path, "tensor '" + name + "' has shape " + shape_string(it->second.shape) + ", " + what +
                            " implies " + shape_string(e.shape));
    }
  }
}

void apply_finite_check(const Model& m, const LoadOptions& opt) {
  if (opt.check_finite == LoadOptions::FiniteCheck::Never) return;
  if (opt.check_finite == LoadOptions::FiniteCheck::Auto) {
    size_t total = 0;
    for (const auto& [name, t] : m.tensors)
      if (t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16) total += t.nbytes;
    if (total > opt.finite_check_max_bytes) {
      info(m.path + ": skipping the NaN/Inf scan of " + std::to_string(total >> 20) + " MiB of float weights");
      return;
    }
  }
  check_finite(m);
}

// ---------------- HF tokenizer settings -> GGUF keys ----------------

// Minimal protobuf reader for SentencePiece's ModelProto: pieces (field 1) with piece (1),
// score (2, float) and type (3, enum; NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5
// BYTE=6, the same numbers as GGUF's token types).
class Proto {
 public:
  Proto(const uint8_t* p, size_t n, const std::string& path) : p_(p), end_(p + n), path_(path) {}
  bool done() const { return p_ >= end_; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) bad();
      const uint8_t b = *p_++;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    bad();
  }
  Proto bytes() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end_ - p_)) bad();
    Proto sub(p_, static_cast<size_t>(n), path_);
    p_ += n;
    return sub;
  }
  uint32_t fixed32() {
    if (end_ - p_ < 4) bad();
    uint32_t v;
    std::memcpy(&v, p_, 4);
    p_ += 4;
    return v;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: if (end_ - p_ < 8) bad(); p_ += 8; break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: bad();
    }
  }
  std::string str() const { return std::string(reinterpret_cast<const char*>(p_), static_cast<size_t>(end_ - p_)); }
  [[noreturn]] void bad() const { fail_file(path_, "not a valid SentencePiece model (bad protobuf)"); }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  const std::string& path_;
};

void spm_to_metadata(const std::string& path, GGUFMetadata& md) {
  auto file = MappedFile::open(path);
  Proto top(file->data(), file->size(), path);
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  while (!top.done()) {
    const uint64_t tag = top.varint();
    if ((tag >> 3) != 1 || (tag & 7) != 2) {
      top.skip(static_cast<uint32_t>(tag & 7));
      continue;
    }
    Proto piece = top.bytes();
    std::string text;
    float score = 0;
    int32_t type = 1;
    while (!piece.done()) {
      const uint64_t t = piece.varint();
      const uint64_t field = t >> 3;
      const auto wire = static_cast<uint32_t>(t & 7);
      if (field == 1 && wire == 2) text = piece.bytes().str();
      else if (field == 2 && wire == 5) { const uint32_t u = piece.fixed32(); std::memcpy(&score, &u, 4); }
      else if (field == 3 && wire == 0) type = static_cast<int32_t>(piece.varint());
      else piece.skip(wire);
    }
    tokens.push_back(std::move(text));
    scores.push_back(score);
    types.push_back(type);
  }
  if (tokens.empty()) fail_file(path, "SentencePiece model has no pieces");
  md.set("tokenizer.ggml.model", GGUFValue::str("llama"));
  md.set("tokenizer.ggml.tokens", GGUFValue::string_array(tokens));
  md.set("tokenizer.ggml.scores", GGUFValue::f32_array(scores));
  md.set("tokenizer.ggml.token_type", GGUFValue::i32_array(types));
  for (size_t i = 0; i < types.size(); ++i)
    if (types[i] == 2) {
      md.set("tokenizer.ggml.unknown_token_id", GGUFValue::u32(static_cast<uint32_t>(i)));
      break;
    }
}

// Byte-level BPE from tokenizer.json -> tokenizer.ggml.model "gpt2" (as llama.cpp's converter).
void bpe_json_to_metadata(const std::string& path, const ModelConfig& c, GGUFMetadata& md) {
  const json j = read_json_file(path);
  const json* model = j.is_object() && j.contains("model") ? &j["model"] : nullptr;
  if (model == nullptr || !model->is_object() || model->value("type", "") != "BPE" || !model->contains("vocab") ||
      !(*model)["vocab"].is_object()) {
    info(path + ": not a BPE tokenizer.json; tokenizer not mapped to GGUF keys");
    return;
  }
  std::map<int64_t, std::pair<std::string, int32_t>> by_id;  // id -> (text, type)
  for (const auto& [tok, id] : (*model)["vocab"].items())
    if (id.is_number_integer()) by_id[id.get<int64_t>()] = {tok, 1};
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const auto& a : j["added_tokens"])
      if (a.is_object() && a.contains("id") && a["id"].is_number_integer() && a.contains("content") && a["content"].is_string())
        by_id[a["id"].get<int64_t>()] = {a["content"].get<std::string>(), a.value("special", false) ? 3 : 4};
  if (by_id.empty() || by_id.begin()->first < 0) fail_file(path, "bad vocabulary ids");
  const int64_t n = std::max<int64_t>(by_id.rbegin()->first + 1, c.vocab_size);
  if (n > (int64_t{1} << 24)) fail_file(path, "absurd vocabulary size");
  std::vector<std::string> tokens(static_cast<size_t>(n));
  std::vector<int32_t> types(static_cast<size_t>(n), 5);
  for (int64_t i = 0; i < n; ++i) tokens[static_cast<size_t>(i)] = "[PAD" + std::to_string(i) + "]";
  for (const auto& [id, tt] : by_id) {
    tokens[static_cast<size_t>(id)] = tt.first;
    types[static_cast<size_t>(id)] = tt.second;
  }
  std::vector<std::string> merges;
  if (model->contains("merges") && (*model)["merges"].is_array())
    for (const auto& m : (*model)["merges"]) {
      if (m.is_string()) merges.push_back(m.get<std::string>());
      else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
        merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    }
  md.set("tokenizer.ggml.model", GGUFValue::str("gpt2"));
  // llama.cpp picks its pre-tokenizer regex by this name; guessed from the architecture.
  const std::string pre = c.architecture == "gpt2" ? "gpt-2" : (c.architecture.rfind("qwen", 0) == 0 ? "qwen2" : "llama-bpe");
  md.set("tokenizer.ggml.pre", GGUFValue::str(pre));
  md.set("tokenizer.ggml.tokens", GGUFValue::string_array(tokens));
  md.set("tokenizer.ggml.token_type", GGUFValue::i32_array(types));
  md.set("tokenizer.ggml.merges", GGUFValue::string_array(merges));
}

std::optional<int64_t> token_id(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return std::nullopt;
  const json& v = j[key];
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return v.get<int64_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer() && v[0].get<int64_t>() >= 0) return v[0].get<int64_t>();
  return std::nullopt;
}

void hf_metadata(Model& m, const json& config_json) {
  const fs::path dir(m.path);
  GGUFMetadata& md = m.metadata;
  md.set_source(m.path);
  config_to_gguf_metadata(m.config, md);
  std::string name = fs::path(m.path).lexically_normal().filename().string();
  if (name.empty()) name = fs::path(m.path).lexically_normal().parent_path().filename().string();
  md.set("general.name", GGUFValue::str(name));
  try {
    if (fs::exists(dir / "tokenizer.model")) spm_to_metadata((dir / "tokenizer.model").string(), md);
    else if (fs::exists(dir / "tokenizer.json")) bpe_json_to_metadata((dir / "tokenizer.json").string(), m.config, md);
  } catch (const Error& e) {
    warn(std::string(e.what()) + " (tokenizer not mapped to GGUF keys)");
  }
  json gen;
  if (fs::exists(dir / "generation_config.json")) {
    try {
      gen = read_json_file((dir / "generation_config.json").string());
    } catch (const Error& e) {
      warn(e.what());
    }
  }
  auto id = [&](const char* key) { auto v = token_id(config_json, key); return v ? v : token_id(gen, key); };
  if (auto v = id("bos_token_id")) md.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(static_cast<uint32_t>(*v)));
  if (auto v = id("eos_token_id")) md.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(static_cast<uint32_t>(*v)));
  if (auto v = id("pad_token_id")) md.set("tokenizer.ggml.padding_token_id", GGUFValue::u32(static_cast<uint32_t>(*v)));
  if (fs::exists(dir / "tokenizer_config.json")) {
    try {
      const json tc = read_json_file((dir / "tokenizer_config.json").string());
      if (tc.is_object()) {
        if (tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean())
          md.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(tc["add_bos_token"].get<bool>()));
        if (tc.contains("add_eos_token") && tc["add_eos_token"].is_boolean())
          md.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(tc["add_eos_token"].get<bool>()));
        if (tc.contains("chat_template") && tc["chat_template"].is_string())
          md.set("tokenizer.chat_template", GGUFValue::str(tc["chat_template"].get<std::string>()));
      }
    } catch (const Error& e) {
      warn(e.what());
    }
  }
}

// ---------------- loaders ----------------

Model load_hf(const std::string& path) {
  Model m;
  m.path = path;
  m.format = ModelFormat::HFDirectory;
  const fs::path dir(path);
  const fs::path cfg = dir / "config.json";
  if (!fs::exists(cfg))
    fail_file(path, "no config.json (an HF model directory needs config.json and model.safetensors)");
  const json cj = read_json_file(cfg.string());
  m.config = config_from_hf_json(cj, cfg.string());
  const ArchitectureInfo& arch = architecture(m.config);
  SafetensorsCheckpoint ck = open_safetensors_checkpoint(path);

  auto lookup = [&](const std::string& name) -> std::pair<const Tensor*, std::string> {
    for (auto prefix : arch.hf_prefixes) {
      const std::string full = std::string(prefix) + name;
      if (auto it = ck.tensors.find(full); it != ck.tensors.end()) return {&it->second, full};
    }
    return {nullptr, name};
  };
  const std::vector<ExpectedTensor> expected = expected_tensors(m.config);
  std::unordered_map<std::string, const ExpectedTensor*> by_name;
  for (const auto& e : expected) by_name[e.name] = &e;

  std::unordered_set<std::string> used;
  for (const HFTensorRule& rule : arch.hf_tensors) {
    const bool per_layer = role_info(rule.roles.front()).per_layer;
    for (int64_t l = per_layer ? 0 : -1; l < (per_layer ? m.config.n_layers : 0); ++l) {
      std::vector<ExpectedTensor> parts;
      for (TensorRole r : rule.roles)
        if (auto it = by_name.find(canonical_name(r, l)); it != by_name.end()) parts.push_back(*it->second);
      if (parts.empty()) continue;
      if (parts.size() != rule.roles.size()) fail("internal error: partial HF tensor rule " + std::string(rule.hf_name));
      const auto [t, hf_name] = lookup(hf_tensor_name(rule.hf_name, l));
      if (t != nullptr) used.insert(hf_name);
      if (rule.roles.size() == 1 && rule.roles[0] == TensorRole::Output && m.config.tied_embeddings) continue;
      if (t == nullptr) fail_file(path, "missing tensor '" + hf_name + "'");
      std::vector<int64_t> want = stacked_shape(parts);
      const bool conv = rule.layout == HFLayout::Conv1D && want.size() == 2;
      if (conv) std::swap(want[0], want[1]);
      if (t->shape != want)
        fail_file(path, "tensor '" + hf_name + "' has shape " + shape_string(t->shape) + ", config.json implies " +
                            shape_string(want));
      if (is_block_quantized(t->dtype)) fail_file(path, "tensor '" + hf_name + "': block-quantized type in safetensors");
      const Tensor src = conv ? transpose2d(*t, hf_name) : *t;
      int64_t row = 0;
      for (const auto& p : parts) {
        m.tensors[p.name] = parts.size() == 1 ? slice_dim0(src, 0, p.shape[0], p.name) : slice_dim0(src, row, p.shape[0], p.name);
        m.source_names[p.name] = hf_name;
        row += p.shape[0];
      }
    }
  }
  if (m.config.tied_embeddings) alias_output(m);
  validate(m, expected, "config.json");

  std::vector<std::string> unused;
  for (const auto& [name, t] : ck.tensors) {
    if (used.count(name)) continue;
    bool ignorable = false;
    for (auto suf : arch.hf_ignored_suffixes)
      ignorable = ignorable || (name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0);
    if (!ignorable) unused.push_back(name);
  }
  if (!unused.empty()) {
    std::string list;
    for (size_t i = 0; i < unused.size() && i < 5; ++i) list += (i ? ", " : "") + unused[i];
    if (unused.size() > 5) list += ", ...";
    warn(path + ": ignoring " + std::to_string(unused.size()) + " tensor(s) that " + m.config.architecture +
         " with this config.json does not use: " + list);
  }
  hf_metadata(m, cj);
  return m;
}

Model load_gguf(const std::string& path) {
  GGUFFile f = GGUFFile::open(path);
  Model m;
  m.path = path;
  m.format = ModelFormat::GGUF;
  m.config = config_from_gguf(f.metadata, f.tensor_infos, path);
  m.metadata = f.metadata;
  const ArchitectureInfo& arch = architecture(m.config);
  const std::vector<ExpectedTensor> expected = expected_tensors(m.config);
  std::unordered_map<std::string, const ExpectedTensor*> by_name;
  for (const auto& e : expected) by_name[e.name] = &e;

  for (size_t i = 0; i < f.tensor_infos.size(); ++i) {
    Tensor t = f.tensor(i);
    const GGUFFusedRule* fused = nullptr;
    int64_t layer = -1;
    for (const auto& rule : arch.gguf_fused) {
      const std::string& n = t.name;
      if (n.rfind("blk.", 0) != 0 || n.size() <= rule.suffix.size() ||
          n.compare(n.size() - rule.suffix.size(), rule.suffix.size(), rule.suffix) != 0)
        continue;
      const std::string mid = n.substr(4, n.size() - 4 - rule.suffix.size());  // "<layer>."
      if (mid.size() < 2 || mid.back() != '.' || mid.find_first_not_of("0123456789") != mid.size() - 1) continue;
      fused = &rule;
      layer = std::stoll(mid.substr(0, mid.size() - 1));
    }
    if (fused == nullptr) {
      m.tensors[t.name] = std::move(t);
      continue;
    }
    std::vector<ExpectedTensor> parts;
    for (TensorRole r : fused->roles)
      if (auto it = by_name.find(canonical_name(r, layer)); it != by_name.end()) parts.push_back(*it->second);
    if (parts.size() != fused->roles.size()) fail_file(path, "unexpected tensor '" + t.name + "'");
    const std::vector<int64_t> want = stacked_shape(parts);
    if (t.shape != want)
      fail_file(path, "tensor '" + t.name + "' has shape " + shape_string(t.shape) + ", the metadata implies " +
                          shape_string(want));
    int64_t row = 0;
    for (const auto& p : parts) {
      m.tensors[p.name] = slice_dim0(t, row, p.shape[0], p.name);
      m.source_names[p.name] = t.name;
      row += p.shape[0];
    }
  }
  if (m.config.tied_embeddings) {
    if (!m.tensors.count("token_embd.weight")) fail_file(path, "missing tensor 'token_embd.weight'");
    alias_output(m);
  }
  validate(m, expected, "the metadata");

  if (arch.gguf_interleaved_rope) {
    const auto q_order = interleaved_rotary_rows(m.config.n_heads, m.config.head_dim);
    const auto k_order = interleaved_rotary_rows(m.config.n_kv_heads, m.config.head_dim);
    for (int64_t l = 0; l < m.config.n_layers; ++l) {
      m.tensors.at(layer_tensor(l, "attn_q.weight")).row_order = q_order;
      m.tensors.at(layer_tensor(l, "attn_k.weight")).row_order = k_order;
      if (auto it = m.tensors.find(layer_tensor(l, "attn_q.bias")); it != m.tensors.end()) it->second = permute_1d(it->second, q_order);
      if (auto it = m.tensors.find(layer_tensor(l, "attn_k.bias")); it != m.tensors.end()) it->second = permute_1d(it->second, k_order);
    }
  }
  return m;
}

bool nonfinite_f32(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t x;
    std::memcpy(&x, p + 4 * i, 4);
    if ((x & 0x7F800000u) == 0x7F800000u) return true;
  }
  return false;
}
bool nonfinite_16(const uint8_t* p, size_t n, uint16_t exp_mask) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t x;
    std::memcpy(&x, p + 2 * i, 2);
    if ((x & exp_mask) == exp_mask) return true;
  }
  return false;
}

}  // namespace

std::string layer_tensor(int64_t layer, const std::string& suffix) {
  return "blk." + std::to_string(layer) + "." + suffix;
}

const Tensor& Model::tensor(const std::string& name) const {
  const Tensor* t = find(name);
  if (t == nullptr) fail_file(path, "no tensor '" + name + "'");
  return *t;
}

const Tensor* Model::find(const std::string& name) const {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

bool Model::is_alias(const std::string& name) const {
  if (name != "output.weight") return false;
  const Tensor* o = find("output.weight");
  const Tensor* e = find("token_embd.weight");
  return o != nullptr && e != nullptr && o->data == e->data && o->dtype == e->dtype;
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, t] : tensors)
    if (!is_alias(name)) n += t.numel();
  return n;
}

std::vector<int32_t> interleaved_rotary_rows(int64_t n_heads, int64_t head_dim) {
  if (head_dim % 2 != 0) fail("rotary permutation needs an even head size, got " + std::to_string(head_dim));
  std::vector<int32_t> order(static_cast<size_t>(n_heads * head_dim));
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t j = 0; j < half; ++j)
        order[static_cast<size_t>(h * head_dim + c * half + j)] = static_cast<int32_t>(h * head_dim + 2 * j + c);
  return order;
}

std::vector<std::string> check_finite(const Model& model) {
  std::vector<std::string> bad;
  std::set<const uint8_t*> seen;
  for (const auto& [name, t] : model.tensors) {
    if (t.data == nullptr || !seen.insert(t.data).second) continue;
    bool nonfinite = false;
    switch (t.dtype) {
      case DType::F32: nonfinite = nonfinite_f32(t.data, t.nbytes / 4); break;
      case DType::F16: nonfinite = nonfinite_16(t.data, t.nbytes / 2, 0x7C00); break;
      case DType::BF16: nonfinite = nonfinite_16(t.data, t.nbytes / 2, 0x7F80); break;
      default: break;
    }
    if (nonfinite) {
      bad.push_back(name);
      warn(model.path + ": tensor '" + name + "' contains NaN or Inf values");
    }
  }
  return bad;
}

Model load_model(const std::string& path) { return load_model(path, LoadOptions{}); }

Model load_model(const std::string& path, const LoadOptions& options) {
  Model m = std::filesystem::is_directory(path) ? load_hf(path) : load_gguf(path);
  apply_finite_check(m, options);
  return m;
}

}  // namespace qeval
