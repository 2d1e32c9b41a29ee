#include "qeval/quant/spec.h"

#include <array>
#include <charconv>
#include <map>

#include "qeval/util/error.h"

namespace qeval::quant {

namespace {

constexpr std::array<Target, 3> kTargets = {Target::Weights, Target::Activations, Target::KV};
constexpr int64_t kSpqrDefaultGroup = 16;
constexpr double kDefaultDamp = 0.01;
constexpr double kDefaultAlpha = 0.5;
constexpr double kDefaultOutlierThreshold = 6.0;

std::string fmt_num(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  return std::string(buf, r.ptr);
}

std::string q(std::string_view part) { return "'" + std::string(part) + "'"; }

std::string_view target_long_name(Target t) {
  switch (t) {
    case Target::Weights: return "weights are";
    case Target::Activations: return "activations are";
    case Target::KV: return "KV cache is";
  }
  return "?";
}

// Quantizer properties a modifier part sets.
enum class Kind : uint8_t { Symmetry, Clip, Rounding, Scale, Zero };

struct Modifier {
  std::string part;
  Kind kind;
  std::optional<Target> scope;
  bool asym = false;
  double value = 0.0;
  Rounding rounding = Rounding::Nearest;
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A part that starts a bits part: w<digit>, a<digit>, kv<digit>.
bool looks_like_bits(std::string_view p) {
  if (p.size() >= 2 && (p[0] == 'w' || p[0] == 'a') && is_digit(p[1])) return true;
  return p.size() >= 3 && p.substr(0, 2) == "kv" && is_digit(p[2]);
}

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  QuantSpec run() {
    if (s_.empty()) error("empty spec");
    split();
    const std::string_view first = parts_[0];
    for (size_t i = 0; i < parts_.size(); ++i) {
      const std::string_view p = parts_[i];
      if (p == "fp32" || p == "fp16" || p == "bf16") {
        if (parts_.size() > 1) error(q(p) + " stands alone (no other parts)");
      }
      if ((p == "llmint8" || p == "spqr") && i > 0) error(q(p) + " must be the first part");
    }
    if (first == "fp32") return with_family(Family::Fp32);
    if (first == "fp16") return with_family(Family::Fp16);
    if (first == "bf16") return with_family(Family::Bf16);
    if (first == "llmint8") return llmint8();

    size_t i = 0;
    spec_.family = Family::Int;
    if (first == "spqr") {
      spec_.family = Family::SpQR;
      i = 1;
      if (parts_.size() < 2 || !looks_like_bits(parts_[1]))
        error("'spqr' needs a weight bits part next, e.g. 'spqr-w3'");
    }
    if (!looks_like_bits(parts_[i])) {
      if (is_known_item(parts_[i]))
        error("the bits part (w<bits>, a<bits>, kv<bits>, e.g. 'w4g128') must come first, before " + q(parts_[i]));
      error("unknown part " + q(parts_[i]));
    }
    bits_part(parts_[i]);
    for (++i; i < parts_.size(); ++i) item(parts_[i]);
    resolve();
    return spec_;
  }

 private:
  [[noreturn]] void error(const std::string& what) const { throw Error("spec '" + std::string(s_) + "': " + what); }
  [[noreturn]] void error_in(const std::string& what, std::string_view part) const {
    error(what + " in part " + q(part));
  }

  void split() {
    size_t b = 0;
    while (true) {
      const size_t e = s_.find('-', b);
      const std::string_view p = s_.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b);
      if (p.empty()) error("empty part (a stray '-')");
      parts_.push_back(p);
      if (e == std::string_view::npos) break;
      b = e + 1;
    }
  }

  QuantSpec with_family(Family f) {
    spec_.family = f;
    return spec_;
  }

  // Decimal integer at p[pos...]; advances pos. No leading zeros, at most 9 digits.
  int64_t read_int(std::string_view part, size_t& pos, std::string_view what) const {
    const size_t b = pos;
    while (pos < part.size() && is_digit(part[pos])) ++pos;
    const std::string_view d = part.substr(b, pos - b);
    if (d.empty()) error_in("missing " + std::string(what), part);
    if (d.size() > 1 && d[0] == '0') error_in("number '" + std::string(d) + "' has a leading zero", part);
    if (d.size() > 9) error_in("number '" + std::string(d) + "' is too large", part);
    int64_t v = 0;
    for (char c : d) v = v * 10 + (c - '0');
    return v;
  }

