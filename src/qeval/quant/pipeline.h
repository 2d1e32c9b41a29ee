#pragma once
// Whole-model post-training quantization of an Engine's decoder linears, in place.
//
// WHICH LINEARS: every linear of every decoder block (attn_q/k/v/output, ffn_gate/up/down).
// The token embedding and the output head stay in full precision by default (as the GPTQ and
// AWQ papers and llama.cpp's low-bit recipes keep them at high precision); include_output adds
// the head (quantized last, RTN or GPTQ like the rest).
//
// CALIBRATION is sequential and block-wise: every calibration sample's hidden state is kept
// (Engine::embed, [samples * seqlen, hidden] floats) and advanced one decoder block at a time
// (Engine::forward_block), so the whole model costs about 2 * n_layers block passes (none for
// plain RTN without transforms), not a full forward per layer. Per decoder layer l:
//   1. one pass of block l (float, as the already-quantized layers < l left its input) recording
//      the inputs of its linears: max |x|, mean |x|, and H = 2/n X^T X when AWQ, GPTQ or SpQR
//      needs it. q/k/v share one input, and so do gate/up: their statistics are collected once.
//      All linears of the layer see the block's inputs with layer l still in full precision
//      ("not true-sequential");
//   2. the transforms, in spec order (each folded so the float model computes the same
//      function; the statistics are rescaled analytically):
//        smoothquant: q/k/v (into attn_norm), gate/up (into ffn_norm); alpha = spec.smooth_alpha
//        awq: scale search (awq.h) for q/k/v (into attn_norm), o (into v's rows, only when v's
//             width equals o's input, i.e. no grouped-query attention, and v has no bias),
//             gate/up (into ffn_norm), down (into up's rows, gated FFNs only); then the
//             clipping search on every linear except q and k (their outputs go through
//             softmax, where the per-output error is a poor proxy);
//      with exact_folding (default) the scales are rounded to powers of two first, so folding
//      changes no float result (smoothquant.h round_to_power_of_two);
//   3. the weight quantizer:
//        Int:     GPTQ (spec.damp, spec.act_order) or RTN, with H from step 1 (rescaled by the
//                 transforms). Scales are rounded to F16 afterwards when fp16_scales (default;
//                 they are stored in 16 bits, and GGUF Q4_0 / Q4_1 / Q8_0 store F16 scales); for
//                 asymmetric grids the offset S*Z is F16 too (Q4_1's m): zero = fp16(S*Z)/S.
//        LlmInt8: llmint8_quantize with the input features' calibration max |x| (threshold
//                 spec.outlier_threshold): int8 per row over the regular columns, the outlier
//                 columns exact in the CSR outlier fields; QuantizedLinear::outlier_inputs lists
//                 them for the activation side (quantize_in_memory installs LlmInt8Hooks).
//        SpQR:    spqr_quantize (spqr_options(spec)) with H when calibration is given (plain
//                 squared-error saliency otherwise); codes, dequantized second-level scales and
//                 zeros, outliers in the CSR fields.
//   4. one pass of the quantized block l over the kept hidden states (the input of layer l+1).
// bits_per_weight counts codes, scales, zeros and outliers with each method's formula
// (effective_bits, llmint8 / spqr effective_bits).
//
// Activation / KV quantization in the spec is NOT applied here (it happens at run time):
// quantize_in_memory (in_memory.h) installs the hooks on the engine for evaluation.
#include <cstdint>
#include <functional>
#include <map>
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
  bool exact_folding = true;     // AWQ / SmoothQuant scales rounded to powers of two (exact folds)
  bool measure_errors = true;    // QuantizedLinear::error / error_before (two rows x in^2 products per linear)
  int awq_grid = 20;
  int clip_grid = 20;
  double clip_min_ratio = 0.5;
  bool awq_clip = true;
  int64_t batch = 16;            // calibration samples per forward call
  std::function<void(const std::string&)> log;  // what was applied where (optional)
  std::function<void(int done, int total)> progress;  // after each decoder layer (optional)
  // Mixed precision (mixed_precision.h): per-linear weight quantizers replacing spec.weights for
  // those linears. Integer specs with RTN or GPTQ only (AWQ / SmoothQuant search with one grid).
  std::map<LinearId, QuantizerConfig> layer_configs;
};

struct QuantizedLinear {
  LinearId id;
  QuantizedMatrix q;           // codes + stored parameters (what export writes)
  double error_before = -1.0;  // output error d^T H d of plain RTN on the same grid (-1: no H)
  double error = -1.0;         // output error of the final weights vs the float weights it replaced
  double bits_per_weight = 0;  // effective bits of this linear (codes, scales, zeros, outliers)
  std::vector<int64_t> outlier_inputs;  // LLM.int8(): input features kept in full precision
};

struct QuantizedModelResult {
  QuantSpec spec;
  std::vector<QuantizedLinear> linears;  // forward order
  int64_t quantized_params = 0;
  double bits_per_weight = 0.0;  // over the quantized linears: codes + scales + zeros + outliers
  std::vector<std::string> notes; // what was applied where (e.g. "blk.0 awq qkv alpha 0.45")
};

// Supported: fp32 (nothing), Int specs (methods smoothquant / awq / gptq / rtn), llmint8 (needs
// calibration) and spqr. Throws qeval::Error for specs it cannot apply (fp16/bf16).
QuantizedModelResult quantize_model(Engine& engine, const QuantSpec& spec, const Calibration& calib,
                                    const PipelineOptions& options = {});

// Does quantize_model need calibration samples for this spec (gptq, awq, smoothquant, llmint8)?
// (spqr uses them when given; static activation scales need them in quantize_in_memory.)
bool needs_calibration(const QuantSpec& spec);

// Does the weight pipeline support this spec (and why not)?
bool pipeline_supports(const QuantSpec& spec, std::string* why = nullptr);

}  // namespace qeval::quant
