#include "qeval/quant/export.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "qeval/io/architectures.h"
#include "qeval/io/gguf.h"
#include "qeval/io/hf_config.h"
#include "qeval/io/model_export.h"
#include "qeval/io/safetensors.h"
#include "qeval/quant/pack.h"
#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"
#include "qeval/util/log.h"

namespace qeval::quant {

namespace fs = std::filesystem;

namespace {

bool quantizes_output(const QuantizedModelResult& q) {
  for (const auto& l : q.linears)
    if (l.id.role == LinearRole::Output) return true;
  return false;
}

void put_fp16(uint8_t* p, float f) {
  const uint16_t h = f32_to_fp16(f);
  std::memcpy(p, &h, 2);
}

// Our codes / scales of a g32 matrix as ggml blocks (rows in logical order).
std::vector<uint8_t> encode_blocks(const QuantizedMatrix& m, DType type) {
  const GroupLayout lay = m.layout();
  const size_t bb = traits(type).block_bytes;
  std::vector<uint8_t> out(static_cast<size_t>(lay.count()) * bb);
  uint8_t* dst = out.data();
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t g = 0; g < lay.groups_per_row; ++g, dst += bb) {
      const size_t gi = static_cast<size_t>(lay.index(r, g * 32));
      const uint8_t* c = m.codes.data() + r * m.cols + g * 32;
      const float s = m.scales[gi];
      if (type == DType::Q4_0 || type == DType::Q4_1) {
        put_fp16(dst, s);
        uint8_t* qs = dst + 2;
        if (type == DType::Q4_1) {
          put_fp16(dst + 2, -s * m.zeros[gi]);
          qs = dst + 4;
        }
        for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((c[j] & 0x0F) | (c[j + 16] << 4));
      } else {  // Q8_0
        put_fp16(dst, s);
        for (int j = 0; j < 32; ++j) {
          const int8_t v = static_cast<int8_t>(static_cast<int>(c[j]) - 128);
          std::memcpy(dst + 2 + j, &v, 1);
        }
      }
    }
  return out;
}

std::string read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail_file(p, "cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::optional<DType> gguf_type_for(const QuantSpec& spec) {
  if (spec.family != Family::Int || !spec.weights || spec.activations || spec.kv) return std::nullopt;
  const QuantizerConfig& c = *spec.weights;
  if (c.granularity != Granularity::PerGroup || c.group_size != 32) return std::nullopt;
  if (c.bits == 4 && !c.symmetric) return DType::Q4_1;
  if (c.zero_factor != 1.0) return std::nullopt;
  if (c.bits == 4 && c.symmetric) return DType::Q4_0;
  if (c.bits == 8 && c.symmetric) return DType::Q8_0;
  return std::nullopt;
}

Model snapshot_model(const Model& source, Engine& engine, bool include_output) {
  Model m = source;
  const ModelConfig& c = engine.config();
  auto put = [&](const std::string& name, std::vector<int64_t> shape, std::vector<float> v) {
    m.tensors[name] = Tensor::from_f32(name, std::move(shape), std::move(v));
  };
  for (const LinearId& id : engine.linear_ids()) {
    if (id.role == LinearRole::Output && !include_output) continue;
    const Linear& L = engine.linear(id);
    put(id.name() + ".weight", {L.out_features(), L.in_features()}, L.weights->to_f32());
    if (!L.bias.empty()) put(id.name() + ".bias", {L.out_features()}, L.bias);
  }
  if (include_output) m.config.tied_embeddings = false;
  for (int l = 0; l < static_cast<int>(c.n_layers); ++l)
    for (auto [site, nm] : {std::pair{NormSite::Attn, "attn_norm"}, std::pair{NormSite::Ffn, "ffn_norm"}}) {
      const auto& w = engine.norm_weight(l, site);
      put(layer_tensor(l, std::string(nm) + ".weight"), {static_cast<int64_t>(w.size())}, w);
      const auto& b = engine.norm_bias(l, site);
      if (!b.empty()) put(layer_tensor(l, std::string(nm) + ".bias"), {static_cast<int64_t>(b.size())}, b);
    }
  return m;
}

ExportInfo export_gguf(const Model& source, Engine& engine, const QuantizedModelResult& q, const std::string& path) {
  const auto type = gguf_type_for(q.spec);
  if (!type) throw Error("spec '" + q.spec.str() + "' has no exact GGUF type (use the packed format)");
  Model m = snapshot_model(source, engine, quantizes_output(q));
  ExportInfo info;
  info.path = path;
  info.format = "gguf " + std::string(dtype_name(*type));
  double bits = 0;
  for (const auto& l : q.linears) {
    const int64_t n = l.q.rows * l.q.cols;
    info.quantized_params += n;
    if (l.q.cols % 32 != 0) {
      ++info.fallback_linears;  // snapshot already holds the dequantized F32 values
      bits += 32.0 * static_cast<double>(n);
      continue;
    }
    const std::string name = l.id.name() + ".weight";
    m.tensors[name] = Tensor::from_bytes(name, *type, {l.q.rows, l.q.cols}, encode_blocks(l.q, *type));
    bits += 8.0 * static_cast<double>(traits(*type).block_bytes) / 32.0 * static_cast<double>(n);
  }
  info.bits_per_weight = info.quantized_params > 0 ? bits / static_cast<double>(info.quantized_params) : 0.0;
  GGUFExportOptions o;
  save_gguf(m, path, o);
  return info;
}

namespace {

// Tensor files hold F32 / I32 / I64 parameters before the byte streams (I64 first), so each
// value lies at a multiple of its size from the 8-aligned data start and can be used in place.
int alignment_class(DType t) { return t == DType::I64 ? 0 : t == DType::U8 ? 2 : 1; }

template <typename T>
Tensor vector_tensor(const std::string& name, DType type, const std::vector<T>& v) {
  std::vector<uint8_t> bytes(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(bytes.data(), v.data(), bytes.size());
  return Tensor::from_bytes(name, type, {static_cast<int64_t>(v.size())}, std::move(bytes));
}

// The files of an HF tokenizer, copied so the directory needs nothing outside itself.
constexpr const char* kTokenizerFiles[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                                           "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt"};

// model.gguf: the configuration and every tokenizer key as GGUF metadata, no tensors.
void write_metadata_gguf(const Model& m, const std::string& path) {
  GGUFMetadata md;
  md.set("general.architecture", GGUFValue::str(std::string(architecture(m.config).gguf_arch)));
  const std::string name = m.metadata.get_string("general.name", "");
  if (!name.empty()) md.set("general.name", GGUFValue::str(name));
  config_to_gguf_metadata(m.config, md);
  for (const auto& [k, v] : m.metadata.entries())
    if (k.rfind("tokenizer.", 0) == 0) md.set(k, v);
  write_gguf(path, md, {});
}

}  // namespace

ExportInfo export_packed(const Model& source, Engine& engine, const QuantizedModelResult& q, const std::string& dir) {
  const Model m = snapshot_model(source, engine, quantizes_output(q));
  fs::create_directories(dir);
  // quant_config.json marks a complete directory: remove a previous one first, write it last.
  fs::remove(fs::path(dir) / "quant_config.json");
  std::vector<Tensor> out;
  nlohmann::json lin = nlohmann::json::object();
  ExportInfo info;
  info.path = dir;
  info.format = "packed";
  std::set<std::string> quantized;
  double bits = 0;
  for (const auto& l : q.linears) {
    const std::string n = l.id.name();
    const QuantizerConfig& c = l.q.config;
    quantized.insert(n + ".weight");
    const auto packed = pack_codes(l.q.codes, c.bits);
    out.push_back(Tensor::from_bytes(n + ".qweight", DType::U8, {static_cast<int64_t>(packed.size())}, packed));
    out.push_back(vector_tensor(n + ".scales", DType::F32, l.q.scales));
    const bool zeros = !c.symmetric || c.zero_factor != 1.0;
    if (zeros) out.push_back(vector_tensor(n + ".zeros", DType::F32, l.q.zeros));
    if (l.q.has_outliers()) {
      out.push_back(vector_tensor(n + ".outlier_row_ptr", DType::I64, l.q.outlier_row_ptr));
      out.push_back(vector_tensor(n + ".outlier_cols", DType::I32, l.q.outlier_cols));
      out.push_back(vector_tensor(n + ".outlier_values", DType::F32, l.q.outlier_values));
    }
    lin[n] = {{"shape", {l.q.rows, l.q.cols}},
              {"bits", c.bits},
              {"granularity", std::string(granularity_name(c.granularity))},
              {"group_size", c.group_size},
              {"zeros", zeros},
              {"outliers", static_cast<int64_t>(l.q.outlier_values.size())}};
    const int64_t np = l.q.rows * l.q.cols;
    info.quantized_params += np;
    // Codes, 16-bit scales (and zeros), plus each outlier as value + column (the stored F32
    // parameters above are a convenience of this format, not the scheme's cost).
    bits += effective_bits(c, l.q.rows, l.q.cols, 16) * static_cast<double>(np) +
            48.0 * static_cast<double>(l.q.outlier_values.size());
  }
  for (const auto& [name, t] : m.tensors) {
    if (quantized.count(name) || m.is_alias(name)) continue;
    out.push_back(Tensor::from_f32(name, t.shape, t.to_f32()));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Tensor& a, const Tensor& b) { return alignment_class(a.dtype) < alignment_class(b.dtype); });
  write_safetensors((fs::path(dir) / "quantized.safetensors").string(), out, {{"format", "qeval-packed"}, {"version", "2"}});
  write_metadata_gguf(m, (fs::path(dir) / "model.gguf").string());
  if (source.format == ModelFormat::HFDirectory)
    for (const char* f : kTokenizerFiles) {
      const fs::path src = fs::path(source.path) / f;
      if (fs::is_regular_file(src)) write_file_atomic((fs::path(dir) / f).string(), read_file(src.string()));
    }
  info.bits_per_weight = info.quantized_params > 0 ? bits / static_cast<double>(info.quantized_params) : 0.0;
  nlohmann::json j = {{"format", "qeval-packed"},
                      {"version", 2},
                      {"spec", q.spec.str()},
                      {"bits_per_weight", info.bits_per_weight},
                      {"tied_embeddings", m.config.tied_embeddings},
                      {"tokenizer", source.format == ModelFormat::HFDirectory ? "hf files" : "model.gguf"},
                      {"linears", lin}};
  if (q.spec.weights) {
    const QuantizerConfig& c = *q.spec.weights;
    j["bits"] = c.bits;
    j["group_size"] = c.group_size;
    j["granularity"] = std::string(granularity_name(c.granularity));
    j["symmetric"] = c.symmetric;
    j["scale_factor"] = c.scale_factor;
    j["zero_factor"] = c.zero_factor;
  }
  write_file_atomic((fs::path(dir) / "quant_config.json").string(), j.dump(2) + "\n");
  return info;
}

ExportInfo export_simulated(const Model& source, Engine& engine, const QuantizedModelResult& q, const std::string& path,
                            bool gguf) {
  const Model m = snapshot_model(source, engine, quantizes_output(q));
  ExportInfo info;
  info.path = path;
  info.quantized_params = q.quantized_params;
  info.bits_per_weight = q.bits_per_weight;  // of the scheme being simulated
  if (gguf) {
    GGUFExportOptions o;
    o.type = DType::F32;
    save_gguf(m, path, o);
    info.format = "gguf F32 (simulated)";
  } else {
    save_hf(m, path, {.dtype = DType::F32});
    info.format = "hf F32 (simulated)";
  }
  return info;
}

bool is_packed_model(const std::string& path) {
  return fs::is_directory(path) && fs::exists(fs::path(path) / "quant_config.json");
}

namespace {

// A float / integer parameter tensor as a span: in place when aligned, else copied into
// `keep` (which the packed matrix owns).
template <typename T>
std::span<const T> param_span(const Tensor* t, DType type, const std::string& file, const std::string& what,
                              std::vector<std::shared_ptr<const void>>& keep) {
  if (t == nullptr) return {};
  if (t->dtype != type || t->shape.size() != 1) fail_file(file, what + " has the wrong type or shape");
  const size_t n = t->nbytes / sizeof(T);
  if (reinterpret_cast<uintptr_t>(t->data) % alignof(T) == 0) return {reinterpret_cast<const T*>(t->data), n};
  auto copy = std::make_shared<std::vector<T>>(n);
  std::memcpy(copy->data(), t->data, t->nbytes);
  keep.push_back(copy);
  return {copy->data(), n};
}

struct PackedOwner {
  std::shared_ptr<const SafetensorsFile> file;
  std::vector<std::shared_ptr<const void>> copies;
};

}  // namespace

namespace {

// ---- The activation part of a packed directory's spec (W8A8 / W4A8) ----
// Dynamic per-token symmetric 8-bit activations (what ActivationQuantHooks simulates for the
// spec in memory, the lm head's input included) are applied by the engine inside every linear
// (engine/linear_int8_activation.h: integer kernels for the packed weights). Other activation
// quantizers (static scales, groups, other bits, perturbed, LLM.int8()) are not applied: warned.
void mark_input_quantization(const QuantSpec& spec, Model& m, const std::string& cfgp) {
  if (!spec.activations) return;
  const QuantizerConfig& a = *spec.activations;
  const bool per_token = spec.family == Family::Int && !spec.static_activations && a.bits == 8 &&
                         a.granularity == Granularity::PerToken && a.symmetric && a.rounding == Rounding::Nearest &&
                         a.scale_factor == 1.0 && a.zero_factor == 1.0;
  if (!per_token) {
    warn(cfgp + ": the activation quantization of spec '" + spec.str() +
         "' is not applied to the packed model (only dynamic per-token symmetric a8 is); its linears take float inputs");
    return;
  }
  for (auto& [name, t] : m.tensors) {
    if (t.shape.size() != 2 || name == "token_embd.weight" || name == "position_embd.weight") continue;
    t.input_quant_bits = a.bits;
    t.input_quant_clip = static_cast<float>(a.clip_ratio);
  }
}

}  // namespace

Model load_packed_model(const std::string& dir) {
  const std::string cfgp = (fs::path(dir) / "quant_config.json").string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(cfgp));
  } catch (const nlohmann::json::exception& e) {
    fail_file(cfgp, std::string("invalid JSON: ") + e.what());
  }
  if (j.value("format", "") != "qeval-packed") fail_file(cfgp, "not a qeval-packed model");
  const int version = j.value("version", 1);
  if (version != 1 && version != 2) fail_file(cfgp, "unsupported qeval-packed version " + std::to_string(version));
  const QuantSpec spec = QuantSpec::parse(j.at("spec").get<std::string>());
  if (!j.contains("linears") || !j.at("linears").is_object()) fail_file(cfgp, "no 'linears' table");
  const std::string stp = (fs::path(dir) / "quantized.safetensors").string();
  auto st = std::make_shared<SafetensorsFile>(open_safetensors(stp));
  std::set<std::string> qnames;
  for (auto& [name, info] : j.at("linears").items()) qnames.insert(name);
  auto is_part = [&](const std::string& n) {
    const auto dot = n.rfind('.');
    return dot != std::string::npos && qnames.count(n.substr(0, dot)) != 0;
  };

  Model m;
  if (version == 1) {
    // Version 1 kept the configuration and tokenizer in the source model ("base_model").
    if (!j.contains("base_model")) fail_file(cfgp, "version 1 directory without 'base_model'");
    m = load_model(j.at("base_model").get<std::string>());
  } else {
    const std::string gp = (fs::path(dir) / "model.gguf").string();
    if (!fs::exists(gp)) fail_file(gp, "missing (the configuration and tokenizer of a packed model)");
    const GGUFFile g = GGUFFile::open(gp);
    // The optional tensors that decide biases, norms and tied embeddings, by name.
    std::vector<GGUFTensorInfo> infos;
    for (const Tensor& t : st->tensors)
      if (!is_part(t.name)) infos.push_back({t.name, std::vector<int64_t>(t.shape.rbegin(), t.shape.rend()), t.dtype, 0, 0});
    for (const std::string& n : qnames) infos.push_back({n + ".weight", {}, DType::U8, 0, 0});
    m.config = config_from_gguf(g.metadata, infos, gp);
    m.metadata = g.metadata;
    bool hf_tokenizer = false;
    for (const char* f : {"tokenizer.json", "tokenizer.model"}) hf_tokenizer = hf_tokenizer || fs::is_regular_file(fs::path(dir) / f);
    m.format = hf_tokenizer ? ModelFormat::HFDirectory : ModelFormat::GGUF;  // where load_tokenizer looks
    m.tensors.clear();
  }
  m.path = dir;
  // Plain tensors: in place from the mapping when their floats are aligned, else copied.
  for (const Tensor& t : st->tensors) {
    if (is_part(t.name)) continue;
    if (t.dtype == DType::F32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) m.tensors[t.name] = t;
    else m.tensors[t.name] = Tensor::from_f32(t.name, t.shape, t.to_f32());
  }
  for (const std::string& n : qnames) {
    const auto& info = j.at("linears").at(n);
    // Version 2 records each linear's grid; version 1 had one for all (the spec's).
    QuantizerConfig c = spec.weights ? *spec.weights : QuantizerConfig{};
    if (info.contains("bits")) {
      c.bits = info.at("bits").get<int>();
      c.group_size = info.value("group_size", int64_t{0});
      const std::string g = info.value("granularity", std::string("per-group"));
      c.granularity = g == "per-tensor" ? Granularity::PerTensor : g == "per-channel" ? Granularity::PerChannel
                      : g == "per-token" ? Granularity::PerToken : Granularity::PerGroup;
    } else if (!spec.weights) {
      fail_file(cfgp, n + ": no grid description");
    }
    auto p = std::make_shared<PackedWeight>();
    auto owner = std::make_shared<PackedOwner>();
    owner->file = st;
    p->bits = c.bits;
    p->rows = info.at("shape")[0].get<int64_t>();
    p->cols = info.at("shape")[1].get<int64_t>();
    const GroupLayout lay = group_layout(c, p->rows, p->cols);
    p->per_tensor = lay.per_tensor;
    p->group_size = lay.group_cols;
    p->scheme = spec.str();
    const Tensor* qw = st->find(n + ".qweight");
    const Tensor* sc = st->find(n + ".scales");
    if (!qw || !sc) fail_file(stp, "missing packed tensors of " + n);
    if (qw->dtype != DType::U8) fail_file(stp, n + ".qweight is not U8");
    p->codes = qw->data;
    p->codes_bytes = qw->nbytes;
    p->scales = param_span<float>(sc, DType::F32, stp, n + ".scales", owner->copies);
    p->zeros = param_span<float>(st->find(n + ".zeros"), DType::F32, stp, n + ".zeros", owner->copies);
    p->outlier_row_ptr = param_span<int64_t>(st->find(n + ".outlier_row_ptr"), DType::I64, stp, n + ".outlier_row_ptr", owner->copies);
    p->outlier_cols = param_span<int32_t>(st->find(n + ".outlier_cols"), DType::I32, stp, n + ".outlier_cols", owner->copies);
    p->outlier_values = param_span<float>(st->find(n + ".outlier_values"), DType::F32, stp, n + ".outlier_values", owner->copies);
    p->owner = owner;
    try {
      m.tensors[n + ".weight"] = Tensor::from_packed(n + ".weight", std::move(p));
    } catch (const Error& e) {
      fail_file(stp, e.what());
    }
  }
  if (!j.value("tied_embeddings", true)) m.config.tied_embeddings = false;
  if (m.config.tied_embeddings && !m.tensors.count("output.weight") && m.tensors.count("token_embd.weight")) {
    Tensor alias = m.tensors.at("token_embd.weight");  // same bytes and owner: Model::is_alias
    alias.name = "output.weight";
    m.tensors["output.weight"] = alias;
  }
  mark_input_quantization(spec, m, cfgp);
  if (spec.kv) {
    // The KV cache format is a run-time setting of the engine, not part of the weights.
    QuantSpec kv_only;
    kv_only.family = Family::Int;
    kv_only.kv = spec.kv;
    warn(dir + ": the KV-cache part of spec '" + spec.str() + "' is not applied at load (the cache format is a " +
         "run-time setting); apply it with --spec " + kv_only.str() + " (e.g. qeval perplexity " + dir + " --spec " +
         kv_only.str() + " ...)");
  }
  return m;
}

Model load_any_model(const std::string& path) { return is_packed_model(path) ? load_packed_model(path) : load_model(path); }

}  // namespace qeval::quant
