#pragma once
// A tensor as QEval sees it, whatever file it came from: name, element type, shape in
// row-major order (outermost first, as numpy/safetensors write it; a GGUF ne[] is reversed),
// and a pointer to its bytes inside a memory mapping (or an owned buffer). No copy is made
// until a caller asks for floats.
//
// A tensor may instead carry a packed low-bit matrix (`packed`, io/packed_weight.h; dtype U8,
// data = its code stream, nbytes = all its storage): the engine runs it with its packed kernels, and
// row_to_f32 / to_f32 dequantize it. bytes_per_row / row_data do not apply to it.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qeval/io/dtype.h"
#include "qeval/io/packed_weight.h"

namespace qeval {

struct Tensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // row-major: {rows, cols} for a matrix [out_features, in_features]
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<const void> owner;  // keeps the mapping or buffer alive

  // When set, logical row r is stored at physical row row_order[r]. Used to reconcile
  // rotary layouts (GGUF llama Q/K rows) without copying the file's bytes.
  std::vector<int32_t> row_order;

  // Set for a packed low-bit matrix (quantized linear of a packed directory).
  std::shared_ptr<const PackedWeight> packed;
  // Set by quant::load_packed_model on the linear weights of a packed directory whose spec
  // quantizes activations per token (dynamic, symmetric, round to nearest): the engine quantizes
  // each input row of the layer this way before the product (engine/linear_int8_activation.h).
  int input_quant_bits = 0;        // 0: the input stays float
  float input_quant_clip = 1.0f;   // the spec's clipping ratio for activations

  int64_t numel() const;
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }
  size_t bytes_per_row() const;
  const uint8_t* row_data(int64_t logical_row) const;

  void row_to_f32(int64_t logical_row, float* out) const;  // cols() floats
  std::vector<float> to_f32() const;                        // numel() floats, logical order

  // A tensor owning its own float32 data (results of transforms, synthetic models, tests).
  static Tensor from_f32(std::string name, std::vector<int64_t> shape, std::vector<float> values);
  // A tensor owning arbitrary encoded bytes.
  static Tensor from_bytes(std::string name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  // A tensor [rows, cols] standing for a packed matrix (validated; throws naming `name`).
  static Tensor from_packed(std::string name, std::shared_ptr<const PackedWeight> packed);
};

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace qeval
