#include "qeval/io/model_export.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numbers>
#include <set>

#include "qeval/io/architectures.h"
#include "qeval/io/dequantize.h"
#include "qeval/io/hf_config.h"
#include "qeval/io/safetensors.h"
#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

bool is_plain_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// The tensor's logical rows (through `physical_to_logical` when given: output row p is logical
// row map[p]) encoded as `type`. 1-D tensors are one row; their elements are what the map reorders.
std::vector<uint8_t> encode(const Tensor& t, DType type, const std::vector<int32_t>* map, const std::string& path) {
  if (t.shape.size() <= 1) {
    std::vector<float> v = t.to_f32();
    if (map != nullptr) {
      std::vector<float> p(v.size());
      for (size_t i = 0; i < v.size(); ++i) p[i] = v[static_cast<size_t>((*map)[i])];
      v = std::move(p);
    }
    if (type == t.dtype && map == nullptr) return {t.data, t.data + t.nbytes};
    const auto rb = row_bytes(type, static_cast<int64_t>(v.size()));
    if (!rb) fail_file(path, "tensor '" + t.name + "': length is not a multiple of the " + std::string(dtype_name(type)) + " block");
    std::vector<uint8_t> out(*rb);
    quantize_row(type, v.data(), out.data(), static_cast<int64_t>(v.size()));
    return out;
  }
  const int64_t rows = t.rows(), cols = t.cols();
  const auto rb = row_bytes(type, cols);
  if (!rb) fail_file(path, "tensor '" + t.name + "': rows are not a multiple of the " + std::string(dtype_name(type)) + " block");
  std::vector<uint8_t> out(*rb * static_cast<size_t>(rows));
  std::vector<float> buf(type == t.dtype ? 0 : static_cast<size_t>(cols));
  for (int64_t p = 0; p < rows; ++p) {
    const int64_t lr = map != nullptr ? (*map)[static_cast<size_t>(p)] : p;
    uint8_t* dst = out.data() + static_cast<size_t>(p) * *rb;
    if (type == t.dtype) {
      std::memcpy(dst, t.row_data(lr), *rb);
    } else {
      t.row_to_f32(lr, buf.data());
      quantize_row(type, buf.data(), dst, cols);
    }
  }
  return out;
}

std::vector<int32_t> inverse(const std::vector<int32_t>& order) {
  std::vector<int32_t> inv(order.size());
  for (size_t i = 0; i < order.size(); ++i) inv[static_cast<size_t>(order[i])] = static_cast<int32_t>(i);
  return inv;
}

// llama.cpp's rope_freqs for Llama 3.x rope scaling: one divisor per rotary frequency.
std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  const RopeScaling& rs = c.rope_scaling;
  const double low_wavelen = static_cast<double>(rs.original_context) / rs.low_freq_factor;
  const double high_wavelen = static_cast<double>(rs.original_context) / rs.high_freq_factor;
  std::vector<float> f;
  for (int64_t i = 0; i < c.rope_dim; i += 2) {
    const double freq = 1.0 / std::pow(static_cast<double>(c.rope_theta), static_cast<double>(i) / static_cast<double>(c.rope_dim));
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      f.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      f.push_back(rs.factor);
    } else {
      const double smooth = (static_cast<double>(rs.original_context) / wavelen - rs.low_freq_factor) /
                            (rs.high_freq_factor - rs.low_freq_factor);
      f.push_back(static_cast<float>(1.0 / ((1 - smooth) / rs.factor + smooth)));
    }
  }
  return f;
}

struct Pending {
  std::string name;
  DType type;
  std::vector<int64_t> shape;
  std::shared_ptr<std::vector<uint8_t>> bytes;  // null: use `src` bytes directly
  const Tensor* src = nullptr;
};

