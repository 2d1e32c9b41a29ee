#pragma once
// Applies a spec to a loaded engine for measurement (perplexity, kld, eval): weights are
// quantized in place and activation / KV-cache quantization hooks are installed. A KV grid a
// stored cache holds exactly (kv_quant.h) sets the engine's KV format instead of a hook (caches
// the engine creates from then on store codes; results are identical). The returned object owns
// the hooks and must outlive the engine's use of them.
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "qeval/io/model.h"
#include "qeval/quant/act_quant.h"
#include "qeval/quant/kv_quant.h"
#include "qeval/quant/llmint8.h"
#include "qeval/quant/pipeline.h"
#include "qeval/tokenizer/tokenizer.h"

namespace qeval::quant {

struct InMemoryQuantization {
  QuantizedModelResult result;
  std::unique_ptr<ActivationQuantHooks> activations;
  std::unique_ptr<LlmInt8Hooks> llmint8;  // LLM.int8(): int8 per token over the regular features
  std::unique_ptr<KvQuantHooks> kv;  // simulated KV quantization; null when the cache stores codes
  std::string kv_storage = "f32";    // kv_storage_description(): "kv4 (stored: q4 asym per token+head)"
  CompositeHooks hooks;
};

// Calibration samples for measuring `eval_text`: loaded from `file` (none when empty), with a
// warning when they overlap the evaluation text (not checked when `eval_text` is empty).
Calibration load_calibration_for(const std::string& file, const Tokenizer& tok, const CalibrationOptions& opts,
                                 int64_t context_length, std::string_view eval_text);

// Activation hooks: LlmInt8Hooks for llmint8 (the outlier features of each quantized linear stay
// in full precision), ActivationQuantHooks for any other spec with activations; then KV hooks.
// `command` names the caller in errors ("perplexity: static activation scales need --calib FILE").
std::unique_ptr<InMemoryQuantization> quantize_in_memory(Engine& engine, const QuantSpec& spec, const Calibration& calib,
                                                         std::string_view command);

// ---- The --spec / --calib handling shared by the commands (perplexity, kld, eval, bench, serve) ----

// What a command was asked for with --calib / --calib-samples / --calib-seqlen / --calib-seed.
struct CalibrationRequest {
  std::string file;            // calibration text; none when empty
  CalibrationOptions options;  // windows, window length, sampling seed
};

// Parses `spec_text`, loads the calibration (windows of the model's context length; a warning
// when they overlap `eval_text`, not checked when it is empty), quantizes in memory as
// quantize_in_memory does and hands `report` one line saying what was done (in_memory_summary).
// `command` names the caller in errors. Returns null (and does nothing) when `spec_text` is empty.
std::unique_ptr<InMemoryQuantization> quantize_for_command(Engine& engine, const Model& model, const Tokenizer& tok,
                                                           std::string_view spec_text, const CalibrationRequest& calib,
                                                           std::string_view eval_text, std::string_view command,
                                                           const std::function<void(const std::string&)>& report = {});

// "quantized in memory: w4a8kv4, 35 linears, 4.5000 bits per weight, KV cache kv4 (stored: q4 asym
// per token+head)"; the KV part only when the spec quantizes the cache.
std::string in_memory_summary(const InMemoryQuantization& q);

}  // namespace qeval::quant
