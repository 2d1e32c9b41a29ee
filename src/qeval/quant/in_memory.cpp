#include "qeval/quant/in_memory.h"

#include <string>

#include "qeval/util/error.h"

namespace qeval::quant {

Calibration load_calibration_for(const std::string& file, const Tokenizer& tok, const CalibrationOptions& opts,
                                 int64_t context_length, std::string_view eval_text) {
  if (file.empty()) return {};
  Calibration calib = load_calibration(file, tok, opts, context_length);
  check_overlap(calib, tok, eval_text);
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
  if (spec.kv) {
    q->kv = std::make_unique<KvQuantHooks>(KvQuantHooks::from_spec(spec, engine.config().head_dim));
    q->hooks.add(q->kv.get());
  }
  if (!q->hooks.members().empty()) engine.set_hooks(&q->hooks);
  return q;
}

}  // namespace qeval::quant
