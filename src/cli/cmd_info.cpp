// qeval info MODEL: architecture, hyperparameters and a per-type size table of a model.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "cli/command.h"
#include "qeval/io/hf_config.h"
#include "qeval/io/model.h"

namespace qeval::cli {
namespace {

struct InfoArgs {
  std::string model;
  bool json = false;
  bool tensors = false;
};

const char* norm_name(NormKind k) { return k == NormKind::RMSNorm ? "RMSNorm" : "LayerNorm"; }
const char* act_name(ActivationKind k) { return k == ActivationKind::SiLU ? "SiLU" : "GELU (tanh)"; }
const char* rope_scaling_name(RopeScalingKind k) {
  switch (k) {
    case RopeScalingKind::None: return "none";
    case RopeScalingKind::Linear: return "linear";
    case RopeScalingKind::Llama3: return "llama3";
  }
  return "?";
}

// "blk.3.ffn_down.weight" -> "ffn_down.weight"
std::string tensor_kind(const std::string& name) {
  if (name.rfind("blk.", 0) == 0) {
    const auto dot = name.find('.', 4);
    if (dot != std::string::npos) return name.substr(dot + 1);
  }
  return name;
}

std::string human_bytes(uint64_t b) {
  if (b < 1024) return fmt::format("{} B", b);
  if (b < (uint64_t{1} << 20)) return fmt::format("{:.2f} KiB", static_cast<double>(b) / 1024);
  if (b < (uint64_t{1} << 30)) return fmt::format("{:.2f} MiB", static_cast<double>(b) / (1 << 20));
  return fmt::format("{:.2f} GiB", static_cast<double>(b) / (1 << 30));
}

std::string human_count(int64_t n) {
  if (n < 1000) return std::to_string(n);
  if (n < 1000000) return fmt::format("{:.2f} K", static_cast<double>(n) / 1e3);
  if (n < 1000000000) return fmt::format("{:.2f} M", static_cast<double>(n) / 1e6);
  return fmt::format("{:.2f} B", static_cast<double>(n) / 1e9);
}

struct TypeRow {
  int64_t tensors = 0;
  int64_t params = 0;
  uint64_t bytes = 0;
  std::set<std::string> kinds;
};

int run_info(const InfoArgs& a) {
  const Model m = load_model(a.model);
  const ModelConfig& c = m.config;

  std::map<std::string, TypeRow> by_type;
  int64_t params = 0;
  uint64_t bytes = 0;
  int64_t count = 0;
  for (const auto& [name, t] : m.tensors) {
    if (m.is_alias(name)) continue;
    TypeRow& r = by_type[std::string(dtype_name(t.dtype))];
    r.tensors += 1;
    r.params += t.numel();
    r.bytes += t.nbytes;
    r.kinds.insert(tensor_kind(name));
    params += t.numel();
    bytes += t.nbytes;
    count += 1;
  }
  const double bpw = params > 0 ? static_cast<double>(bytes) * 8.0 / static_cast<double>(params) : 0.0;
  const bool tied_alias = m.is_alias("output.weight");
  const std::string format = m.format == ModelFormat::GGUF ? "gguf" : "hf";

  if (a.json) {
    nlohmann::ordered_json j;
    j["path"] = m.path;
    j["format"] = format;
    j["name"] = m.metadata.get_string("general.name", "");
    j["architecture"] = c.architecture;
    j["config"] = {
        {"n_layers", c.n_layers},          {"hidden_size", c.hidden_size},
        {"n_heads", c.n_heads},            {"n_kv_heads", c.n_kv_heads},
        {"head_dim", c.head_dim},          {"ffn_size", c.ffn_size},
        {"vocab_size", c.vocab_size},      {"context_length", c.context_length},
        {"norm", norm_name(c.norm)},       {"norm_eps", float_for_json(c.norm_eps)},
        {"activation", act_name(c.activation)}, {"gated_ffn", c.gated_ffn},
        {"position", c.position == PositionKind::Rope ? "rope" : "learned"},
        {"rope_theta", float_for_json(c.rope_theta)},      {"rope_dim", c.rope_dim},
        {"rope_scaling", {{"type", rope_scaling_name(c.rope_scaling.kind)},
                          {"factor", float_for_json(c.rope_scaling.factor)},
                          {"low_freq_factor", float_for_json(c.rope_scaling.low_freq_factor)},
                          {"high_freq_factor", float_for_json(c.rope_scaling.high_freq_factor)},
                          {"original_context", c.rope_scaling.original_context}}},
        {"sliding_window", c.sliding_window}, {"qkv_bias", c.qkv_bias},
        {"qk_norm", c.qk_norm},            {"tied_embeddings", c.tied_embeddings},
    };
    j["parameters"] = params;
    j["tensor_count"] = count;
    j["total_bytes"] = bytes;
    j["bits_per_weight"] = bpw;
    j["output_aliases_token_embd"] = tied_alias;
    nlohmann::ordered_json types = nlohmann::ordered_json::array();
    for (const auto& [type, r] : by_type)
      types.push_back({{"type", type},
                       {"tensors", r.tensors},
                       {"parameters", r.params},
                       {"bytes", r.bytes},
                       {"bits_per_weight", r.params ? static_cast<double>(r.bytes) * 8.0 / static_cast<double>(r.params) : 0.0},
                       {"kinds", std::vector<std::string>(r.kinds.begin(), r.kinds.end())}});
    j["types"] = types;
    if (a.tensors) {
      nlohmann::ordered_json ts = nlohmann::ordered_json::array();
      for (const auto& [name, t] : m.tensors)
        ts.push_back({{"name", name}, {"type", dtype_name(t.dtype)}, {"shape", t.shape}, {"bytes", t.nbytes},
                      {"alias", m.is_alias(name)}});
      j["tensors"] = ts;
    }
    std::fputs((j.dump(2) + "\n").c_str(), stdout);
    return 0;
  }

  std::string out;
  auto line = [&](std::string_view key, const std::string& value) { out += fmt::format("{:<16}{}\n", key, value); };
  line("model", m.path + (m.format == ModelFormat::GGUF ? " (GGUF)" : " (HF directory)"));
  if (auto n = m.metadata.get_string("general.name", ""); !n.empty()) line("name", n);
  line("architecture", c.architecture);
  line("layers", std::to_string(c.n_layers));
  line("hidden", std::to_string(c.hidden_size));
  line("heads", fmt::format("{} (kv heads {}, head_dim {})", c.n_heads, c.n_kv_heads, c.head_dim));
  line("ffn", fmt::format("{} ({}{})", c.ffn_size, act_name(c.activation), c.gated_ffn ? ", gated" : ""));
  line("vocab", std::to_string(c.vocab_size));
  line("context", std::to_string(c.context_length) +
                      (c.sliding_window > 0 ? fmt::format(" (sliding window {})", c.sliding_window) : ""));
  if (c.position == PositionKind::Rope) {
    std::string rope = fmt::format("theta {}, dim {}, scaling {}", c.rope_theta, c.rope_dim, rope_scaling_name(c.rope_scaling.kind));
    if (c.rope_scaling.kind == RopeScalingKind::Linear) rope += fmt::format(" x{}", c.rope_scaling.factor);
    if (c.rope_scaling.kind == RopeScalingKind::Llama3)
      rope += fmt::format(" (factor {}, low {}, high {}, original context {})", c.rope_scaling.factor,
                          c.rope_scaling.low_freq_factor, c.rope_scaling.high_freq_factor, c.rope_scaling.original_context);
    line("rope", rope);
  } else {
    line("positions", "learned");
  }
  line("norm", fmt::format("{} eps {}", norm_name(c.norm), c.norm_eps));
  std::string extras;
  if (c.qkv_bias) extras += " qkv-bias";
  if (c.attn_out_bias) extras += " out-bias";
  if (c.ffn_bias) extras += " ffn-bias";
  if (c.qk_norm) extras += " qk-norm";
  if (!extras.empty()) line("extras", extras.substr(1));
  line("tied", c.tied_embeddings ? (tied_alias ? "yes (output.weight = token_embd.weight)" : "yes") : "no");
  line("parameters", fmt::format("{} ({})", human_count(params), params));
  line("tensors", std::to_string(count));
  line("size", fmt::format("{} ({} bytes)", human_bytes(bytes), bytes));
  line("bits/weight", fmt::format("{:.2f}", bpw));
  out += "\n";
  out += fmt::format("{:<6} {:>7} {:>12} {:>14} {:>7} {:>6}  {}\n", "type", "tensors", "params", "bytes", "bpw", "share",
                     "kinds");
  for (const auto& [type, r] : by_type) {
    std::string kinds;
    size_t shown = 0;
    for (const auto& k : r.kinds) {
      if (shown == 6) {
        kinds += ", ...";
        break;
      }
      kinds += (shown++ ? ", " : "") + k;
    }
    out += fmt::format("{:<6} {:>7} {:>12} {:>14} {:>7.2f} {:>5.1f}%  {}\n", type, r.tensors, r.params, r.bytes,
                       r.params ? static_cast<double>(r.bytes) * 8.0 / static_cast<double>(r.params) : 0.0,
                       bytes ? 100.0 * static_cast<double>(r.bytes) / static_cast<double>(bytes) : 0.0, kinds);
  }
  out += fmt::format("{:<6} {:>7} {:>12} {:>14} {:>7.2f} {:>5.1f}%\n", "total", count, params, bytes, bpw, 100.0);
  if (a.tensors) {
    out += "\n";
    for (const auto& [name, t] : m.tensors)
      out += fmt::format("{:<32} {:<5} {:<16} {:>12}{}\n", name, dtype_name(t.dtype), shape_string(t.shape), t.nbytes,
                         m.is_alias(name) ? "  (alias of token_embd.weight)" : "");
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

std::function<int()> setup_info(CLI::App& app) {
  auto args = std::make_shared<InfoArgs>();
  app.add_option("model", args->model, "GGUF file or HF model directory")->required();
  app.add_flag("--json", args->json, "Machine-readable JSON output");
  app.add_flag("--tensors", args->tensors, "Also list every tensor (name, type, shape, bytes)");
  return [args] { return run_info(*args); };
}

}  // namespace

QEVAL_COMMAND("info", "Show a model's architecture, hyperparameters and tensor types", setup_info);

}  // namespace qeval::cli
