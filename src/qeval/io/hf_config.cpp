#include "qeval/io/hf_config.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "qeval/io/architectures.h"
#include "qeval/util/error.h"

namespace qeval {
namespace {

using json = nlohmann::json;

// Typed access to config.json keys with errors naming the file and key.
class JsonReader {
 public:
  JsonReader(const json& j, const std::string& path) : j_(j), path_(path) {}

  const json* find(std::string_view key) const {
    if (key.empty()) return nullptr;
    auto it = j_.find(std::string(key));
    return it == j_.end() ? nullptr : &*it;
  }
  // Present and not null.
  bool has(std::string_view key) const {
    const json* v = find(key);
    return v != nullptr && !v->is_null();
  }
  [[noreturn]] void type_error(std::string_view key, const char* want, const json& v) const {
    fail_file(path_, "'" + std::string(key) + "' should be " + want + ", is " + v.type_name());
  }
  const json& require(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) fail_file(path_, "missing key '" + std::string(key) + "'");
    return *v;
  }
  int64_t integer(std::string_view key) const {
    const json& v = require(key);
    if (!v.is_number_integer()) type_error(key, "an integer", v);
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      fail_file(path_, "'" + std::string(key) + "' is out of range");
    return v.get<int64_t>();
  }
  int64_t positive(std::string_view key) const {
    const int64_t x = integer(key);
    if (x <= 0) fail_file(path_, "'" + std::string(key) + "' should be positive, is " + std::to_string(x));
    return x;
  }
  double number(std::string_view key) const {
    const json& v = require(key);
    if (!v.is_number()) type_error(key, "a number", v);
    return v.get<double>();
  }
  double number(std::string_view key, double fallback) const { return has(key) ? number(key) : fallback; }
  bool boolean(std::string_view key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = *find(key);
    if (!v.is_boolean()) type_error(key, "a boolean", v);
    return v.get<bool>();
  }
  std::string string(std::string_view key) const {
    const json& v = require(key);
    if (!v.is_string()) type_error(key, "a string", v);
    return v.get<std::string>();
  }
  const std::string& path() const { return path_; }

 private:
  const json& j_;
  const std::string& path_;
};

const ArchitectureInfo& hf_architecture(const JsonReader& r) {
  if (r.has("architectures")) {
    const json& arr = r.require("architectures");
    if (!arr.is_array() || arr.empty()) r.type_error("architectures", "a non-empty array of strings", arr);
    std::string names;
    for (const auto& v : arr) {
      if (!v.is_string()) r.type_error("architectures", "an array of strings", arr);
      if (const ArchitectureInfo* a = find_architecture_by_hf_class(v.get<std::string>())) return *a;
      names += (names.empty() ? "" : ", ") + v.get<std::string>();
    }
    fail_file(r.path(), "unsupported architecture '" + names + "' (supported: " + supported_hf_classes() + ")");
  }
  if (r.has("model_type")) {
    const std::string mt = r.string("model_type");
    if (const ArchitectureInfo* a = find_architecture_by_hf_model_type(mt)) return *a;
    fail_file(r.path(), "unsupported model_type '" + mt + "' (supported: " + supported_hf_classes() + ")");
  }
  fail_file(r.path(), "missing key 'architectures'");
}

RopeScaling hf_rope_scaling(const JsonReader& r) {
  RopeScaling rs;
  if (!r.has("rope_scaling")) return rs;
  const json& v = r.require("rope_scaling");
  if (!v.is_object()) r.type_error("rope_scaling", "an object or null", v);
  const JsonReader sub(v, r.path());
  std::string type;
  if (sub.has("rope_type")) type = sub.string("rope_type");
  else if (sub.has("type")) type = sub.string("type");
  else fail_file(r.path(), "'rope_scaling' has no 'rope_type'");
  auto factor = [&] {
    const double f = sub.number("factor");
    if (!(f > 0)) fail_file(r.path(), "'rope_scaling.factor' should be positive");
    return static_cast<float>(f);
  };
  if (type == "default") return rs;
  if (type == "linear") {
    rs.kind = RopeScalingKind::Linear;
    rs.factor = factor();
    return rs;
  }
  if (type == "llama3") {
    rs.kind = RopeScalingKind::Llama3;
    rs.factor = factor();
    rs.low_freq_factor = static_cast<float>(sub.number("low_freq_factor"));
    rs.high_freq_factor = static_cast<float>(sub.number("high_freq_factor"));
    rs.original_context = sub.positive("original_max_position_embeddings");
    if (!(rs.high_freq_factor > rs.low_freq_factor))
      fail_file(r.path(), "'rope_scaling': high_freq_factor must exceed low_freq_factor");
    return rs;
  }
  fail_file(r.path(), "unsupported rope_scaling type '" + type + "' (supported: linear, llama3)");
}

std::string key(const ModelConfig& c, std::string_view suffix) {
  return std::string(architecture(c).gguf_arch) + "." + std::string(suffix);
}

}  // namespace