  double read_num(std::string_view part, std::string_view text, std::string_view prefix) const {
    if (text.empty()) error_in("missing number after '" + std::string(prefix) + "'", part);
    size_t i = 0;
    while (i < text.size() && is_digit(text[i])) ++i;
    bool ok = i > 0;
    if (ok && i < text.size()) {
      ok = text[i] == '.' && i + 1 < text.size();
      for (size_t j = i + 1; ok && j < text.size(); ++j) ok = is_digit(text[j]);
    }
    if (!ok) error_in("bad number '" + std::string(text) + "' (expected digits[.digits])", part);
    double v = 0;
    auto r = std::from_chars(text.data(), text.data() + text.size(), v, std::chars_format::fixed);
    if (r.ec != std::errc() || r.ptr != text.data() + text.size()) error_in("bad number '" + std::string(text) + "'", part);
    return v;
  }

  std::optional<QuantizerConfig>& slot(Target t) {
    switch (t) {
      case Target::Weights: return spec_.weights;
      case Target::Activations: return spec_.activations;
      case Target::KV: return spec_.kv;
    }
    return spec_.weights;
  }

  void bits_part(std::string_view part) {
    bits_part_ = part;
    size_t pos = 0;
    int last = -1;
    while (pos < part.size()) {
      Target t;
      std::string_view letter;
      if (part.substr(pos, 2) == "kv") {
        t = Target::KV;
        letter = "kv";
      } else if (part[pos] == 'w') {
        t = Target::Weights;
        letter = "w";
      } else if (part[pos] == 'a') {
        t = Target::Activations;
        letter = "a";
      } else {
        error_in("unexpected '" + std::string(part.substr(pos)) + "' (expected w<bits>, a<bits> or kv<bits>)", part);
      }
      const int idx = static_cast<int>(t);
      if (idx == last || slot(t)) error_in("duplicated target '" + std::string(letter) + "'", part);
      if (idx < last) error_in("targets must appear in the order w, a, kv", part);
      last = idx;
      pos += letter.size();
      QuantizerConfig c;
      c.bits = static_cast<int>(read_int(part, pos, "bits after '" + std::string(letter) + "'"));
      if (c.bits < 2 || c.bits > 8) error_in("bits " + std::to_string(c.bits) + " out of range 2-8", part);
      c.granularity = t == Target::Weights ? Granularity::PerChannel : Granularity::PerToken;
      c.symmetric = t != Target::KV;  // the KV cache defaults to asymmetric (KIVI-style) groups
      if (pos < part.size() && part[pos] == 'g') {
        ++pos;
        c.group_size = read_int(part, pos, "group size after 'g'");
        if (c.group_size <= 0) error_in("group size must be positive", part);
        c.granularity = Granularity::PerGroup;
      } else if (pos < part.size() && part[pos] == 't') {
        ++pos;
        c.granularity = Granularity::PerTensor;
      }
      if (spec_.family == Family::SpQR) {
        if (t != Target::Weights) error_in("spqr quantizes weights only", part);
        if (c.granularity == Granularity::PerTensor) error_in("spqr quantizes in groups, not per tensor", part);
        if (c.granularity == Granularity::PerChannel) {
          c.granularity = Granularity::PerGroup;
          c.group_size = kSpqrDefaultGroup;
        }
        c.symmetric = false;
      }
      slot(t) = c;
    }
  }

  static bool is_known_item(std::string_view p) {
    static constexpr std::string_view kWords[] = {"smoothquant", "awq",  "gptq",    "rtn",     "actorder",
                                                  "static",      "asym", "sym",     "nearest", "floor",
                                                  "ceil",        "stochastic"};
    const std::string_view base = p.substr(0, p.find('@'));
    for (auto w : kWords)
      if (base == w) return true;
    for (std::string_view pre : {"alpha", "damp", "clip", "scale", "zero", "seed"})
      if (base.size() > pre.size() && base.substr(0, pre.size()) == pre && is_digit(base[pre.size()])) return true;
    return false;
  }

  // Remembers that `part` set `key`; a second setter is a duplicate (same text) or a conflict.
  void claim(const std::string& key, std::string_view part) {
    auto [it, fresh] = claims_.emplace(key, std::string(part));
    if (fresh) return;
    if (it->second == part) error("duplicated part " + q(part));
    error("conflicting parts " + q(it->second) + " and " + q(part));
  }