std::vector<uint8_t> transpose_bytes(const std::vector<uint8_t>& in, size_t rows, size_t cols, size_t es) {
  std::vector<uint8_t> out(in.size());
  for (size_t i = 0; i < rows; ++i)
    for (size_t j = 0; j < cols; ++j) std::memcpy(out.data() + (j * rows + i) * es, in.data() + (i * cols + j) * es, es);
  return out;
}

}  // namespace

uint32_t gguf_file_type(DType type) {
  switch (type) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 7;
    case DType::Q5_0: return 8;
    case DType::Q5_1: return 9;
    case DType::Q2_K: return 10;
    case DType::Q3_K: return 12;  // Q3_K_M
    case DType::Q4_K: return 15;  // Q4_K_M
    case DType::Q5_K: return 17;  // Q5_K_M
    case DType::Q6_K: return 18;
    case DType::BF16: return 32;
    default: fail("no GGUF file type for " + std::string(dtype_name(type)));
  }
}

std::vector<ExportedTensor> save_gguf(const Model& model, const std::string& path, const GGUFExportOptions& options) {
  const ModelConfig& c = model.config;
  const ArchitectureInfo& arch = architecture(c);
  if (options.alignment == 0 || (options.alignment & (options.alignment - 1)) != 0)
    fail_file(path, "alignment must be a power of two");

  auto choose = [&](const Tensor& t, bool& fallback) -> DType {
    fallback = false;
    std::optional<DType> want;
    if (auto it = options.tensor_types.find(t.name); it != options.tensor_types.end()) want = it->second;
    else if (options.type && t.shape.size() >= 2) want = options.type;
    else if (options.type) want = DType::F32;
    if (!want || *want == t.dtype) return t.dtype;
    if (!can_quantize(*want))
      fail_file(path, "cannot write tensors as " + std::string(dtype_name(*want)) + " (no encoder for that type)");
    if (!row_bytes(*want, t.cols())) {
      fallback = true;
      return DType::F16;
    }
    return *want;
  };

  const std::vector<ExpectedTensor> expected = expected_tensors(c);
  std::set<std::string> done;
  std::vector<Pending> pending;
  std::vector<ExportedTensor> report;

  std::optional<std::vector<int32_t>> q_map, k_map;
  if (arch.gguf_interleaved_rope) {
    q_map = inverse(interleaved_rotary_rows(c.n_heads, c.head_dim));
    k_map = inverse(interleaved_rotary_rows(c.n_kv_heads, c.head_dim));
  }
  auto map_for = [&](TensorRole r) -> const std::vector<int32_t>* {
    if (!q_map) return nullptr;
    if (r == TensorRole::AttnQ || r == TensorRole::AttnQBias) return &*q_map;
    if (r == TensorRole::AttnK || r == TensorRole::AttnKBias) return &*k_map;
    return nullptr;
  };

  auto emit = [&](const Tensor& t, const std::vector<int32_t>* map) {
    bool fb = false;
    const DType type = choose(t, fb);
    Pending p{t.name, type, t.shape, nullptr, &t};
    if (type != t.dtype || map != nullptr || !t.row_order.empty())
      p.bytes = std::make_shared<std::vector<uint8_t>>(encode(t, type, map, path));
    pending.push_back(std::move(p));
    report.push_back({t.name, type, fb});
  };

  for (const auto& e : expected) {
    if (done.count(e.name)) continue;
    if (e.role == TensorRole::Output && (c.tied_embeddings || model.is_alias("output.weight"))) {
      done.insert(e.name);
      continue;
    }
    // A fused GGUF tensor (gpt2 attn_qkv) made of this role and its siblings.
    const GGUFFusedRule* fused = nullptr;
    for (const auto& f : arch.gguf_fused)
      if (f.roles.front() == e.role) fused = &f;
    if (fused != nullptr) {
      const std::string fname = layer_tensor(e.layer, std::string(fused->suffix));
      std::vector<const Tensor*> parts;
      for (TensorRole r : fused->roles) {
        parts.push_back(&model.tensor(canonical_name(r, e.layer)));
        done.insert(canonical_name(r, e.layer));
      }
      bool fb = false;
      Tensor probe = *parts.front();
      probe.name = fname;
      const DType type = choose(probe, fb);
      auto bytes = std::make_shared<std::vector<uint8_t>>();
      std::vector<int64_t> shape = parts.front()->shape;
      shape[0] = 0;
      for (const Tensor* t : parts) {
        const auto b = encode(*t, type, nullptr, path);
        bytes->insert(bytes->end(), b.begin(), b.end());
        shape[0] += t->shape[0];
      }
      pending.push_back({fname, type, shape, bytes, nullptr});
      report.push_back({fname, type, fb});
      continue;
    }
    done.insert(e.name);
    emit(model.tensor(e.name), map_for(e.role));
  }
  // Tensors outside the template (rope_freqs.weight, ...) go out as they are.
  for (const auto& [name, t] : model.tensors)
    if (!done.count(name)) emit(t, nullptr);
  std::shared_ptr<std::vector<float>> rope_factors;
  if (c.rope_scaling.kind == RopeScalingKind::Llama3 && !model.find("rope_freqs.weight")) {
    if (arch.gguf_arch != "llama") fail_file(path, "llama3 rope scaling can only be exported for llama");
    rope_factors = std::make_shared<std::vector<float>>(llama3_rope_factors(c));
    auto bytes = std::make_shared<std::vector<uint8_t>>(rope_factors->size() * 4);
    std::memcpy(bytes->data(), rope_factors->data(), bytes->size());
    pending.push_back({"rope_freqs.weight", DType::F32, {static_cast<int64_t>(rope_factors->size())}, bytes, nullptr});
    report.push_back({"rope_freqs.weight", DType::F32, false});
  }

  // Main type: the requested one, else the most common matrix type.
  DType main = DType::F32;
  if (options.type) {
    main = *options.type;
  } else {
    std::map<DType, size_t> count;
    for (const auto& p : pending)
      if (p.shape.size() >= 2) count[p.type] += 1;
    size_t best = 0;
    for (const auto& [t, n] : count)
      if (n > best || (n == best && is_block_quantized(t))) best = n, main = t;
  }
  bool quantized = false;
  for (const auto& p : pending) quantized = quantized || is_block_quantized(p.type);

  GGUFMetadata md;
  md.set("general.architecture", GGUFValue::str(std::string(arch.gguf_arch)));
  std::string name = options.name;
  if (name.empty()) name = model.metadata.get_string("general.name", "");
  if (name.empty()) name = fs::path(path).stem().string();
  md.set("general.name", GGUFValue::str(name));
  md.set("general.file_type", GGUFValue::u32(gguf_file_type(main)));
  if (quantized) md.set("general.quantization_version", GGUFValue::u32(2));
  if (options.alignment != 32) md.set("general.alignment", GGUFValue::u32(static_cast<uint32_t>(options.alignment)));
  config_to_gguf_metadata(c, md);
  for (const auto& [k, v] : model.metadata.entries())
    if (k.rfind("tokenizer.", 0) == 0) md.set(k, v);

  std::vector<GGUFWriteTensor> out;
  out.reserve(pending.size());
  for (const auto& p : pending) {
    GGUFWriteTensor w;
    w.name = p.name;
    w.type = p.type;
    w.shape = p.shape;
    if (p.bytes) {
      w.data = p.bytes->data();
      w.nbytes = p.bytes->size();
    } else {
      w.data = p.src->data;
      w.nbytes = p.src->nbytes;
    }
    out.push_back(std::move(w));
  }
  write_gguf(path, md, out);
  return report;
}

