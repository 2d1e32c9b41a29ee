#include "qeval/engine/linear.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "qeval/kernels/packed_gemm.h"
#include "qeval/kernels/packed_matrix.h"

#include "qeval/engine/ggml_compat.h"
#include "qeval/engine/linear_int8_activation.h"
#include "qeval/engine/ops.h"
#include "qeval/engine/thread_pool.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"
#include "qeval/util/log.h"

namespace qeval {

namespace {

// Packed weights: a kernels::PackedMatrix pointing into the mapping (or into the packed
// tensor's buffers), kept alive by `owner_`.
class PackedLinearWeights final : public LinearWeights {
 public:
  PackedLinearWeights(kernels::PackedMatrix m, std::string scheme, std::shared_ptr<const void> owner,
                      std::vector<int32_t> row_order, std::vector<uint8_t> repacked)
      : m_(m), owner_(std::move(owner)), row_order_(std::move(row_order)), repacked_(std::move(repacked)) {
    if (!row_order_.empty()) m_.row_order = row_order_.data();
    if (!repacked_.empty()) m_.data = repacked_.data();
    kernels::validate(m_, scheme);
    isa_ = kernels::usable_isa(m_, kernels::Isa::Avx512);
    format_ = scheme + "/" + kernels::isa_name(isa_);
  }
  int64_t out_features() const override { return m_.rows; }
  int64_t in_features() const override { return m_.cols; }
  std::string_view format() const override { return format_; }
  size_t weight_bytes() const override { return m_.storage_bytes(); }
  void matmul(const float* x, int64_t rows, float* y, ThreadPool& pool) const override;
  std::vector<float> to_f32() const override {
    std::vector<float> out(static_cast<size_t>(m_.rows * m_.cols));
    kernels::dequantize_rows(m_, isa_, 0, m_.rows, out.data());
    return out;
  }

 private:
  kernels::PackedMatrix m_;
  kernels::Isa isa_ = kernels::Isa::Scalar;
  std::string format_;
  std::shared_ptr<const void> owner_;
  std::vector<int32_t> row_order_;
  std::vector<uint8_t> repacked_;  // Int4 with odd rows: re-packed so each row starts on a byte
};

// Up to this many activation rows (batched decode) run as GEMVs per row over small blocks of
// weight rows, each block multiplied with every activation row while it is in cache (weights
// read from memory once); above, the many-row product of packed_gemm.h (or dequantized tiles and
// sgemm, which packs its operands per call and only pays off for many rows). Dense float32 weights
// keep the row-at-a-time dot products up to kMaxDenseDotRows.
constexpr int64_t kMaxGemvRows = 8;
constexpr int64_t kMaxDenseDotRows = 8;
// Weight rows per cached block of the multi-row GEMV (a few KiB to tens of KiB of weights).
constexpr int64_t kGemvBlockRows = 16;
// Floats in one thread's dequantized weight tile (1 MiB): large enough for sgemm to run near
// its peak, small enough to stay in the core's cache between dequantization and use.
constexpr int64_t kTileFloats = int64_t{1} << 18;

// OpenBLAS runs single-threaded while the engine's pool splits a product by output features:
// with OpenBLAS's own workers, they spin after each call while the pool's workers run
// (dequantization, attention), oversubscribing the cores — the cause of unstable, slow packed
// prefill. It also makes each output the work of one single-threaded sgemm, so results do not
// depend on the thread count. The previous setting is restored (GPTQ's Hessian uses threaded
// BLAS calls of its own).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : prev_(openblas_get_num_threads()) {
    if (prev_ != 1) openblas_set_num_threads(1);
  }
  ~SingleThreadedBlas() {
    if (prev_ != 1) openblas_set_num_threads(prev_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int prev_;
};

// y[:, b:e] = x W[b:e]^T, where `w` points at row b of a row-major [*, in] float matrix.
void sgemm_rows(const float* x, int64_t rows, const float* w, int64_t b, int64_t e, int64_t in, float* y, int64_t out) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(rows), static_cast<blasint>(e - b),
              static_cast<blasint>(in), 1.0f, x, static_cast<blasint>(in), w, static_cast<blasint>(in), 0.0f, y + b,
              static_cast<blasint>(out));
}

// Output features per pool task for a multi-row product: about four tasks per thread, each at
// least `min_rows` (one sgemm call should be big enough to amortize packing the activation).
int64_t feature_grain(int64_t out, int threads, int64_t min_rows) {
  return std::max<int64_t>(min_rows, (out + 4 * threads - 1) / (4 * threads));
}