  void item(std::string_view part) {
    if (looks_like_bits(part))
      error("second bits part " + q(part) + " (write all targets in one part, e.g. 'w4a8kv4')");
    std::string_view base = part;
    std::optional<Target> scope;
    if (const size_t at = part.find('@'); at != std::string_view::npos) {
      base = part.substr(0, at);
      const std::string_view t = part.substr(at + 1);
      if (t == "w") scope = Target::Weights;
      else if (t == "a") scope = Target::Activations;
      else if (t == "kv") scope = Target::KV;
      else error_in("unknown target '" + std::string(t) + "' after '@' (expected w, a or kv)", part);
    }
    auto no_scope = [&] {
      if (scope) error_in(q(base) + " cannot be restricted to a target with '@'", part);
    };
    auto prefixed = [&](std::string_view pre) {
      return base.size() >= pre.size() && base.substr(0, pre.size()) == pre &&
             (base.size() == pre.size() || is_digit(base[pre.size()]) || base[pre.size()] == '.');
    };
    // Methods.
    if (base == "smoothquant" || base == "awq" || base == "gptq" || base == "rtn") {
      no_scope();
      if (spec_.family == Family::SpQR) error(q(base) + " cannot be combined with spqr");
      const bool quantizer = base == "gptq" || base == "rtn";
      if (quantizer) {
        claim("quantizer", part);
        quantizer_part_ = part;
        if (base == "gptq") spec_.methods.push_back(Method::Gptq);
      } else {
        claim(std::string(base), part);
        if (!quantizer_part_.empty())
          error(q(base) + " must come before " + q(quantizer_part_) +
                " (methods apply in the order written; the weight quantizer comes last)");
        spec_.methods.push_back(base == "awq" ? Method::Awq : Method::SmoothQuant);
      }
      method_parts_.emplace_back(base);
      return;
    }
    // Options.
    if (base == "actorder") {
      no_scope();
      claim("actorder", part);
      spec_.act_order = true;
      actorder_part_ = part;
      return;
    }
    if (base == "static") {
      no_scope();
      claim("static", part);
      spec_.static_activations = true;
      static_part_ = part;
      return;
    }
    if (prefixed("damp")) {
      no_scope();
      claim("damp", part);
      spec_.damp = read_num(part, base.substr(4), "damp");
      if (spec_.damp > 1.0) error_in("dampening " + fmt_num(spec_.damp) + " outside [0, 1]", part);
      damp_part_ = part;
      return;
    }
    if (prefixed("alpha")) {
      no_scope();
      claim("alpha", part);
      spec_.smooth_alpha = read_num(part, base.substr(5), "alpha");
      if (spec_.smooth_alpha > 1.0) error_in("alpha " + fmt_num(spec_.smooth_alpha) + " outside [0, 1]", part);
      alpha_part_ = part;
      return;
    }
    if (prefixed("seed")) {
      no_scope();
      claim("seed", part);
      size_t pos = 4;
      seed_ = static_cast<uint64_t>(read_int(part, pos, "seed after 'seed'"));
      if (pos != base.size()) error_in("bad seed", part);
      seed_part_ = part;
      return;
    }
    if (prefixed("t")) {
      no_scope();
      error_in("outlier threshold 't' is only for llmint8", part);
    }
    // Quantizer modifiers.
    Modifier m;
    m.part = std::string(part);
    m.scope = scope;
    if (base == "asym" || base == "sym") {
      if (spec_.family == Family::SpQR)
        error(q(part) + " not allowed with spqr (its quantizer is asymmetric by definition)");
      m.kind = Kind::Symmetry;
      m.asym = base == "asym";
    } else if (base == "nearest" || base == "floor" || base == "ceil" || base == "stochastic") {
      m.kind = Kind::Rounding;
      m.rounding = base == "floor" ? Rounding::Floor
                   : base == "ceil" ? Rounding::Ceil
                   : base == "stochastic" ? Rounding::Stochastic
                                          : Rounding::Nearest;
    } else if (prefixed("clip")) {
      m.kind = Kind::Clip;
      m.value = read_num(part, base.substr(4), "clip");
      if (!(m.value > 0.0 && m.value <= 1.0)) error_in("clip ratio " + fmt_num(m.value) + " outside (0, 1]", part);
    } else if (prefixed("scale")) {
      m.kind = Kind::Scale;
      m.value = read_num(part, base.substr(5), "scale");
      if (!(m.value > 0.0 && m.value < 2.0)) error_in("scale factor " + fmt_num(m.value) + " outside (0, 2)", part);
    } else if (prefixed("zero")) {
      m.kind = Kind::Zero;
      m.value = read_num(part, base.substr(4), "zero");
      if (m.value > 2.0) error_in("zero-point factor " + fmt_num(m.value) + " outside [0, 2]", part);
    } else {
      error("unknown part " + q(part));
    }
    modifiers_.push_back(std::move(m));
  }