double float_for_json(float f) { return std::stod(fmt::format("{}", f)); }

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_file(path, std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    fail_file(path, std::string("not valid JSON: ") + e.what());
  }
}

ModelConfig load_hf_config(const std::string& config_json_path) {
  return config_from_hf_json(read_json_file(config_json_path), config_json_path);
}

ModelConfig config_from_hf_json(const json& j, const std::string& path) {
  if (!j.is_object()) fail_file(path, std::string("should hold a JSON object, holds ") + j.type_name());
  const JsonReader r(j, path);
  const ArchitectureInfo& a = hf_architecture(r);
  const HFConfigKeys& k = a.keys;
  ModelConfig c = default_config(a);

  c.hidden_size = r.positive(k.hidden);
  c.n_layers = r.positive(k.layers);
  c.n_heads = r.positive(k.heads);
  c.n_kv_heads = r.has(k.kv_heads) ? r.positive(k.kv_heads) : c.n_heads;
  if (c.n_heads % c.n_kv_heads != 0)
    fail_file(path, "'" + std::string(k.heads) + "' (" + std::to_string(c.n_heads) + ") is not a multiple of '" +
                        std::string(k.kv_heads) + "' (" + std::to_string(c.n_kv_heads) + ")");
  if (r.has(k.head_dim)) {
    c.head_dim = r.positive(k.head_dim);
  } else {
    if (c.hidden_size % c.n_heads != 0)
      fail_file(path, "'" + std::string(k.hidden) + "' is not a multiple of '" + std::string(k.heads) + "'");
    c.head_dim = c.hidden_size / c.n_heads;
  }
  if (k.ffn_default_mult > 0 && !r.has(k.ffn)) c.ffn_size = k.ffn_default_mult * c.hidden_size;
  else c.ffn_size = r.positive(k.ffn);
  c.vocab_size = r.positive("vocab_size");
  c.context_length = r.positive(k.context);
  c.norm_eps = static_cast<float>(r.number(k.norm_eps));
  if (!(c.norm_eps >= 0)) fail_file(path, "'" + std::string(k.norm_eps) + "' should not be negative");

  if (r.has(k.activation)) {
    const std::string act = r.string(k.activation);
    bool ok = false;
    std::string list;
    for (auto s : k.activations) {
      ok = ok || s == act;
      list += (list.empty() ? "" : ", ") + std::string(s);
    }
    if (!ok) fail_file(path, "unsupported " + std::string(k.activation) + " '" + act + "' (supported: " + list + ")");
  }
  if (!k.attention_bias.empty() && r.boolean(k.attention_bias, false)) c.qkv_bias = c.attn_out_bias = true;
  if (!k.mlp_bias.empty() && r.boolean(k.mlp_bias, false)) c.ffn_bias = true;
  c.tied_embeddings = r.boolean("tie_word_embeddings", a.tied_default);
  if (!k.sliding_window.empty()) {
    const bool use = k.use_sliding_window.empty() ? true : r.boolean(k.use_sliding_window, false);
    c.sliding_window = (use && r.has(k.sliding_window)) ? r.positive(k.sliding_window) : 0;
  }
  if (c.position == PositionKind::Rope) {
    if (!k.rope_theta.empty()) c.rope_theta = static_cast<float>(r.number(k.rope_theta, 10000.0));
    if (!(c.rope_theta > 0)) fail_file(path, "'" + std::string(k.rope_theta) + "' should be positive");
    c.rope_dim = c.head_dim;
    c.rope_scaling = hf_rope_scaling(r);
  } else {
    c.rope_dim = 0;
  }
  return c;
}

