#include "qeval/engine/ops.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "qeval/engine/thread_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define QEVAL_X86 1
#endif

namespace qeval::ops {
namespace {

float dot_scalar(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

#ifdef QEVAL_X86
__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float r = _mm_cvtss_f32(h);
  for (; i < n; ++i) r += a[i] * b[i];
  return r;
}

__attribute__((target("avx2,fma"))) void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

__attribute__((target("avx512f"))) float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  float r = 0.0f;
  for (int j = 0; j < 8; ++j) lanes[j] += lanes[j + 8];
  for (int j = 0; j < 4; ++j) lanes[j] += lanes[j + 4];
  r = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
  return r;
}

__attribute__((target("avx512f"))) void axpy_avx512(float a, const float* x, float* y, int64_t n) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}
#endif

struct Dispatch {
  float (*dot)(const float*, const float*, int64_t) = dot_scalar;
  void (*axpy)(float, const float*, float*, int64_t) = axpy_scalar;
  const char* level = "scalar";
  Dispatch() {
#ifdef QEVAL_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
      dot = dot_avx512;
      axpy = axpy_avx512;
      level = "avx512";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      dot = dot_avx2;
      axpy = axpy_avx2;
      level = "avx2";
    }
#endif
  }
};

const Dispatch& dispatch() {
  static const Dispatch d;
  return d;
}

}  // namespace

const char* simd_level() { return dispatch().level; }
float dot(const float* a, const float* b, int64_t n) { return dispatch().dot(a, b, n); }
void axpy(float a, const float* x, float* y, int64_t n) { dispatch().axpy(a, x, y, n); }
void scale(float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float s = 1.0f / std::sqrt(mean + eps);
  if (w)
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * s) * w[i];
  else
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}

void layernorm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  double var = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float d = x[i] - mean;
    var += static_cast<double>(d * d);
  }
  const float s = 1.0f / std::sqrt(static_cast<float>(var / static_cast<double>(n)) + eps);
  for (int64_t i = 0; i < n; ++i) {
    float v = (x[i] - mean) * s;
    if (w) v *= w[i];
    if (b) v += b[i];
    y[i] = v;
  }
}

void softmax(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(x[i] - mx);
    x[i] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

double logsumexp(const float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i] - mx));
  return static_cast<double>(mx) + std::log(sum);
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

float gelu_tanh(float x) {
  constexpr float k = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = silu(gate[i]) * up[i];
}

void gelu_tanh_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = gelu_tanh(x[i]);
}

std::vector<float> rope_llama3_factors(const RopeScaling& s, float theta_base, int64_t rope_dim) {
  const int64_t half = rope_dim / 2;
  std::vector<float> f(static_cast<size_t>(half), 1.0f);
  const double old_ctx = static_cast<double>(s.original_context);
  const double low_wavelen = old_ctx / s.low_freq_factor;
  const double high_wavelen = old_ctx / s.high_freq_factor;
  for (int64_t i = 0; i < half; ++i) {
    const double freq = std::pow(static_cast<double>(theta_base), -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
    const double wavelen = 2.0 * std::numbers::pi / freq;
    double new_freq;
    if (wavelen < high_wavelen) {
      new_freq = freq;
    } else if (wavelen > low_wavelen) {
      new_freq = freq / s.factor;
    } else {
      const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      new_freq = (1.0 - smooth) * freq / s.factor + smooth * freq;
    }
    f[static_cast<size_t>(i)] = static_cast<float>(freq / new_freq);
  }
  return f;
}

RopeTable make_rope_table(const ModelConfig& cfg) {
  RopeTable t;
  const int64_t rope_dim = cfg.rope_dim > 0 ? cfg.rope_dim : cfg.head_dim;
  t.half = rope_dim / 2;
  t.theta_scale = std::pow(cfg.rope_theta, -2.0f / static_cast<float>(rope_dim));
  switch (cfg.rope_scaling.kind) {
    case RopeScalingKind::None:
      break;
    case RopeScalingKind::Linear:
      t.freq_scale = 1.0f / cfg.rope_scaling.factor;
      break;
    case RopeScalingKind::Llama3:
      t.freq_factors = rope_llama3_factors(cfg.rope_scaling, cfg.rope_theta, rope_dim);
      break;
  }
  return t;
}

void RopeTable::cos_sin(int64_t pos, float* cos_out, float* sin_out) const {
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < half; ++i) {
    float th = freq_factors.empty() ? theta : theta / freq_factors[static_cast<size_t>(i)];
    th *= freq_scale;
    cos_out[i] = std::cos(th);
    sin_out[i] = std::sin(th);
    theta *= theta_scale;
  }
}

