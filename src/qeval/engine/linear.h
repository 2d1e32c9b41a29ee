#pragma once
// A linear layer y = x W^T + b behind one interface, whatever the weights' storage.
//
// Formats (LinearWeights implementations):
//  - "dense-f32": float32 [out, in]. Points straight into the memory mapping when the file
//    tensor is F32 in logical row order; otherwise the tensor is dequantized to F32 once at
//    load. Many rows: OpenBLAS sgemm. One row (decode): the pool's multi-threaded GEMV.
//  - "ggml-q8-dot" / "ggml-f16-dot" (ggml_compat.h): integer / F16 kernels in llama.cpp's
//    arithmetic, used in ggml-compatible mode.
//  - packed ("f16/avx512", "q4_0/avx512", "w4g128/avx512", ...; kernels/packed_matrix.h):
//    F16, Q8_0, Q4_0, Q4_1 file tensors used in place from the mapping, and the packed
//    integer matrices of a QEval packed directory (Tensor::packed). Never expanded to a full
//    float matrix: one row (decode) runs the packed GEMV over the pool (rows split between
//    threads); several rows dequantize a tile of weight rows at a time into a small float
//    scratch and call sgemm on it. The name says the kernel and the instruction set picked at
//    run time. Results equal the dense-f32 path on the dequantized weights up to float
//    summation order (kernels/packed_matrix.h states the bound). Chosen automatically by
//    make_linear outside ggml-compatible mode; QEVAL_KERNELS=dense forces dense-f32 (A/B runs).
//  - further LinearWeights implementations can be installed with Engine::set_linear_weights;
//    the decoder only calls matmul().
//
// ggml-compatible mode (EngineOptions::ggml_compat): llama.cpp does not multiply in float32
// for non-F32 weights; it first rounds the activation row to the weight type's "vec_dot_type"
// (F16 for F16 weights, BF16 for BF16, Q8_0 per 32-block for Q4_0/Q5_0/Q8_0, Q8_1 for
// Q4_1/Q5_1, Q8_K per 256-block for K-quants). F16 and the 32-block types get the exact
// kernels of ggml_compat.h. BF16 and K-quants keep dense-f32 weights and Linear::rounding:
// the activation is rounded the same way (same scale, rounding rule and stored scale) and
// then multiplied in float, which leaves float summation order as the difference.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/engine/hooks.h"
#include "qeval/io/tensor.h"

namespace qeval {

class ThreadPool;

class LinearWeights {
 public:
  virtual ~LinearWeights() = default;
  virtual int64_t out_features() const = 0;
  virtual int64_t in_features() const = 0;
  virtual std::string_view format() const = 0;
  // y[r][o] = sum_i x[r][i] * W[o][i] for r < rows (x: rows x in, y: rows x out).
  virtual void matmul(const float* x, int64_t rows, float* y, ThreadPool& pool) const = 0;
  // The weights as dense floats [out][in] (a copy).
  virtual std::vector<float> to_f32() const = 0;
  // Bytes a full pass over the weights reads (what one decoded token costs in memory traffic);
  // float32 unless the format stores less.
  virtual size_t weight_bytes() const {
    return sizeof(float) * static_cast<size_t>(out_features()) * static_cast<size_t>(in_features());
  }
};

class DenseF32Weights final : public LinearWeights {
 public:
  // Borrow `w` (kept alive by `owner`), or own `values`.
  DenseF32Weights(const float* w, int64_t out, int64_t in, std::shared_ptr<const void> owner);
  DenseF32Weights(std::vector<float> values, int64_t out, int64_t in);
  int64_t out_features() const override { return out_; }
  int64_t in_features() const override { return in_; }
  std::string_view format() const override { return format_; }
  // Says why a quantized tensor runs dense ("dense-f32 (w3g128: no packed kernel)").
  void set_format(std::string name) { format_ = std::move(name); }
  void matmul(const float* x, int64_t rows, float* y, ThreadPool& pool) const override;
  std::vector<float> to_f32() const override;
  const float* data() const { return w_; }
  bool borrowed() const { return owned_.empty(); }

 private:
  const float* w_ = nullptr;
  int64_t out_ = 0, in_ = 0;
  std::shared_ptr<const void> owner_;
  std::vector<float> owned_;
  std::string format_ = "dense-f32";
};

// How the activation is rounded before the product (ggml-compatible mode).
enum class ActRounding { None, F16, BF16, Q8_0, Q8_1, Q8_K };
std::string_view act_rounding_name(ActRounding r);
// The rounding llama.cpp's CPU backend applies for weights of this type.
ActRounding ggml_act_rounding(DType weight_type);

// Round n activations in place as ggml's CPU quantizer for that type would, and dequantize
// back (Q8_0/Q8_1 codes times the F16-rounded scale; Q8_K codes times its float scale).
// n must be a multiple of the block size (32, or 256 for Q8_K).
void round_activation(ActRounding r, float* x, int64_t n);

struct Linear {
  LinearId id;
  DType source_type = DType::F32;  // the file tensor's type
  std::unique_ptr<LinearWeights> weights;
  std::vector<float> bias;         // empty or out_features
  ActRounding rounding = ActRounding::None;  // set only in ggml-compatible mode

  int64_t in_features() const { return weights->in_features(); }
  int64_t out_features() const { return weights->out_features(); }
};

// Builds a linear layer from a file tensor [out, in] (any dtype). F32 tensors without row
// reordering are borrowed from the mapping; F16 / Q8_0 / Q4_0 / Q4_1 and packed tensors get
// a packed kernel; everything else is dequantized once. In ggml-compatible mode the
// ggml-exact formats are used where one exists, dense-f32 otherwise (unchanged behaviour).
Linear make_linear(const LinearId& id, const Tensor& weight, const Tensor* bias, bool ggml_compat);

// The packed-kernel weights for a file tensor [out, in] (F16, Q8_0, Q4_0, Q4_1 or a packed
// tensor), or nullptr where no packed format applies. Ignores QEVAL_KERNELS.
std::unique_ptr<LinearWeights> make_packed_weights(const Tensor& weight);

}  // namespace qeval
