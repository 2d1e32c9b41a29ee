#include "qeval/quant/in_memory.h"

#include <fmt/format.h>

#include <optional>
#include <string>

#include "qeval/util/error.h"

namespace qeval::quant {

Calibration load_calibration_for(const std::string& file, const Tokenizer& tok, const CalibrationOptions& opts,
                                 int64_t context_length, std::string_view eval_text) {
  if (file.empty()) return {};
  Calibration calib = load_calibration(file, tok, opts, context_length);
  if (!eval_text.empty()) check_overlap(calib, tok, eval_text);
  return calib;
}

std::unique_ptr<InMemoryQuantization> quantize_in_memory(Engine& engine, const QuantSpec& spec, const Calibration& calib,
                                                         std::string_view command) {
  auto q = std::make_unique<InMemoryQuantization>();
  if (needs_calibration(spec) && calib.samples.empty())
    throw Error(std::string(command) + ": spec '" + spec.str() + "' needs calibration text (--calib FILE)");
  q->result = quantize_model(engine, spec, calib);
  if (spec.family == Family::LlmInt8) {
    std::map<LinearId, std::vector<int64_t>> outliers;
    for (const QuantizedLinear& ql : q->result.linears) outliers[ql.id] = ql.outlier_inputs;
    q->llmint8 = std::make_unique<LlmInt8Hooks>(std::move(outliers), spec.activations ? spec.activations->bits : 8);
    q->hooks.add(q->llmint8.get());
  } else if (spec.activations) {
    q->activations = std::make_unique<ActivationQuantHooks>(ActivationQuantHooks::from_spec(spec));
    if (spec.static_activations) {
      if (calib.samples.empty()) throw Error(std::string(command) + ": static activation scales need --calib FILE");
      calibrate_static(engine, *q->activations, calib.samples);
    }
    q->hooks.add(q->activations.get());
  }
  // KV cache: stored as codes where the cache holds the grid exactly (same results, less memory),
  // else simulated by hooks over the float cache.
  std::optional<KvFormat> stored_kv;
  if (spec.kv) {
    const int64_t head_dim = engine.config().head_dim;
    q->kv_storage = kv_storage_description(*spec.kv, head_dim);
    stored_kv = stored_kv_format(*spec.kv, head_dim);
    if (!stored_kv) {
      q->kv = std::make_unique<KvQuantHooks>(KvQuantHooks::from_spec(spec, head_dim));
      q->hooks.add(q->kv.get());
    }
  }
  engine.set_kv_format(stored_kv ? std::move(*stored_kv) : KvFormat{});
  if (!q->hooks.members().empty()) engine.set_hooks(&q->hooks);
  return q;
}

std::unique_ptr<InMemoryQuantization> quantize_for_command(Engine& engine, const Model& model, const Tokenizer& tok,
                                                           std::string_view spec_text, const CalibrationRequest& calib,
                                                           std::string_view eval_text, std::string_view command,
                                                           const std::function<void(const std::string&)>& report) {
  if (spec_text.empty()) return nullptr;
  const QuantSpec spec = QuantSpec::parse(spec_text);
  // Windows as long as the model was trained on (the engine's, when the file does not say).
  const int64_t window = model.config.context_length > 0 ? model.config.context_length : engine.context_length();
  const Calibration samples = load_calibration_for(calib.file, tok, calib.options, window, eval_text);
  auto q = quantize_in_memory(engine, spec, samples, command);
  if (report) report(in_memory_summary(*q));
  return q;
}

std::string in_memory_summary(const InMemoryQuantization& q) {
  const QuantizedModelResult& r = q.result;
  std::string s = r.linears.empty()
                      ? fmt::format("quantized in memory: {}, no linear weights quantized", r.spec.str())
                      : fmt::format("quantized in memory: {}, {} linears, {:.4f} bits per weight", r.spec.str(),
                                    r.linears.size(), r.bits_per_weight);
  if (r.spec.kv) s += ", KV cache " + q.kv_storage;
  return s;
}

}  // namespace qeval::quant
