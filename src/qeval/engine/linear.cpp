#include "qeval/engine/linear.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "qeval/engine/ggml_compat.h"
#include "qeval/engine/ops.h"
#include "qeval/engine/thread_pool.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"

namespace qeval {

DenseF32Weights::DenseF32Weights(const float* w, int64_t out, int64_t in, std::shared_ptr<const void> owner)
    : w_(w), out_(out), in_(in), owner_(std::move(owner)) {}

DenseF32Weights::DenseF32Weights(std::vector<float> values, int64_t out, int64_t in)
    : out_(out), in_(in), owned_(std::move(values)) {
  if (static_cast<int64_t>(owned_.size()) != out * in)
    throw Error("linear weights: " + std::to_string(owned_.size()) + " values for shape [" + std::to_string(out) +
                ", " + std::to_string(in) + "]");
  w_ = owned_.data();
}

void DenseF32Weights::matmul(const float* x, int64_t rows, float* y, ThreadPool& pool) const {
  if (rows <= 0) return;
  if (rows == 1) {
    // GEMV: each output row is one dot product computed by one thread, so the result does not
    // depend on the thread count.
    const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, in_));
    pool.parallel_for(out_, grain, [&](int64_t b, int64_t e, int) {
      for (int64_t o = b; o < e; ++o) y[o] = ops::dot(x, w_ + o * in_, in_);
    });
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(rows), static_cast<blasint>(out_),
              static_cast<blasint>(in_), 1.0f, x, static_cast<blasint>(in_), w_, static_cast<blasint>(in_), 0.0f, y,
              static_cast<blasint>(out_));
}

std::vector<float> DenseF32Weights::to_f32() const { return std::vector<float>(w_, w_ + out_ * in_); }

std::string_view act_rounding_name(ActRounding r) {
  switch (r) {
    case ActRounding::None: return "none";
    case ActRounding::F16: return "f16";
    case ActRounding::BF16: return "bf16";
    case ActRounding::Q8_0: return "q8_0";
    case ActRounding::Q8_1: return "q8_1";
    case ActRounding::Q8_K: return "q8_K";
  }
  return "?";
}

ActRounding ggml_act_rounding(DType t) {
  switch (t) {
    case DType::F16: return ActRounding::F16;
    case DType::BF16: return ActRounding::BF16;
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0: return ActRounding::Q8_0;
    case DType::Q4_1:
    case DType::Q5_1: return ActRounding::Q8_1;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return ActRounding::Q8_K;
    default: return ActRounding::None;
  }
}

namespace {

inline float round_f16(float v) { return fp16_to_f32(f32_to_fp16(v)); }

// ggml's x86 quantize_row_q8_0 / q8_1 (the AVX path llama.cpp runs on this CPU family):
// d = amax / 127 (stored as F16), values scaled by 127 / amax and rounded half to even.
void round_q8_block32(float* x) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  const float id = amax != 0.0f ? 127.f / amax : 0.0f;
  const float d16 = round_f16(d);
  for (int j = 0; j < 32; ++j) x[j] = d16 * std::nearbyint(x[j] * id);
}

// ggml's quantize_row_q8_K_ref: scale from the signed value of largest magnitude,
// iscale = -127/max, nearest-even rounding, d = 1/iscale kept in float32.
void round_q8_block256(float* x) {
  float amax = 0.0f, mx = 0.0f;
  for (int j = 0; j < 256; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      mx = x[j];
    }
  }
  if (amax == 0.0f) {
    std::fill(x, x + 256, 0.0f);
    return;
  }
  const float iscale = -127.f / mx;
  const float d = 1.0f / iscale;
  for (int j = 0; j < 256; ++j) {
    const float q = std::min(127.0f, std::nearbyint(iscale * x[j]));
    x[j] = d * q;
  }
}

}  // namespace

void round_activation(ActRounding r, float* x, int64_t n) {
  switch (r) {
    case ActRounding::None:
      return;
    case ActRounding::F16:
      for (int64_t i = 0; i < n; ++i) x[i] = round_f16(x[i]);
      return;
    case ActRounding::BF16:
      for (int64_t i = 0; i < n; ++i) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
      return;
    case ActRounding::Q8_0:
    case ActRounding::Q8_1:
      if (n % 32 != 0) throw Error("activation rounding " + std::string(act_rounding_name(r)) + ": row of " + std::to_string(n) + " is not a multiple of 32");
      for (int64_t b = 0; b < n / 32; ++b) round_q8_block32(x + b * 32);
      return;
    case ActRounding::Q8_K:
      if (n % 256 != 0) throw Error("activation rounding q8_K: row of " + std::to_string(n) + " is not a multiple of 256");
      for (int64_t b = 0; b < n / 256; ++b) round_q8_block256(x + b * 256);
      return;
  }
}

Linear make_linear(const LinearId& id, const Tensor& weight, const Tensor* bias, bool ggml_compat) {
  if (weight.shape.size() != 2) throw Error(weight.name + ": expected a matrix, got shape " + shape_string(weight.shape));
  const int64_t out = weight.shape[0], in = weight.shape[1];
  Linear L;
  L.id = id;
  L.source_type = weight.dtype;
  if (weight.dtype == DType::F32 && weight.row_order.empty()) {
    L.weights = std::make_unique<DenseF32Weights>(reinterpret_cast<const float*>(weight.data), out, in, weight.owner);
  } else {
    L.weights = std::make_unique<DenseF32Weights>(weight.to_f32(), out, in);
  }
  if (bias) {
    if (bias->numel() != out) throw Error(bias->name + ": bias of " + std::to_string(bias->numel()) + " values for " + std::to_string(out) + " outputs");
    L.bias = bias->to_f32();
  }
  if (ggml_compat && has_ggml_exact_format(weight.dtype) && weight.cols() % 32 == 0) {
    // Integer / F16 kernels in llama.cpp's summation order; they round the activation themselves.
    L.weights = make_ggml_exact_weights(weight);
  } else if (ggml_compat && weight.dtype == DType::F16) {
    L.weights = make_ggml_exact_weights(weight);
  } else if (ggml_compat) {
    L.rounding = ggml_act_rounding(weight.dtype);
  }
  return L;
}

}  // namespace qeval
