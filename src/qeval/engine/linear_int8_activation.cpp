#include "qeval/engine/linear_int8_activation.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "qeval/engine/thread_pool.h"
#include "qeval/kernels/int8_activation.h"
#include "qeval/kernels/packed_matrix.h"

namespace qeval {

namespace {

// "a8" (+ "-clip0.9" when clipped): the suffix of the format names.
std::string input_quant_name(int bits, float clip) {
  std::string s = "a" + std::to_string(bits);
  if (clip != 1.0f) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "-clip%g", static_cast<double>(clip));
    s += buf;
  }
  return s;
}

// "w4g128a8", "w8a8", "w8pta8", "w4g32a8-asym": the packed layout (as linear.cpp names it)
// with the activation part.
std::string scheme_name(const PackedWeight& p, const std::string& activation) {
  std::string s = "w" + std::to_string(p.bits);
  if (p.per_tensor) s += "pt";
  else if (p.group_size < p.cols) s += "g" + std::to_string(p.group_size);
  s += activation;
  if (!p.zeros.empty()) s += "-asym";
  return s;
}

// Quantizes each of `rows` input rows (codes times S, the hook's values bit for bit) into a
// per-thread scratch and calls use(scratch).
template <typename Use>
void fake_quantize_rows(const float* x, int64_t rows, int64_t in, int bits, float clip, ThreadPool& pool, Use&& use) {
  thread_local std::vector<float> xq_buf;
  if (static_cast<int64_t>(xq_buf.size()) < rows * in) xq_buf.resize(static_cast<size_t>(rows * in));
  float* const xq = xq_buf.data();  // the pool's workers use the pointer, not the thread_local
  pool.parallel_for(rows, 1, [&](int64_t b, int64_t e, int) {
    thread_local std::vector<int8_t> codes;
    if (static_cast<int64_t>(codes.size()) < in) codes.resize(static_cast<size_t>(in));
    for (int64_t r = b; r < e; ++r) {
      const float s = kernels::quantize_activation_row(x + r * in, in, bits, clip, codes.data());
      float* o = xq + r * in;
      for (int64_t c = 0; c < in; ++c) o[c] = s * static_cast<float>(codes[static_cast<size_t>(c)]);
    }
  });
  use(xq);
}

// Packed Int8 / Int4 weights multiplied by integer activation codes.
class IntActivationWeights final : public LinearWeights {
 public:
  IntActivationWeights(const PackedWeight& p, std::shared_ptr<const void> owner, int bits, float clip)
      : owner_(std::move(owner)), bits_(bits), clip_(clip) {
    m_.format = p.bits == 4 ? kernels::Format::Int4 : kernels::Format::Int8;
    m_.rows = p.rows;
    m_.cols = p.cols;
    m_.row_bytes = kernels::format_row_bytes(m_.format, p.cols);
    m_.data = p.codes;
    m_.group_size = p.per_tensor ? p.cols : std::min(p.group_size, p.cols);
    m_.scale_row_stride = p.per_tensor ? 0 : p.groups_per_row();
    m_.scales = p.scales.data();
    m_.zeros = p.zeros.empty() ? nullptr : p.zeros.data();
    if (p.bits == 4 && p.cols % 2 != 0) {
      // The stream has rows starting mid-byte; give each row its own bytes (still 4-bit).
      repacked_.assign(m_.row_bytes * static_cast<size_t>(p.rows), 0);
      for (int64_t r = 0; r < p.rows; ++r)
        for (int64_t c = 0; c < p.cols; ++c)
          repacked_[m_.row_bytes * static_cast<size_t>(r) + static_cast<size_t>(c / 2)] |=
              static_cast<uint8_t>(p.code(r, c) << ((c & 1) * 4));
      m_.data = repacked_.data();
    }
    const std::string scheme = scheme_name(p, input_quant_name(bits, clip));
    kernels::validate(m_, scheme);
    isa_ = kernels::usable_int_isa(m_, kernels::IntIsa::Avx512Vnni);
    format_ = scheme + "/" + kernels::int_isa_name(isa_);
  }
  static bool applies(const PackedWeight& p) {
    if (p.bits != 4 && p.bits != 8) return false;
    kernels::PackedMatrix m;
    m.format = p.bits == 4 ? kernels::Format::Int4 : kernels::Format::Int8;
    m.rows = p.rows;
    m.cols = p.cols;
    m.group_size = p.per_tensor ? p.cols : std::min(p.group_size, p.cols);
    m.scale_row_stride = p.per_tensor ? 0 : p.groups_per_row();
    m.zeros = p.zeros.empty() ? nullptr : p.zeros.data();
    if (p.has_outliers()) m.outlier_row_ptr = p.outlier_row_ptr.data();
    return kernels::int_gemv_supported(m);
  }

  int64_t out_features() const override { return m_.rows; }
  int64_t in_features() const override { return m_.cols; }
  std::string_view format() const override { return format_; }
  size_t weight_bytes() const override { return m_.storage_bytes(); }
  std::vector<float> to_f32() const override {
    std::vector<float> out(static_cast<size_t>(m_.rows * m_.cols));
    kernels::dequantize_rows(m_, kernels::usable_isa(m_, kernels::Isa::Avx512), 0, m_.rows, out.data());
    return out;
  }