  void resolve() {
    const bool w = spec_.weights.has_value(), a = spec_.activations.has_value();
    const bool gptq_like = spec_.uses_gptq() || spec_.family == Family::SpQR;
    for (const auto& name : method_parts_) {
      if ((name == "gptq" || name == "rtn" || name == "awq") && !w)
        error(q(name) + " needs quantized weights (a w<bits> bits part)");
      if (name == "smoothquant" && !(w && a))
        error("'smoothquant' needs quantized weights and activations (e.g. 'w8a8-smoothquant')");
    }
    if (!actorder_part_.empty() && !gptq_like) error(q(actorder_part_) + " needs 'gptq'");
    if (!damp_part_.empty() && !gptq_like) error(q(damp_part_) + " needs 'gptq'");
    if (!alpha_part_.empty() && !spec_.uses(Method::SmoothQuant)) error(q(alpha_part_) + " needs 'smoothquant'");
    if (!static_part_.empty()) {
      if (!a) error("'static' needs quantized activations (an a<bits> bits part)");
      if (spec_.activations->granularity == Granularity::PerGroup)
        error("'static' (per-tensor activation scales) conflicts with activation groups in part " + q(bits_part_));
      spec_.activations->granularity = Granularity::PerTensor;
    }
    for (const Modifier& m : modifiers_) {
      std::vector<Target> targets;
      if (m.scope) {
        if (!slot(*m.scope))
          error_in("the " + std::string(target_long_name(*m.scope)) + " not quantized in this spec", m.part);
        targets.push_back(*m.scope);
      } else {
        for (Target t : kTargets)
          if (slot(t)) targets.push_back(t);
      }
      for (Target t : targets) {
        claim("modifier" + std::to_string(static_cast<int>(m.kind)) + "@" + std::string(target_name(t)), m.part);
        QuantizerConfig& c = *slot(t);
        switch (m.kind) {
          case Kind::Symmetry: c.symmetric = !m.asym; break;
          case Kind::Clip: c.clip_ratio = m.value; break;
          case Kind::Rounding: c.rounding = m.rounding; break;
          case Kind::Scale: c.scale_factor = m.value; break;
          case Kind::Zero: c.zero_factor = m.value; break;
        }
      }
    }
    bool stochastic = false;
    for (Target t : kTargets)
      if (auto& c = slot(t); c && c->rounding == Rounding::Stochastic) {
        c->seed = seed_;
        stochastic = true;
      }
    if (!seed_part_.empty() && !stochastic) error(q(seed_part_) + " needs 'stochastic' rounding");
  }

  QuantSpec llmint8() {
    spec_.family = Family::LlmInt8;
    QuantizerConfig w;
    w.bits = 8;
    w.granularity = Granularity::PerChannel;
    QuantizerConfig a = w;
    a.granularity = Granularity::PerToken;
    spec_.weights = w;
    spec_.activations = a;
    for (size_t i = 1; i < parts_.size(); ++i) {
      const std::string_view p = parts_[i];
      if (p.size() >= 1 && p[0] == 't' && (p.size() == 1 || is_digit(p[1]) || p[1] == '.')) {
        claim("t", p);
        spec_.outlier_threshold = read_num(p, p.substr(1), "t");
        if (!(spec_.outlier_threshold > 0.0)) error_in("outlier threshold must be positive", p);
        continue;
      }
      error("part " + q(p) + " not allowed with 'llmint8' (it fixes w8a8; only t<threshold> may follow)");
    }
    return spec_;
  }

