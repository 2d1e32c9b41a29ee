#include "qeval/engine/ggml_compat.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "qeval/engine/thread_pool.h"
#include "qeval/io/dequantize.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define QEVAL_X86 1
#endif

namespace qeval {
namespace {

inline float f16r(float v) { return fp16_to_f32(f32_to_fp16(v)); }

bool cpu_has_avx2() {
#ifdef QEVAL_X86
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return v;
#else
  return false;
#endif
}

// ggml's hsum_float_8 order on 8 lanes.
inline float hsum8(const float* l) {
  float r[4];
  for (int i = 0; i < 4; ++i) r[i] = l[i + 4] + l[i];
  const float a = r[0] + r[2], b = r[1] + r[3];
  return a + b;
}

// ---- Q8 family -------------------------------------------------------------------------

float block_dot_scalar(const int8_t* w, const int8_t* a, const float* dw, const float* da, int64_t nb) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t b = 0; b < nb; ++b) {
    const float d = dw[b] * da[b];
    for (int l = 0; l < 8; ++l) {
      int32_t s = 0;
      for (int j = 0; j < 4; ++j) s += static_cast<int32_t>(w[b * 32 + l * 4 + j]) * a[b * 32 + l * 4 + j];
      acc[l] = std::fma(d, static_cast<float>(s), acc[l]);
    }
  }
  return hsum8(acc);
}

#ifdef QEVAL_X86
__attribute__((target("avx2,fma"))) float block_dot_avx2(const int8_t* w, const int8_t* a, const float* dw,
                                                          const float* da, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    // Weights are signed here (also the unsigned _1 codes fit in int8), so multiply as int16.
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * 32));
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + b * 32));
    const __m256i ax = _mm256_sign_epi8(wv, wv);
    const __m256i sy = _mm256_sign_epi8(av, wv);
    const __m256i p16 = _mm256_maddubs_epi16(ax, sy);   // pairs; |sum| <= 2*128*127 fits int16
    const __m256i p32 = _mm256_madd_epi16(p16, ones);  // lane l = elements 4l..4l+3
    acc = _mm256_fmadd_ps(_mm256_set1_ps(dw[b] * da[b]), _mm256_cvtepi32_ps(p32), acc);
  }
  alignas(32) float l[8];
  _mm256_store_ps(l, acc);
  return hsum8(l);
}
#endif

class GgmlQ8Dot final : public LinearWeights {
 public:
  explicit GgmlQ8Dot(const Tensor& t) : type_(t.dtype) {
    out_ = t.shape[0];
    in_ = t.shape[1];
    if (in_ % 32 != 0) throw Error(t.name + ": rows of " + std::to_string(in_) + " are not a multiple of 32");
    nb_ = in_ / 32;
    q81_ = type_ == DType::Q4_1 || type_ == DType::Q5_1;
    const size_t bb = traits(type_).block_bytes;
    q_.resize(static_cast<size_t>(out_ * in_));
    d_.resize(static_cast<size_t>(out_ * nb_));
    if (q81_) m_.resize(static_cast<size_t>(out_ * nb_));
    std::vector<uint8_t> blk(bb);
    float tmp[32];
    const uint16_t one = f32_to_fp16(1.0f);
    for (int64_t o = 0; o < out_; ++o) {
      const uint8_t* row = t.row_data(o);
      for (int64_t b = 0; b < nb_; ++b) {
        std::memcpy(blk.data(), row + static_cast<size_t>(b) * bb, bb);
        uint16_t h;
        std::memcpy(&h, blk.data(), 2);
        d_[static_cast<size_t>(o * nb_ + b)] = fp16_to_f32(h);
        std::memcpy(blk.data(), &one, 2);  // scale 1 (and minimum 0): dequantizing yields the codes
        if (q81_) {
          std::memcpy(&h, blk.data() + 2, 2);
          m_[static_cast<size_t>(o * nb_ + b)] = fp16_to_f32(h);
          const uint16_t zero = 0;
          std::memcpy(blk.data() + 2, &zero, 2);
        }
        dequantize_row(type_, blk.data(), tmp, 32);
        for (int j = 0; j < 32; ++j) q_[static_cast<size_t>(o * in_ + b * 32 + j)] = static_cast<int8_t>(std::lrint(tmp[j]));
      }
    }
  }
  int64_t out_features() const override { return out_; }
  int64_t in_features() const override { return in_; }
  std::string_view format() const override { return "ggml-q8-dot"; }