ModelConfig config_from_gguf(const GGUFMetadata& md, const std::vector<GGUFTensorInfo>& tensors,
                             const std::string& path) {
  const std::string& arch = md.get_string("general.architecture");
  const ArchitectureInfo* a = find_architecture_by_gguf(arch);
  if (a == nullptr)
    fail_file(path, "unsupported GGUF architecture '" + arch + "' (supported: " + supported_gguf_archs() + ")");
  ModelConfig c = default_config(*a);
  const std::string p = arch + ".";
  auto positive = [&](const std::string& key, std::optional<int64_t> fallback = std::nullopt) {
    const int64_t v = fallback && !md.contains(key) ? *fallback : md.get_int(key);
    if (v <= 0) fail_file(path, "metadata '" + key + "' should be positive, is " + std::to_string(v));
    return v;
  };
  c.hidden_size = positive(p + "embedding_length");
  c.n_layers = positive(p + "block_count");
  c.ffn_size = positive(p + "feed_forward_length");
  c.n_heads = positive(p + "attention.head_count");
  c.n_kv_heads = positive(p + "attention.head_count_kv", c.n_heads);
  if (c.n_heads % c.n_kv_heads != 0) fail_file(path, "head_count is not a multiple of head_count_kv");
  c.context_length = positive(p + "context_length");
  if (!md.contains(p + "attention.key_length") && c.hidden_size % c.n_heads != 0)
    fail_file(path, "embedding_length is not a multiple of head_count and attention.key_length is missing");
  c.head_dim = positive(p + "attention.key_length", c.hidden_size / c.n_heads);
  c.norm_eps = static_cast<float>(md.get_float(
      p + (c.norm == NormKind::RMSNorm ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon")));
  c.sliding_window = md.get_int(p + "attention.sliding_window", 0);

  auto has_tensor = [&](const std::string& name) {
    for (const auto& t : tensors)
      if (t.name == name) return true;
    return false;
  };
  if (md.contains(p + "vocab_size")) {
    c.vocab_size = positive(p + "vocab_size");
  } else if (const GGUFValue* toks = md.find("tokenizer.ggml.tokens"); toks != nullptr && std::holds_alternative<GGUFArray>(toks->value)) {
    c.vocab_size = static_cast<int64_t>(std::get<GGUFArray>(toks->value).items.size());
  } else {
    for (const auto& t : tensors)
      if (t.name == "token_embd.weight" && t.ne.size() == 2) c.vocab_size = t.ne[1];
    if (c.vocab_size <= 0) fail_file(path, "cannot tell the vocabulary size (no tokenizer.ggml.tokens, no token_embd.weight)");
  }

  // Optional parts of the template are decided by the tensors of layer 0.
  auto blk0 = [&](std::string_view suffix) { return has_tensor("blk.0." + std::string(suffix)); };
  c.qkv_bias = blk0("attn_q.bias") || blk0("attn_qkv.bias");
  c.attn_out_bias = blk0("attn_output.bias");
  c.ffn_bias = blk0("ffn_up.bias");
  c.qk_norm = blk0("attn_q_norm.weight");
  c.gated_ffn = blk0("ffn_gate.weight") || (c.n_layers > 0 && !blk0("ffn_up.weight") && a->gated_ffn);
  c.tied_embeddings = !has_tensor("output.weight");

  if (c.position == PositionKind::Rope) {
    c.rope_theta = static_cast<float>(md.get_float(p + "rope.freq_base", 10000.0));
    c.rope_dim = positive(p + "rope.dimension_count", c.head_dim);
    if (c.rope_dim > c.head_dim || c.rope_dim % 2 != 0)
      fail_file(path, "rope.dimension_count " + std::to_string(c.rope_dim) + " does not fit head size " +
                          std::to_string(c.head_dim));
    const std::string type = md.get_string(p + "rope.scaling.type", md.contains(p + "rope.scale_linear") ? "linear" : "none");
    if (type == "linear") {
      c.rope_scaling.kind = RopeScalingKind::Linear;
      c.rope_scaling.factor = static_cast<float>(
          md.contains(p + "rope.scaling.factor") ? md.get_float(p + "rope.scaling.factor") : md.get_float(p + "rope.scale_linear"));
      if (!(c.rope_scaling.factor > 0)) fail_file(path, "rope scaling factor should be positive");
    } else if (type != "none") {
      fail_file(path, "unsupported rope.scaling.type '" + type + "' (supported: none, linear)");
    }
  }
  return c;
}

nlohmann::ordered_json config_to_hf_json(const ModelConfig& c) {
  const ArchitectureInfo& a = architecture(c);
  const HFConfigKeys& k = a.keys;
  nlohmann::ordered_json j;
  j["architectures"] = {std::string(a.hf_classes.front())};
  j["model_type"] = std::string(a.hf_model_type);
  auto put = [&](std::string_view key, auto v) {
    if (!key.empty()) j[std::string(key)] = v;
  };
  put(k.hidden, c.hidden_size);
  put(k.ffn, c.ffn_size);
  put(k.layers, c.n_layers);
  put(k.heads, c.n_heads);
  put(k.kv_heads, c.n_kv_heads);
  if (!k.head_dim.empty()) put(k.head_dim, c.head_dim);
  else if (c.head_dim * c.n_heads != c.hidden_size) fail(c.architecture + ": config.json cannot express head_dim " + std::to_string(c.head_dim));
  j["vocab_size"] = c.vocab_size;
  put(k.context, c.context_length);
  put(k.norm_eps, float_for_json(c.norm_eps));
  if (c.position == PositionKind::Rope) {
    put(k.rope_theta, float_for_json(c.rope_theta));
    if (c.rope_dim != c.head_dim) fail(c.architecture + ": config.json cannot express a partial rotary dimension");
    const RopeScaling& rs = c.rope_scaling;
    if (rs.kind == RopeScalingKind::None) {
      j["rope_scaling"] = nullptr;
    } else if (rs.kind == RopeScalingKind::Linear) {
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", float_for_json(rs.factor)}};
    } else {
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", float_for_json(rs.factor)},
                           {"low_freq_factor", float_for_json(rs.low_freq_factor)},
                           {"high_freq_factor", float_for_json(rs.high_freq_factor)},
                           {"original_max_position_embeddings", rs.original_context}};
    }
  }
  put(k.activation, std::string(k.activations.front()));
  if (!k.attention_bias.empty()) put(k.attention_bias, c.qkv_bias);
  if (!k.mlp_bias.empty()) put(k.mlp_bias, c.ffn_bias);
  if (!k.use_sliding_window.empty()) put(k.use_sliding_window, c.sliding_window > 0);
  if (!k.sliding_window.empty()) {
    if (c.sliding_window > 0) put(k.sliding_window, c.sliding_window);
    else j[std::string(k.sliding_window)] = nullptr;
  }
  j["tie_word_embeddings"] = c.tied_embeddings;
  return j;
}

void config_to_gguf_metadata(const ModelConfig& c, GGUFMetadata& md) {
  md.set("general.architecture", GGUFValue::str(std::string(architecture(c).gguf_arch)));
  auto u32 = [](int64_t v) { return GGUFValue::u32(static_cast<uint32_t>(v)); };
  md.set(key(c, "context_length"), u32(c.context_length));
  md.set(key(c, "embedding_length"), u32(c.hidden_size));
  md.set(key(c, "block_count"), u32(c.n_layers));
  md.set(key(c, "feed_forward_length"), u32(c.ffn_size));
  md.set(key(c, "attention.head_count"), u32(c.n_heads));
  md.set(key(c, "attention.head_count_kv"), u32(c.n_kv_heads));
  if (c.norm == NormKind::RMSNorm) md.set(key(c, "attention.layer_norm_rms_epsilon"), GGUFValue::f32(c.norm_eps));
  else md.set(key(c, "attention.layer_norm_epsilon"), GGUFValue::f32(c.norm_eps));
  if (c.position == PositionKind::Rope) {
    md.set(key(c, "rope.freq_base"), GGUFValue::f32(c.rope_theta));
    md.set(key(c, "rope.dimension_count"), u32(c.rope_dim));
    if (c.rope_scaling.kind == RopeScalingKind::Linear) {
      md.set(key(c, "rope.scaling.type"), GGUFValue::str("linear"));
      md.set(key(c, "rope.scaling.factor"), GGUFValue::f32(c.rope_scaling.factor));
    }
  }
  if (c.head_dim * c.n_heads != c.hidden_size) {
    md.set(key(c, "attention.key_length"), u32(c.head_dim));
    md.set(key(c, "attention.value_length"), u32(c.head_dim));
  }
  if (c.sliding_window > 0) md.set(key(c, "attention.sliding_window"), u32(c.sliding_window));
}

}  // namespace qeval