void rope_apply(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float* cos_v, const float* sin_v) {
  const int64_t half = rope_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* p = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float a = p[i], b = p[i + half];
      p[i] = a * cos_v[i] - b * sin_v[i];
      p[i + half] = a * sin_v[i] + b * cos_v[i];
    }
  }
}

void attend_row(const float* qh, const float* k, const float* v, int64_t stride, int64_t n, int64_t hd, float sc,
                float* sbuf, float* o) {
  std::fill(o, o + hd, 0.0f);
  if (hd >= 32) {
    for (int64_t t = 0; t < n; ++t) sbuf[t] = dot(qh, k + t * stride, hd) * sc;
    softmax(sbuf, n);
    for (int64_t t = 0; t < n; ++t) axpy(sbuf[t], v + t * stride, o, hd);
  } else {  // tiny heads: plain loops beat the vector kernels' call and tail overhead
    for (int64_t t = 0; t < n; ++t) {
      const float* kt = k + t * stride;
      float d = 0.0f;
      for (int64_t i = 0; i < hd; ++i) d += qh[i] * kt[i];
      sbuf[t] = d * sc;
    }
    softmax(sbuf, n);
    for (int64_t t = 0; t < n; ++t) {
      const float* vt = v + t * stride;
      const float p = sbuf[t];
      for (int64_t i = 0; i < hd; ++i) o[i] += p * vt[i];
    }
  }
}

void attention(const AttentionShape& s, const float* q, int64_t q_stride, int64_t n_q, int64_t pos0, const float* k,
               const float* v, int64_t kv_stride, float* out, int64_t out_stride, float* scores, int64_t scores_stride,
               ThreadPool* pool) {
  const int64_t group = s.n_heads / s.n_kv_heads;
  const float sc = attention_scale(s);
  const int64_t hd = s.head_dim;
  auto body = [&](int64_t b, int64_t e, int thread) {
    float* sbuf = scores + static_cast<int64_t>(thread) * scores_stride;
    for (int64_t u = b; u < e; ++u) {
      const int64_t h = u / n_q, r = u % n_q;
      const int64_t pos = pos0 + r;
      const int64_t lo = attention_first_key(s, pos);
      const int64_t kvh = h / group;
      attend_row(q + r * q_stride + h * hd, k + lo * kv_stride + kvh * hd, v + lo * kv_stride + kvh * hd, kv_stride,
                 pos - lo + 1, hd, sc, sbuf, out + r * out_stride + h * hd);
    }
  };
  const int64_t units = s.n_heads * n_q;
  if (pool)
    pool->parallel_for(units, 1, body);
  else
    body(0, units, 0);
}

void attention_reference(const AttentionShape& s, const float* q, int64_t n_q, int64_t pos0, const float* k,
                         const float* v, float* out) {
  const int64_t hd = s.head_dim, qd = s.n_heads * hd, kd = s.n_kv_heads * hd;
  const double sc = s.scale != 0 ? s.scale : 1.0 / std::sqrt(static_cast<double>(hd));
  const int64_t group = s.n_heads / s.n_kv_heads;
  for (int64_t r = 0; r < n_q; ++r) {
    const int64_t pos = pos0 + r;
    for (int64_t h = 0; h < s.n_heads; ++h) {
      const int64_t kvh = h / group;
      std::vector<double> w(static_cast<size_t>(pos + 1), -INFINITY);
      double mx = -INFINITY;
      for (int64_t t = 0; t <= pos; ++t) {
        if (s.sliding_window > 0 && pos - t >= s.sliding_window) continue;
        double d = 0;
        for (int64_t i = 0; i < hd; ++i) d += static_cast<double>(q[r * qd + h * hd + i]) * k[t * kd + kvh * hd + i];
        w[static_cast<size_t>(t)] = d * sc;
        mx = std::max(mx, d * sc);
      }
      double sum = 0;
      for (auto& x : w) {
        x = std::exp(x - mx);
        sum += x;
      }
      for (int64_t i = 0; i < hd; ++i) {
        double acc = 0;
        for (int64_t t = 0; t <= pos; ++t) acc += w[static_cast<size_t>(t)] / sum * v[t * kd + kvh * hd + i];
        out[r * qd + h * hd + i] = static_cast<float>(acc);
      }
    }
  }
}

}  // namespace qeval::ops
