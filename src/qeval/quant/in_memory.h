#pragma once
// Applies a spec to a loaded engine for measurement (perplexity, kld, eval): weights are
// quantized in place and activation / KV-cache quantization hooks are installed. The returned
// object owns the hooks and must outlive the engine's use of them.
#include <memory>
#include <string>
#include <string_view>

#include "qeval/quant/act_quant.h"
#include "qeval/quant/kv_quant.h"
#include "qeval/quant/llmint8.h"
#include "qeval/quant/pipeline.h"

namespace qeval::quant {

struct InMemoryQuantization {
  QuantizedModelResult result;
  std::unique_ptr<ActivationQuantHooks> activations;
  std::unique_ptr<LlmInt8Hooks> llmint8;  // LLM.int8(): int8 per token over the regular features
  std::unique_ptr<KvQuantHooks> kv;
  CompositeHooks hooks;
};

// Calibration samples for measuring `eval_text`: loaded from `file` (none when empty), with a
// warning when they overlap the evaluation text.
Calibration load_calibration_for(const std::string& file, const Tokenizer& tok, const CalibrationOptions& opts,
                                 int64_t context_length, std::string_view eval_text);

// Activation hooks: LlmInt8Hooks for llmint8 (the outlier features of each quantized linear stay
// in full precision), ActivationQuantHooks for any other spec with activations; then KV hooks.
// `command` names the caller in errors ("perplexity: static activation scales need --calib FILE").
std::unique_ptr<InMemoryQuantization> quantize_in_memory(Engine& engine, const QuantSpec& spec, const Calibration& calib,
                                                         std::string_view command);

}  // namespace qeval::quant