void save_hf(const Model& model, const std::string& dir, const HFExportOptions& options) {
  const ModelConfig& c = model.config;
  const ArchitectureInfo& arch = architecture(c);
  if (options.dtype && !is_plain_float(*options.dtype))
    fail_file(dir, "HF checkpoints are written as F32, F16 or BF16, not " + std::string(dtype_name(*options.dtype)));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail_file(dir, "cannot create directory: " + ec.message());

  const std::vector<ExpectedTensor> expected = expected_tensors(c);
  std::set<std::string> expected_names;
  for (const auto& e : expected) expected_names.insert(e.name);

  std::vector<Tensor> tensors;
  std::set<DType> written_types;
  for (const HFTensorRule& rule : arch.hf_tensors) {
    const bool per_layer = role_info(rule.roles.front()).per_layer;
    for (int64_t l = per_layer ? 0 : -1; l < (per_layer ? c.n_layers : 0); ++l) {
      std::vector<const Tensor*> parts;
      for (TensorRole r : rule.roles)
        if (expected_names.count(canonical_name(r, l))) parts.push_back(&model.tensor(canonical_name(r, l)));
      if (parts.empty()) continue;
      if (rule.roles.size() == 1 && rule.roles[0] == TensorRole::Output && c.tied_embeddings) continue;
      DType type = options.dtype.value_or(is_plain_float(parts.front()->dtype) ? parts.front()->dtype : DType::F32);
      for (const Tensor* p : parts)
        if (!options.dtype && p->dtype != type) type = DType::F32;
      std::vector<uint8_t> bytes;
      std::vector<int64_t> shape = parts.front()->shape;
      shape[0] = 0;
      for (const Tensor* p : parts) {
        const auto b = encode(*p, type, nullptr, dir);
        bytes.insert(bytes.end(), b.begin(), b.end());
        shape[0] += p->shape[0];
      }
      if (rule.layout == HFLayout::Conv1D && shape.size() == 2) {
        bytes = transpose_bytes(bytes, static_cast<size_t>(shape[0]), static_cast<size_t>(shape[1]), traits(type).block_bytes);
        std::swap(shape[0], shape[1]);
      }
      std::string name = std::string(arch.hf_prefixes.front()) + hf_tensor_name(rule.hf_name, l);
      tensors.push_back(Tensor::from_bytes(std::move(name), type, shape, std::move(bytes)));
      written_types.insert(type);
    }
  }
  const fs::path d(dir);
  write_safetensors((d / "model.safetensors").string(), tensors, {{"format", "pt"}});

  nlohmann::ordered_json cj = config_to_hf_json(c);
  nlohmann::ordered_json gen = nlohmann::ordered_json::object();
  for (const auto& [gkey, hkey] : {std::pair{"tokenizer.ggml.bos_token_id", "bos_token_id"},
                                   std::pair{"tokenizer.ggml.eos_token_id", "eos_token_id"},
                                   std::pair{"tokenizer.ggml.padding_token_id", "pad_token_id"}}) {
    const GGUFValue* v = model.metadata.find(gkey);
    if (v == nullptr || !v->is_integer()) continue;
    const int64_t id = model.metadata.get_int(gkey);
    if (id < 0 || id >= c.vocab_size) continue;  // e.g. 0xFFFFFFFF "none" ids
    cj[hkey] = id;
    gen[hkey] = id;
  }
  const DType main = written_types.size() == 1 ? *written_types.begin() : DType::F32;
  cj["torch_dtype"] = main == DType::F16 ? "float16" : main == DType::BF16 ? "bfloat16" : "float32";
  write_file_atomic((d / "config.json").string(), cj.dump(2) + "\n");
  write_file_atomic((d / "generation_config.json").string(), gen.dump(2) + "\n");

  if (model.format == ModelFormat::HFDirectory) {
    const fs::path src(model.path);
    for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                          "added_tokens.json", "vocab.json", "merges.txt"}) {
      if (!fs::exists(src / f)) continue;
      if (fs::exists(d / f) && fs::equivalent(src / f, d / f, ec)) continue;
      fs::copy_file(src / f, d / f, fs::copy_options::overwrite_existing, ec);
      if (ec) fail_file((d / f).string(), "cannot copy from " + (src / f).string() + ": " + ec.message());
      fs::permissions(d / f, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, ec);
    }
  }
}

}  // namespace qeval