void PackedLinearWeights::matmul(const float* x, int64_t rows, float* y, ThreadPool& pool) const {
  if (rows <= 0) return;
  const int64_t out = m_.rows, in = m_.cols;
  // Scratch reused across calls (per thread; no allocation in steady decoding).
  thread_local std::vector<float> scratch;
  if (rows <= kMaxGemvRows) {
    const size_t need = kernels::activation_scratch_floats(m_);
    if (scratch.size() < need * static_cast<size_t>(rows)) scratch.resize(need * static_cast<size_t>(rows));
    const float* xp[kMaxGemvRows];
    for (int64_t r = 0; r < rows; ++r)
      xp[r] = kernels::prepare_activation(m_, isa_, x + r * in, scratch.data() + need * static_cast<size_t>(r));
    // Each output is computed whole by one thread, exactly as for a single row: results do not
    // depend on the thread count or on the other rows of the batch.
    const int64_t grain = std::max<int64_t>(8, 16384 / std::max<int64_t>(1, in));
    pool.parallel_for(out, grain, [&](int64_t b, int64_t e, int) {
      for (int64_t b0 = b; b0 < e; b0 += kGemvBlockRows) {
        const int64_t e0 = std::min(e, b0 + kGemvBlockRows);
        for (int64_t r = 0; r < rows; ++r) kernels::gemv(m_, isa_, x + r * in, xp[r], y + r * out + b0, b0, e0);
      }
    });
    return;
  }
  if (kernels::gemm_supported(m_, isa_)) {
    // Panels dequantized straight into the micro-kernel's layout (packed_gemm.h; whole-model
    // prefill 1.05-1.16x F32 per round for every float-activation format, docs/BENCHMARKS.md,
    // where dequantized tiles + sgemm were 0.91-1.05x). Each output is computed whole by one
    // task: thread-count independent.
    pool.parallel_for(out, feature_grain(out, pool.size(), 64),
                      [&](int64_t b, int64_t e, int) { kernels::gemm(m_, isa_, x, rows, y, out, b, e); });
    return;
  }
  // Otherwise (AVX2 / scalar, outliers) each task dequantizes tiles of its own output features
  // into its thread's scratch and multiplies them with sgemm while they are still in cache.
  const int64_t tile = std::min(out, std::max<int64_t>(16, kTileFloats / in / 16 * 16));
  SingleThreadedBlas single;
  pool.parallel_for(out, feature_grain(out, pool.size(), tile), [&](int64_t b, int64_t e, int) {
    thread_local std::vector<float> tile_scratch;
    if (static_cast<int64_t>(tile_scratch.size()) < tile * in) tile_scratch.resize(static_cast<size_t>(tile * in));
    for (int64_t t0 = b; t0 < e; t0 += tile) {
      const int64_t t1 = std::min(e, t0 + tile);
      kernels::dequantize_rows(m_, isa_, t0, t1, tile_scratch.data());
      sgemm_rows(x, rows, tile_scratch.data(), t0, t1, in, y, out);
    }
  });
}

// QEVAL_KERNELS=dense: every linear runs dense-f32 (A/B comparisons); read once.
bool packed_kernels_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("QEVAL_KERNELS");
    if (v == nullptr || *v == 0 || std::string_view(v) == "packed") return true;
    if (std::string_view(v) == "dense") return false;
    warn(std::string("QEVAL_KERNELS=") + v + " is not 'packed' or 'dense'; using packed kernels");
    return true;
  }();
  return enabled;
}

// "w4g128", "w8", "w8pt", "w4g32-asym" (+ "+outliers"): the packed layout, for format names.
std::string packed_scheme_name(const PackedWeight& p) {
  std::string s = "w" + std::to_string(p.bits);
  if (p.per_tensor) s += "pt";
  else if (p.group_size < p.cols) s += "g" + std::to_string(p.group_size);
  if (!p.zeros.empty()) s += "-asym";
  if (p.has_outliers()) s += "+outliers";
  return s;
}

}  // namespace

