#include "qeval/engine/hooks.h"

#include <array>
#include <charconv>

namespace qeval {

namespace {
constexpr std::array<std::string_view, 8> kRoleNames = {"attn_q",  "attn_k", "attn_v",   "attn_output",
                                                        "ffn_gate", "ffn_up", "ffn_down", "output"};
}

std::string_view role_name(LinearRole role) { return kRoleNames[static_cast<size_t>(role)]; }

std::optional<LinearRole> role_from_name(std::string_view name) {
  for (size_t i = 0; i < kRoleNames.size(); ++i)
    if (kRoleNames[i] == name) return static_cast<LinearRole>(i);
  return std::nullopt;
}

std::string LinearId::name() const {
  if (role == LinearRole::Output) return "output";
  return "blk." + std::to_string(layer) + "." + std::string(role_name(role));
}

std::optional<LinearId> LinearId::parse(std::string_view s) {
  if (s.ends_with(".weight")) s.remove_suffix(7);
  if (s == "output") return LinearId::output();
  if (!s.starts_with("blk.")) return std::nullopt;
  s.remove_prefix(4);
  const size_t dot = s.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  int layer = -1;
  auto [p, ec] = std::from_chars(s.data(), s.data() + dot, layer);
  if (ec != std::errc() || p != s.data() + dot || layer < 0) return std::nullopt;
  auto role = role_from_name(s.substr(dot + 1));
  if (!role || *role == LinearRole::Output) return std::nullopt;
  return LinearId{layer, *role};
}

}  // namespace qeval
