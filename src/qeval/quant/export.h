#pragma once
// Writing a quantized model (QuantizedModelResult + the engine's transformed weights).
//
// GGUF (export_gguf): only where the scheme maps EXACTLY onto a ggml type, by writing our codes
// and scales into its blocks (no re-quantization, so GPTQ / AWQ results survive bit for bit up
// to the F16 scale, which the pipeline already rounds by default):
//   w4g32 (symmetric)       -> Q4_0: d = S, q = code        (ggml: d * (q - 8); our Z = 8; code 0
//                                                           is simply unused by our grid)
//   w4g32-asym              -> Q4_1: d = S, m = -S * Z, q = code   (d * q + m = S * (q - Z); the pipeline
//                                                           already stores Z = fp16(S*Z)/S)
//   w8g32 (symmetric)       -> Q8_0: d = S, q = code - 128
// with zero_factor 1 for the symmetric ones. A quantized linear whose row length is not a
// multiple of 32 (stories260K's ffn_down: 172) cannot be a ggml block type: it is written as F32
// holding its dequantized values (exact, counted as 32 bits per weight). Other tensors keep
// their type (token embedding, norms, output head unless quantized).
//
// PACKED (export_packed), for every other scheme: a self-contained directory (version 2)
//   quantized.safetensors: for each quantized linear NAME ("blk.0.attn_q"):
//       NAME.qweight          U8, packed codes (pack.h, little-endian bit stream, row-major [out, in])
//       NAME.scales           F32 [groups]  stored scales (GroupLayout::index order)
//       NAME.zeros            F32 [groups]  stored zero-points (asymmetric or perturbed only)
//       NAME.outlier_row_ptr  I64 [out+1]   } full-precision outliers (LLM.int8(), SpQR) as CSR
//       NAME.outlier_cols     I32 [k]       } over rows, ascending columns; only where the
//       NAME.outlier_values   F32 [k]       } matrix has outliers
//     and every other tensor of the model as F32 under its canonical name (norms carry folded
//     AWQ / SmoothQuant scales). I64 tensors come first, then F32/I32, then U8, so every value
//     is aligned in the file and is used in place from the mapping.
//     __metadata__ {"format": "qeval-packed", "version": "2"}
//   model.gguf: no tensors; the architecture, configuration and every tokenizer.* key as GGUF
//     metadata (plus, for an HF source, its tokenizer files copied beside it).
//   quant_config.json (written last; its presence marks a complete directory): spec,
//     bits_per_weight, tied_embeddings, and per linear its shape, bits, granularity,
//     group_size, whether zeros are stored and the outlier count.
// load_packed_model() maps the directory and gives every quantized linear as a Tensor with a
// PackedWeight (io/packed_weight.h) pointing into the mapping: the engine runs it with its
// packed kernels (engine/linear.h), never holding a float copy; Tensor::to_f32 dequantizes
// for code that needs floats. Version 1 directories (configuration and tokenizer taken from
// the source model named by "base_model") still load.
//
// SIMULATED (export_simulated): the dequantized model as GGUF F32 (.gguf) or HF F32 (directory).
//
// All writers are deterministic: the same model, spec, calibration and seed give identical bytes.
#include <optional>
#include <string>

#include "qeval/engine/engine.h"
#include "qeval/io/dtype.h"
#include "qeval/io/model.h"
#include "qeval/quant/pipeline.h"

namespace qeval::quant {

struct ExportInfo {
  std::string path;
  std::string format;             // "gguf Q4_0", "packed", "gguf F32 (simulated)", "hf F32 (simulated)"
  double bits_per_weight = 0.0;   // over the quantized linears as stored (scales, zeros, F32 fallbacks)
  int64_t quantized_params = 0;
  int64_t fallback_linears = 0;   // GGUF: linears written as F32
};

// The ggml type matching the spec's weight grid exactly, or nullopt.
std::optional<DType> gguf_type_for(const QuantSpec& spec);

// The model as `engine` computes it now: every decoder linear, norm (and bias) taken from the
// engine as F32; embeddings and an unquantized head from `source`.
Model snapshot_model(const Model& source, Engine& engine, bool include_output);

ExportInfo export_gguf(const Model& source, Engine& engine, const QuantizedModelResult& q, const std::string& path);
ExportInfo export_packed(const Model& source, Engine& engine, const QuantizedModelResult& q, const std::string& dir);
// gguf: true -> GGUF F32 file, false -> HF F32 directory.
ExportInfo export_simulated(const Model& source, Engine& engine, const QuantizedModelResult& q, const std::string& path,
                            bool gguf);

bool is_packed_model(const std::string& path);
Model load_packed_model(const std::string& dir);
// load_packed_model for packed directories, load_model otherwise.
Model load_any_model(const std::string& path);

}  // namespace qeval::quant
