#include "qeval/quant/export.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "qeval/io/model_export.h"
#include "qeval/io/safetensors.h"
#include "qeval/quant/pack.h"
#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"

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

ExportInfo export_packed(const Model& source, Engine& engine, const QuantizedModelResult& q, const std::string& dir) {
  const Model m = snapshot_model(source, engine, quantizes_output(q));
  fs::create_directories(dir);
  std::vector<Tensor> out;
  nlohmann::json lin = nlohmann::json::object();
  ExportInfo info;
  info.path = dir;
  info.format = "packed";
  std::set<std::string> quantized;
  double bits = 0;
  for (const auto& l : q.linears) {
    const std::string n = l.id.name();
    quantized.insert(n + ".weight");
    const auto packed = pack_codes(l.q.codes, l.q.config.bits);
    out.push_back(Tensor::from_bytes(n + ".qweight", DType::U8, {static_cast<int64_t>(packed.size())}, packed));
    out.push_back(Tensor::from_f32(n + ".scales", {static_cast<int64_t>(l.q.scales.size())}, l.q.scales));
    const bool zeros = !l.q.config.symmetric || l.q.config.zero_factor != 1.0;
    if (zeros) out.push_back(Tensor::from_f32(n + ".zeros", {static_cast<int64_t>(l.q.zeros.size())}, l.q.zeros));
    lin[n] = {{"shape", {l.q.rows, l.q.cols}}, {"zeros", zeros}};
    const int64_t np = l.q.rows * l.q.cols;
    info.quantized_params += np;
    bits += effective_bits(l.q.config, l.q.rows, l.q.cols, 16) * static_cast<double>(np);
  }
  for (const auto& [name, t] : m.tensors) {
    if (quantized.count(name) || m.is_alias(name)) continue;
    out.push_back(Tensor::from_f32(name, t.shape, t.to_f32()));
  }
  write_safetensors((fs::path(dir) / "quantized.safetensors").string(), out, {{"format", "qeval-packed"}, {"version", "1"}});
  info.bits_per_weight = info.quantized_params > 0 ? bits / static_cast<double>(info.quantized_params) : 0.0;
  const QuantizerConfig& c = *q.spec.weights;
  nlohmann::json j = {{"format", "qeval-packed"},
                      {"version", 1},
                      {"spec", q.spec.str()},
                      {"bits", c.bits},
                      {"group_size", c.group_size},
                      {"granularity", std::string(granularity_name(c.granularity))},
                      {"symmetric", c.symmetric},
                      {"scale_factor", c.scale_factor},
                      {"zero_factor", c.zero_factor},
                      {"bits_per_weight", info.bits_per_weight},
                      {"tied_embeddings", m.config.tied_embeddings},
                      {"base_model", fs::absolute(source.path).string()},
                      {"linears", lin}};
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

Model load_packed_model(const std::string& dir) {
  const std::string cfgp = (fs::path(dir) / "quant_config.json").string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(cfgp));
  } catch (const nlohmann::json::exception& e) {
    fail_file(cfgp, std::string("invalid JSON: ") + e.what());
  }
  if (j.value("format", "") != "qeval-packed") fail_file(cfgp, "not a qeval-packed model");
  const QuantSpec spec = QuantSpec::parse(j.at("spec").get<std::string>());
  if (!spec.weights) fail_file(cfgp, "spec has no weight quantizer");
  Model m = load_model(j.at("base_model").get<std::string>());
  m.path = dir;
  const std::string stp = (fs::path(dir) / "quantized.safetensors").string();
  auto st = std::make_shared<SafetensorsFile>(open_safetensors(stp));
  std::set<std::string> qnames;
  for (auto& [name, info] : j.at("linears").items()) qnames.insert(name);
  // Plain tensors: copy (they are small next to the linears) so the mapping need not outlive us.
  for (const Tensor& t : st->tensors) {
    const std::string& n = t.name;
    const auto dot = n.rfind('.');
    if (dot != std::string::npos && qnames.count(n.substr(0, dot)) &&
        (n.ends_with(".qweight") || n.ends_with(".scales") || n.ends_with(".zeros")))
      continue;
    m.tensors[n] = Tensor::from_f32(n, t.shape, t.to_f32());
  }
  for (const std::string& n : qnames) {
    const auto& info = j.at("linears").at(n);
    QuantizedMatrix q;
    q.config = *spec.weights;
    q.rows = info.at("shape")[0].get<int64_t>();
    q.cols = info.at("shape")[1].get<int64_t>();
    const Tensor* qw = st->find(n + ".qweight");
    const Tensor* sc = st->find(n + ".scales");
    if (!qw || !sc) fail_file(stp, "missing packed tensors of " + n);
    q.codes = unpack_codes({qw->data, qw->nbytes}, q.config.bits, static_cast<size_t>(q.rows * q.cols));
    q.scales = sc->to_f32();
    const GroupLayout lay = q.layout();
    if (static_cast<int64_t>(q.scales.size()) != lay.count()) fail_file(stp, n + ": wrong number of scales");
    if (const Tensor* z = st->find(n + ".zeros")) {
      q.zeros = z->to_f32();
    } else {
      q.zeros.assign(q.scales.size(), static_cast<float>(1 << (q.config.bits - 1)));
    }
    if (q.zeros.size() != q.scales.size()) fail_file(stp, n + ": wrong number of zero-points");
    m.tensors[n + ".weight"] = Tensor::from_f32(n + ".weight", {q.rows, q.cols}, q.dequantize());
  }
  if (!j.value("tied_embeddings", true)) m.config.tied_embeddings = false;
  return m;
}

Model load_any_model(const std::string& path) { return is_packed_model(path) ? load_packed_model(path) : load_model(path); }

}  // namespace qeval::quant