  std::string_view s_;
  std::vector<std::string_view> parts_;
  QuantSpec spec_;
  std::map<std::string, std::string> claims_;
  std::vector<Modifier> modifiers_;
  std::vector<std::string> method_parts_;
  std::string_view bits_part_, quantizer_part_, actorder_part_, damp_part_, alpha_part_, static_part_, seed_part_;
  uint64_t seed_ = 0;
};

// The string of one modifier kind for one target's quantizer; empty when it is the default
// (symmetric for weights and activations, asymmetric for the KV cache).
std::string modifier_text(Kind k, const QuantizerConfig& c, Target t) {
  switch (k) {
    case Kind::Symmetry:
      if (t == Target::KV) return c.symmetric ? "sym" : "";
      return c.symmetric ? "" : "asym";
    case Kind::Clip: return c.clip_ratio == 1.0 ? "" : "clip" + fmt_num(c.clip_ratio);
    case Kind::Rounding: return c.rounding == Rounding::Nearest ? "" : std::string(rounding_name(c.rounding));
    case Kind::Scale: return c.scale_factor == 1.0 ? "" : "scale" + fmt_num(c.scale_factor);
    case Kind::Zero: return c.zero_factor == 1.0 ? "" : "zero" + fmt_num(c.zero_factor);
  }
  return "";
}

std::string print(const QuantSpec& s) {
  switch (s.family) {
    case Family::Fp32: return "fp32";
    case Family::Fp16: return "fp16";
    case Family::Bf16: return "bf16";
    case Family::LlmInt8:
      return s.outlier_threshold == kDefaultOutlierThreshold ? "llmint8" : "llmint8-t" + fmt_num(s.outlier_threshold);
    case Family::Int:
    case Family::SpQR: break;
  }
  std::vector<std::string> parts;
  if (s.family == Family::SpQR) parts.emplace_back("spqr");
  std::string bits;
  for (Target t : kTargets) {
    const auto& c = s.config(t);
    if (!c) continue;
    bits += std::string(target_name(t)) + std::to_string(c->bits);
    if (c->granularity == Granularity::PerGroup) {
      if (!(s.family == Family::SpQR && c->group_size == kSpqrDefaultGroup)) bits += "g" + std::to_string(c->group_size);
    } else if (c->granularity == Granularity::PerTensor) {
      if (!(t == Target::Activations && s.static_activations)) bits += "t";
    }
  }
  parts.push_back(bits);
  for (Method m : s.methods) parts.emplace_back(method_name(m));
  if (s.uses(Method::SmoothQuant) && s.smooth_alpha != kDefaultAlpha) parts.push_back("alpha" + fmt_num(s.smooth_alpha));
  if (s.act_order) parts.emplace_back("actorder");
  if (s.damp != kDefaultDamp) parts.push_back("damp" + fmt_num(s.damp));
  if (s.static_activations) parts.emplace_back("static");
  auto emit = [&](Kind k) {
    std::vector<std::pair<Target, std::string>> texts;
    for (Target t : kTargets)
      if (const auto& c = s.config(t)) texts.emplace_back(t, modifier_text(k, *c, t));
    bool all_same = true;
    for (const auto& [t, x] : texts) all_same = all_same && x == texts.front().second;
    if (all_same) {
      if (!texts.empty() && !texts.front().second.empty()) parts.push_back(texts.front().second);
      return;
    }
    for (const auto& [t, x] : texts)
      if (!x.empty()) parts.push_back(x + "@" + std::string(target_name(t)));
  };
  if (s.family != Family::SpQR) emit(Kind::Symmetry);  // SpQR is asymmetric by definition
  emit(Kind::Clip);
  emit(Kind::Rounding);
  for (Target t : kTargets)
    if (const auto& c = s.config(t); c && c->rounding == Rounding::Stochastic) {
      if (c->seed != 0) parts.push_back("seed" + std::to_string(c->seed));
      break;
    }
  emit(Kind::Scale);
  emit(Kind::Zero);
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "-") + p;
  return out;
}

}  // namespace

std::string_view method_name(Method m) {
  switch (m) {
    case Method::SmoothQuant: return "smoothquant";
    case Method::Awq: return "awq";
    case Method::Gptq: return "gptq";
  }
  return "?";
}

std::string_view target_name(Target t) {
  switch (t) {
    case Target::Weights: return "w";
    case Target::Activations: return "a";
    case Target::KV: return "kv";
  }
  return "?";
}

QuantSpec QuantSpec::parse(std::string_view s) { return Parser(s).run(); }

std::string QuantSpec::str() const {
  std::string out;
  try {
    out = print(*this);
    if (parse(out) == *this) return out;
  } catch (const Error& e) {
    throw Error("QuantSpec: this configuration has no spec string (" + std::string(e.what()) + ")");
  }
  throw Error("QuantSpec: this configuration has no spec string (the closest, '" + out + "', means something else)");
}

const std::optional<QuantizerConfig>& QuantSpec::config(Target t) const {
  switch (t) {
    case Target::Weights: return weights;
    case Target::Activations: return activations;
    case Target::KV: return kv;
  }
  return weights;
}

bool QuantSpec::uses(Method m) const {
  for (Method x : methods)
    if (x == m) return true;
  return false;
}

std::string canonical_spec(std::string_view s) { return QuantSpec::parse(s).str(); }

}  // namespace qeval::quant