  void matmul(const float* x, int64_t rows, float* y, ThreadPool& pool) const override {
    if (rows <= 0) return;
    const int64_t in = m_.cols, out = m_.rows, groups = kernels::int_group_count(m_);
    const auto abytes = static_cast<int64_t>(kernels::int_activation_bytes(m_));
    // Scratch of the calling thread, reused across calls (no allocation in steady decoding).
    // The pool's workers reach it through these pointers, never by the thread_local names.
    thread_local std::vector<int8_t> codes_buf, prepared_buf;
    thread_local std::vector<int32_t> sums_buf;
    thread_local std::vector<float> scales_buf;
    auto grow = [](auto& v, int64_t n) {
      if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
      return v.data();
    };
    int8_t* const codes = grow(codes_buf, rows * in);
    int8_t* const prepared = grow(prepared_buf, rows * abytes);
    int32_t* const sums = grow(sums_buf, rows * groups);
    float* const scales = grow(scales_buf, rows);
    auto quantize = [&](int64_t r) {
      int8_t* q = codes + r * in;
      scales[r] = kernels::quantize_activation_row(x + r * in, in, bits_, clip_, q);
      kernels::prepare_int_activation(m_, isa_, q, prepared + r * abytes, sums + r * groups);
    };
    if (rows == 1) {
      quantize(0);
      // Each output is computed whole by one thread: results do not depend on the thread count.
      const int64_t grain = std::max<int64_t>(8, 16384 / std::max<int64_t>(1, in));
      pool.parallel_for(out, grain, [&](int64_t b, int64_t e, int) {
        kernels::int_gemv(m_, isa_, prepared, sums, scales[0], y + b, b, e);
      });
      return;
    }
    pool.parallel_for(rows, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t r = b; r < e; ++r) quantize(r);
    });
    // A tile of weight rows (about 64 KiB of codes) is multiplied with every activation row
    // while it is in cache, so prefill reads the weights once. Integer products beat the float
    // route (fake-quantized rows through dequantized tiles + sgemm) at every row count since the
    // VNNI kernel keeps its accumulators in registers: pp128 of the TinyLlama-shaped W4g128A8
    // model 71 -> 117 t/s (F32: 73).
    const int64_t tile = std::max<int64_t>(4, (int64_t{1} << 16) / std::max<int64_t>(1, static_cast<int64_t>(m_.row_bytes)));
    const int64_t grain = std::max<int64_t>(tile, (out + 4 * pool.size() - 1) / (4 * pool.size()));
    pool.parallel_for(out, grain, [&](int64_t b, int64_t e, int) {
      for (int64_t t0 = b; t0 < e; t0 += tile) {
        const int64_t t1 = std::min(e, t0 + tile);
        for (int64_t r = 0; r < rows; ++r)
          kernels::int_gemv(m_, isa_, prepared + r * abytes, sums + r * groups, scales[r], y + r * out + t0, t0, t1);
      }
    });
  }

 private:
  kernels::PackedMatrix m_;
  kernels::IntIsa isa_ = kernels::IntIsa::Scalar;
  std::shared_ptr<const void> owner_;
  std::vector<uint8_t> repacked_;
  int bits_ = 8;
  float clip_ = 1.0f;
  std::string format_;
};

// Any other weights: the input rows fake-quantized (codes times S, the hook's values), then the
// inner kernel.
class FakeQuantInputWeights final : public LinearWeights {
 public:
  FakeQuantInputWeights(std::unique_ptr<LinearWeights> inner, int bits, float clip)
      : inner_(std::move(inner)), bits_(bits), clip_(clip) {
    format_ = std::string(inner_->format()) + "+" + input_quant_name(bits, clip);
  }
  int64_t out_features() const override { return inner_->out_features(); }
  int64_t in_features() const override { return inner_->in_features(); }
  std::string_view format() const override { return format_; }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::vector<float> to_f32() const override { return inner_->to_f32(); }
  void matmul(const float* x, int64_t rows, float* y, ThreadPool& pool) const override {
    if (rows <= 0) return;
    fake_quantize_rows(x, rows, inner_->in_features(), bits_, clip_, pool,
                       [&](const float* xq) { inner_->matmul(xq, rows, y, pool); });
  }

 private:
  std::unique_ptr<LinearWeights> inner_;
  int bits_ = 8;
  float clip_ = 1.0f;
  std::string format_;
};

}  // namespace

std::unique_ptr<LinearWeights> make_input_quantized_weights(const Tensor& weight, std::unique_ptr<LinearWeights> weights,
                                                            bool integer_kernels) {
  const int bits = weight.input_quant_bits;
  if (bits == 0) return weights;
  const float clip = weight.input_quant_clip;
  if (integer_kernels && weight.packed && weight.row_order.empty() && IntActivationWeights::applies(*weight.packed))
    return std::make_unique<IntActivationWeights>(*weight.packed, weight.packed, bits, clip);
  return std::make_unique<FakeQuantInputWeights>(std::move(weights), bits, clip);
}

}  // namespace qeval
