#pragma once
// QuantSpec: the short string that names a quantization setup everywhere (CLI, plans, reports,
// result keys), and the structured configuration it stands for.
//
// GRAMMAR (parts separated by '-'; everything lower case; no spaces)
//   spec   := "fp32" | "fp16" | "bf16"                  no integer quantization (stands alone)
//           | "llmint8" ["-t" NUM]                       LLM.int8(): w8 per channel + a8 per token,
//                                                        input features with |x| >= t (default 6) in fp16
//           | ["spqr-"] bits {"-" item}
//   bits   := [w] [a] [kv]         one part, at least one target, in this order: w4a8kv4
//     w    := "w" BITS [gran]      weights;       default granularity per output channel
//     a    := "a" BITS [gran]      activations (inputs of the linear layers); default per token, dynamic
//     kv   := "kv" BITS [gran]     K and V before the cache; default one group per token and head
//                                  (the head's head_dim values; "g" INT: smaller groups inside a
//                                  head), ASYMMETRIC (see kind) — kv_quant.h
//     gran := "g" INT              groups of INT along the input / feature dimension (a shorter last group
//                                  where the row length is not a multiple)
//           | "t"                  per tensor
//   item   := method | option | modifier, in any order after the bits part
//   method := "smoothquant" | "awq"    transforms (per-input-channel scaling), each at most once
//           | "gptq" | "rtn"           the weight quantizer, at most one, after the transforms;
//                                      RTN is the default and is never printed
//             Methods apply in the order written: w4g128-awq-gptq = AWQ scaling, then GPTQ.
//   option := "alpha" NUM          SmoothQuant migration strength, [0, 1], default 0.5
//           | "actorder"           GPTQ: columns in order of decreasing H_ii (groups stay in the
//                                  original column order)
//           | "damp" NUM           GPTQ dampening, fraction of mean(diag H), [0, 1], default 0.01
//           | "static"             activation scales calibrated once per tensor (instead of per token,
//                                  dynamically); a8-static
//   modifier := kind ["@" ("w" | "a" | "kv")]   without '@': every quantized target; with: that one
//     kind := "asym" | "sym"       asymmetric / symmetric (default: symmetric for w and a,
//                                  asymmetric for kv; "sym@kv" or, alone, "kv4-sym" selects a
//                                  symmetric KV grid)
//           | "clip" NUM           clipping ratio in (0, 1], default 1
//           | "nearest" | "floor" | "ceil" | "stochastic"      rounding mode, default nearest
//           | "scale" NUM          multiply stored scales by NUM in (0, 2): scale1.01 = +1%, scale0.95 = -5%
//           | "zero" NUM           multiply stored zero-points by NUM in [0, 2]
//           | "seed" INT           seed of stochastic rounding (no '@'; default 0)
//   BITS := 2..8   INT := positive decimal integer without leading zeros   NUM := DIGITS["." DIGITS]
//
// "spqr-w<B>[g<G>]" is SpQR with a B-bit asymmetric base quantizer in groups of G (default 16);
// it takes weights only, no methods, no sym/asym; actorder, damp and the other modifiers apply.
//
// Rules (each violation is an Error "spec '<s>': <what is wrong> in part '<part>'"): bits in 2-8,
// group size positive, one bits part and it comes first, known parts only, no part twice, no two
// parts setting the same thing (asym + sym, gptq + rtn, asym + asym@w), methods and options only
// with what they need (gptq/awq need w, smoothquant needs w and a, actorder/damp need gptq or spqr,
// alpha needs smoothquant, static needs a and no activation groups, seed needs stochastic,
// '@x' needs target x quantized).
//
// CANONICAL FORM (what str() prints and results are stored under): defaults omitted; order
//   [spqr|llmint8] bits methods alpha actorder damp static asym clip rounding seed scale zero t
// a modifier is printed without '@' when all quantized targets share its non-default setting,
// otherwise once per target that differs from that target's default (w, a, kv order; so
// w4a8kv4-asym prints as w4a8kv4-asym@w-asym@a, the KV cache being asymmetric already). parse(s).str() == s for every canonical s; a valid non-canonical
// string (w4-sym-rtn, a8t-static, w4-asym@w) parses and prints its canonical form (w4, a8-static,
// w4-asym). Examples: fp32 w8 w4g128 w4g128-gptq w3g128-awq w8a8-smoothquant w4a8 w4a8kv4 kv3g64
// w4g32-asym llmint8 spqr-w3 w4g128-awq-gptq-actorder-asym w4a8kv4-asym@w kv4-sym w4-clip0.9-scale1.05
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/quant/quantizer.h"

namespace qeval::quant {

enum class Family : uint8_t {
  Fp32,     // nothing quantized (reference)
  Fp16,     // float casts, no integer quantization
  Bf16,     //
  Int,      // integer quantization described by targets, methods and options
  LlmInt8,  // LLM.int8() mixed-precision decomposition
  SpQR,     // SpQR sparse-quantized representation
};
enum class Method : uint8_t { SmoothQuant, Awq, Gptq };
enum class Target : uint8_t { Weights, Activations, KV };

std::string_view method_name(Method m);  // "smoothquant", "awq", "gptq"
std::string_view target_name(Target t);  // "w", "a", "kv"

struct QuantSpec {
  Family family = Family::Fp32;
  // Resolved quantizers (granularity, group size, defaults all filled in); nullopt = not quantized.
  std::optional<QuantizerConfig> weights;
  std::optional<QuantizerConfig> activations;
  std::optional<QuantizerConfig> kv;
  std::vector<Method> methods;  // application order; the weight quantizer is GPTQ if present, else RTN
  bool act_order = false;
  double damp = 0.01;
  double smooth_alpha = 0.5;
  bool static_activations = false;  // activations: per-tensor scales calibrated once
  double outlier_threshold = 6.0;   // LLM.int8()

  // Throws qeval::Error "spec '<s>': ..." naming the offending part.
  static QuantSpec parse(std::string_view s);
  // The canonical string. Throws qeval::Error when a hand-built spec has no string form.
  std::string str() const;

  const std::optional<QuantizerConfig>& config(Target t) const;
  bool quantizes(Target t) const { return config(t).has_value(); }
  bool uses(Method m) const;
  bool uses_gptq() const { return uses(Method::Gptq); }

  friend bool operator==(const QuantSpec&, const QuantSpec&) = default;
};

// QuantSpec::parse(s).str().
std::string canonical_spec(std::string_view s);

}  // namespace qeval::quant