  void matmul(const float* x, int64_t rows, float* y, ThreadPool& pool) const override {
    if (static_cast<int64_t>(aq_.size()) < rows * in_) {
      aq_.resize(static_cast<size_t>(rows * in_));
      ad_.resize(static_cast<size_t>(rows * nb_));
      as_.resize(static_cast<size_t>(rows * nb_));
    }
    // ggml's x86 quantize_row_q8_0 / q8_1.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < nb_; ++b) {
        const float* xb = x + r * in_ + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.f, id = amax != 0.0f ? 127.f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
          const int q = static_cast<int>(std::nearbyint(xb[j] * id));
          aq_[static_cast<size_t>(r * in_ + b * 32 + j)] = static_cast<int8_t>(q);
          sum += q;
        }
        ad_[static_cast<size_t>(r * nb_ + b)] = f16r(d);
        as_[static_cast<size_t>(r * nb_ + b)] = f16r(d * static_cast<float>(sum));
      }
    const bool simd = cpu_has_avx2();
    pool.parallel_for(out_, 4, [&](int64_t ob, int64_t oe, int) {
      for (int64_t o = ob; o < oe; ++o) {
        const int8_t* w = q_.data() + o * in_;
        const float* dw = d_.data() + o * nb_;
        for (int64_t r = 0; r < rows; ++r) {
          const int8_t* a = aq_.data() + r * in_;
          const float* da = ad_.data() + r * nb_;
#ifdef QEVAL_X86
          float v = simd ? block_dot_avx2(w, a, dw, da, nb_) : block_dot_scalar(w, a, dw, da, nb_);
#else
          float v = block_dot_scalar(w, a, dw, da, nb_);
#endif
          if (q81_) {
            float summs = 0;
            const float* m = m_.data() + o * nb_;
            const float* s = as_.data() + r * nb_;
            for (int64_t b = 0; b < nb_; ++b) summs += m[b] * s[b];
            v += summs;
          }
          y[r * out_ + o] = v;
        }
      }
    });
    (void)simd;
  }

  std::vector<float> to_f32() const override {
    std::vector<float> w(static_cast<size_t>(out_ * in_));
    for (int64_t o = 0; o < out_; ++o)
      for (int64_t i = 0; i < in_; ++i) {
        const size_t b = static_cast<size_t>(o * nb_ + i / 32);
        w[static_cast<size_t>(o * in_ + i)] = d_[b] * q_[static_cast<size_t>(o * in_ + i)] + (q81_ ? m_[b] : 0.0f);
      }
    return w;
  }

 private:
  DType type_;
  int64_t out_ = 0, in_ = 0, nb_ = 0;
  bool q81_ = false;
  std::vector<int8_t> q_;
  std::vector<float> d_, m_;
  mutable std::vector<int8_t> aq_;
  mutable std::vector<float> ad_, as_;
};

// ---- F16 -----------------------------------------------------------------------------------

// _mm512_reduce_add_ps's tree on 16 lanes.
inline float reduce16(const float* x) {
  float t3[8], t6[4];
  for (int i = 0; i < 8; ++i) t3[i] = x[i + 8] + x[i];
  for (int i = 0; i < 4; ++i) t6[i] = t3[i + 4] + t3[i];
  const float a = t6[0] + t6[2], b = t6[1] + t6[3];
  return a + b;
}

// hsum of 8 lanes in the __m256 tinyBLAS / hsum_float_8 order.
inline float reduce8(const float* l) { return hsum8(l); }

// _mm_hadd_ps based reduction of ggml's GGML_F32x8_REDUCE.
inline float reduce8_hadd(const float* x) {
  float t0[4];
  for (int i = 0; i < 4; ++i) t0[i] = x[i] + x[i + 4];
  const float a = t0[0] + t0[1], b = t0[2] + t0[3];
  return a + b;
}

template <int LANES>
float f16_dot_single(const float* a, const float* w, int64_t n) {
  float acc[LANES] = {};
  for (int64_t k = 0; k < n; k += LANES)
    for (int l = 0; l < LANES; ++l) acc[l] = std::fma(a[k + l], w[k + l], acc[l]);
  return LANES == 16 ? reduce16(acc) : reduce8(acc);
}

