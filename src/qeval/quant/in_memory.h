#pragma once
// Applies a spec to a loaded engine for measurement (perplexity, kld, eval): weights are
// quantized in place and activation / KV-cache quantization hooks are installed. The returned
// object owns the hooks and must outlive the engine's use of them.
#include <memory>
#include <string_view>

#include "qeval/quant/act_quant.h"
#include "qeval/quant/kv_quant.h"
#include "qeval/quant/pipeline.h"

namespace qeval::quant {

struct InMemoryQuantization {
  QuantizedModelResult result;
  std::unique_ptr<ActivationQuantHooks> activations;
  std::unique_ptr<KvQuantHooks> kv;
  CompositeHooks hooks;
};

// `command` names the caller in errors ("perplexity: static activation scales need --calib FILE").
std::unique_ptr<InMemoryQuantization> quantize_in_memory(Engine& engine, const QuantSpec& spec, const Calibration& calib,
                                                         std::string_view command);

}  // namespace qeval::quant
