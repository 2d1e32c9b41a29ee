#pragma once
// Whole-model post-training quantization of an Engine's decoder linears, in place.
//
// WHICH LINEARS: every linear of every decoder block (attn_q/k/v/output, ffn_gate/up/down).
// The token embedding and the output head stay in full precision by default (as the GPTQ and
// AWQ papers and llama.cpp's low-bit recipes keep them at high precision); include_output adds
// the head (quantized last, RTN or GPTQ like the rest).
//
// ORDER, per decoder layer l = 0 .. n-1 (sequential: layer l is calibrated on the inputs the
// already-quantized layers < l produce):
//   1. one calibration forward recording the inputs of layer l's linears (max |x|, mean |x|,
//      and H = 2/n X^T X when AWQ or GPTQ needs it); all q/k/v... of the layer see the block's
//      inputs as computed with layer l still in full precision ("not true-sequential");
//   2. the transforms, in spec order (each folded so the float model computes the same
//      function; the statistics are rescaled analytically):
//        smoothquant: q/k/v (into attn_norm), gate/up (into ffn_norm); alpha = spec.smooth_alpha
//        awq: scale search (awq.h) for q/k/v (into attn_norm), o (into v's rows, only when v's
//             width equals o's input, i.e. no grouped-query attention, and v has no bias),
//             gate/up (into ffn_norm), down (into up's rows, gated FFNs only); then the
//             clipping search on every linear except q and k (their outputs go through
//             softmax, where the per-output error is a poor proxy);
//   3. the weight quantizer: GPTQ (spec.damp, spec.act_order) or RTN, with H from step 1
//      (rescaled by the transforms). Scales are rounded to F16 afterwards when fp16_scales
//      (default; they are stored in 16 bits, and GGUF Q4_0 / Q4_1 / Q8_0 store F16 scales); for
//      asymmetric grids the offset S*Z is F16 too (Q4_1's m): zero = fp16(S*Z)/S, not an integer.
// Costs n_layers calibration forwards (none for plain RTN without transforms).
//
// Activation / KV quantization in the spec is NOT applied here (it happens at run time):
// install make_runtime_hooks(spec) on the engine for evaluation.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/quant/calibration.h"
#include "qeval/quant/quantizer.h"
#include "qeval/quant/spec.h"

namespace qeval::quant {

struct PipelineOptions {
  bool quantize_weights = true;  // false: apply the transforms only (float model, same function)
  bool include_output = false;   // also quantize the output head
  bool fp16_scales = true;       // round stored scales to F16
  int awq_grid = 20;
  int clip_grid = 20;
  double clip_min_ratio = 0.5;
  bool awq_clip = true;
  int64_t batch = 16;            // calibration samples per forward call
  std::function<void(const std::string&)> log;  // progress lines (optional)
};

struct QuantizedLinear {
  LinearId id;
  QuantizedMatrix q;           // codes + stored parameters (what export writes)
  double error_before = -1.0;  // RTN output error sum d^T H d of the untransformed... (-1: no H)
  double error = -1.0;         // output error of the final weights vs the float weights it replaced
};

struct QuantizedModelResult {
  QuantSpec spec;
  std::vector<QuantizedLinear> linears;  // forward order
  int64_t quantized_params = 0;
  double bits_per_weight = 0.0;  // over the quantized linears: codes + scales + zeros (16 bits each)
  std::vector<std::string> notes; // what was applied where (e.g. "blk.0 awq qkv alpha 0.45")
};

// Supported: fp32 (nothing) and Int specs with weights, methods smoothquant / awq / gptq / rtn.
// Throws qeval::Error for specs it cannot apply (fp16/bf16, llmint8, spqr, no weight quantizer).
QuantizedModelResult quantize_model(Engine& engine, const QuantSpec& spec, const Calibration& calib,
                                    const PipelineOptions& options = {});

// Does the weight pipeline support this spec (and why not)?
bool pipeline_supports(const QuantSpec& spec, std::string* why = nullptr);

}  // namespace qeval::quant