template <int LANES>
float f16_dot_vec(const float* a, const float* w, int64_t n) {
  constexpr int64_t step = 4 * LANES;
  float acc[4][LANES] = {};
  const int64_t np = n & ~(step - 1);
  for (int64_t i = 0; i < np; i += step)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < LANES; ++l) acc[j][l] = std::fma(a[i + j * LANES + l], w[i + j * LANES + l], acc[j][l]);
  for (int l = 0; l < LANES; ++l) {
    acc[0][l] = acc[0][l] + acc[2][l];
    acc[1][l] = acc[1][l] + acc[3][l];
  }
  for (int l = 0; l < LANES; ++l) acc[0][l] = acc[0][l] + acc[1][l];
  double sum = LANES == 16 ? reduce16(acc[0]) : reduce8_hadd(acc[0]);
  for (int64_t i = np; i < n; ++i) sum += static_cast<double>(a[i] * w[i]);
  return static_cast<float>(sum);
}

// tinyBLAS (AVX-512) for rows that are a multiple of 16, ggml_vec_dot_f16 otherwise.
float f16_dot(const float* a, const float* w, int64_t n) {
  return n % 16 == 0 ? f16_dot_single<16>(a, w, n) : f16_dot_vec<16>(a, w, n);
}

#ifdef QEVAL_X86
// The same two orders with AVX-512 registers (lane l of a register = lane l above).
__attribute__((target("avx512f"))) float f16_dot_avx512(const float* a, const float* w, int64_t n) {
  alignas(64) float lanes[16];
  if (n % 16 == 0) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(w + k), acc);
    _mm512_store_ps(lanes, acc);
    return reduce16(lanes);
  }
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  const int64_t np = n & ~int64_t{63};
  for (int64_t i = 0; i < np; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(w + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(w + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(w + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(w + i + 48), s3);
  }
  s0 = _mm512_add_ps(s0, s2);
  s1 = _mm512_add_ps(s1, s3);
  s0 = _mm512_add_ps(s0, s1);
  _mm512_store_ps(lanes, s0);
  double sum = reduce16(lanes);
  for (int64_t i = np; i < n; ++i) sum += static_cast<double>(a[i] * w[i]);
  return static_cast<float>(sum);
}

bool cpu_has_avx512() {
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return v;
}
#endif

class GgmlF16Dot final : public LinearWeights {
 public:
  explicit GgmlF16Dot(const Tensor& t) : out_(t.shape[0]), in_(t.shape[1]), w_(t.to_f32()) {}
  int64_t out_features() const override { return out_; }
  int64_t in_features() const override { return in_; }
  std::string_view format() const override { return "ggml-f16-dot"; }
  void matmul(const float* x, int64_t rows, float* y, ThreadPool& pool) const override {
    if (static_cast<int64_t>(xr_.size()) < rows * in_) xr_.resize(static_cast<size_t>(rows * in_));
    for (int64_t i = 0; i < rows * in_; ++i) xr_[static_cast<size_t>(i)] = f16r(x[i]);
#ifdef QEVAL_X86
    const bool simd = cpu_has_avx512();
#else
    const bool simd = false;
#endif
    pool.parallel_for(out_, 4, [&](int64_t ob, int64_t oe, int) {
      for (int64_t o = ob; o < oe; ++o)
        for (int64_t r = 0; r < rows; ++r) {
          const float* a = xr_.data() + r * in_;
          const float* w = w_.data() + o * in_;
#ifdef QEVAL_X86
          y[r * out_ + o] = simd ? f16_dot_avx512(a, w, in_) : f16_dot(a, w, in_);
#else
          y[r * out_ + o] = f16_dot(a, w, in_);
#endif
        }
    });
    (void)simd;
  }
  std::vector<float> to_f32() const override { return w_; }

 private:
  int64_t out_, in_;
  std::vector<float> w_;
  mutable std::vector<float> xr_;
};

}  // namespace

bool has_ggml_exact_format(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0:
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::F16: return true;
    default: return false;
  }
}

std::unique_ptr<LinearWeights> make_ggml_exact_weights(const Tensor& t) {
  if (t.shape.size() != 2) throw Error(t.name + ": expected a matrix");
  if (t.dtype == DType::F16) return std::make_unique<GgmlF16Dot>(t);
  if (has_ggml_exact_format(t.dtype)) return std::make_unique<GgmlQ8Dot>(t);
  throw Error(t.name + ": no ggml-exact format for " + std::string(dtype_name(t.dtype)));
}

}  // namespace qeval