std::unique_ptr<LinearWeights> make_packed_weights(const Tensor& weight) {
  if (weight.shape.size() != 2) return nullptr;
  const int64_t out = weight.shape[0], in = weight.shape[1];
  kernels::PackedMatrix m;
  m.rows = out;
  m.cols = in;
  if (const PackedWeight* p = weight.packed.get()) {
    if ((p->bits != 4 && p->bits != 8) || !weight.row_order.empty()) return nullptr;
    m.format = p->bits == 4 ? kernels::Format::Int4 : kernels::Format::Int8;
    m.row_bytes = kernels::format_row_bytes(m.format, in);
    m.data = p->codes;
    m.group_size = p->per_tensor ? in : std::min(p->group_size, in);
    m.scale_row_stride = p->per_tensor ? 0 : p->groups_per_row();
    m.scales = p->scales.data();
    m.zeros = p->zeros.empty() ? nullptr : p->zeros.data();
    if (p->has_outliers()) {
      m.outlier_row_ptr = p->outlier_row_ptr.data();
      m.outlier_cols = p->outlier_cols.data();
      m.outlier_values = p->outlier_values.data();
    }
    std::vector<uint8_t> repacked;
    if (p->bits == 4 && in % 2 != 0) {
      // The stream has rows starting mid-byte; give each row its own bytes (still 4-bit).
      repacked.assign(m.row_bytes * static_cast<size_t>(out), 0);
      for (int64_t r = 0; r < out; ++r)
        for (int64_t c = 0; c < in; ++c)
          repacked[m.row_bytes * static_cast<size_t>(r) + static_cast<size_t>(c / 2)] |=
              static_cast<uint8_t>(p->code(r, c) << ((c & 1) * 4));
    }
    return std::make_unique<PackedLinearWeights>(m, packed_scheme_name(*p), weight.packed, std::vector<int32_t>{},
                                                 std::move(repacked));
  }
  switch (weight.dtype) {
    case DType::F16: m.format = kernels::Format::F16; break;
    case DType::Q8_0: m.format = kernels::Format::Q8_0; break;
    case DType::Q4_0: m.format = kernels::Format::Q4_0; break;
    case DType::Q4_1: m.format = kernels::Format::Q4_1; break;
    default: return nullptr;
  }
  if (m.format != kernels::Format::F16 && in % 32 != 0) return nullptr;
  m.data = weight.data;
  m.row_bytes = weight.bytes_per_row();
  if (m.row_bytes * static_cast<size_t>(weight.row_order.empty() ? out : static_cast<int64_t>(weight.row_order.size())) > weight.nbytes)
    return nullptr;  // row slices of a fused tensor are fine; anything smaller is not ours
  return std::make_unique<PackedLinearWeights>(m, kernels::format_name(m.format), weight.owner, weight.row_order,
                                               std::vector<uint8_t>{});
}

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
  if (rows <= kMaxDenseDotRows) {
    // GEMV: each output is one dot product computed by one thread, so the result does not depend
    // on the thread count or on the other rows; a weight row is read from memory once and reused
    // from cache for every activation row (batched decode).
    const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, in_));
    pool.parallel_for(out_, grain, [&](int64_t b, int64_t e, int) {
      for (int64_t o = b; o < e; ++o)
        for (int64_t r = 0; r < rows; ++r) y[r * out_ + o] = ops::dot(x + r * in_, w_ + o * in_, in_);
    });
    return;
  }
  SingleThreadedBlas single;
  pool.parallel_for(out_, feature_grain(out_, pool.size(), 64),
                    [&](int64_t b, int64_t e, int) { sgemm_rows(x, rows, w_ + b * in_, b, e, in_, y, out_); });
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
  if (weight.dtype == DType::F32 && weight.row_order.empty() && !weight.packed) {
    L.weights = std::make_unique<DenseF32Weights>(reinterpret_cast<const float*>(weight.data), out, in, weight.owner);
  } else if (auto packed = !ggml_compat && packed_kernels_enabled() ? make_packed_weights(weight) : nullptr) {
    L.weights = std::move(packed);
  } else if (weight.packed) {
    auto dense = std::make_unique<DenseF32Weights>(weight.to_f32(), out, in);
    const std::string why = packed_kernels_enabled() && !ggml_compat ? ": no packed kernel" : ": dequantized";
    dense->set_format("dense-f32 (" + packed_scheme_name(*weight.packed) + why + ")");
    L.weights = std::move(dense);
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
  // Input quantization of a packed directory's linears (W8A8 / W4A8): integer-activation
  // kernels where they apply, otherwise the input is fake-quantized (linear_int8_activation.h).
  if (weight.input_quant_bits != 0)
    L.weights = make_input_quantized_weights(weight, std::move(L.weights), !ggml_compat && packed_kernels_enabled());
  return L;
}

}  // namespace qeval
