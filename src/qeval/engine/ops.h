#pragma once
// The decoder's numeric building blocks, on plain float arrays (row-major). Vector kernels
// (dot, axpy) pick AVX-512 / AVX2+FMA / scalar code at run time; nothing needs -march.
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "qeval/io/model_config.h"

namespace qeval {
class ThreadPool;
}

namespace qeval::ops {

// Name of the vector code path chosen at run time: "avx512", "avx2", "scalar".
const char* simd_level();

float dot(const float* a, const float* b, int64_t n);
void axpy(float a, const float* x, float* y, int64_t n);  // y += a * x
void scale(float* x, float a, int64_t n);

// y = x / sqrt(mean(x^2) + eps) * w   (w may be null: no weight). Sum in double, like ggml.
void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps);
// y = (x - mean) / sqrt(var + eps) * w + b   (w, b may be null).
void layernorm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps);

// In-place softmax; returns nothing. Max-subtracted, sum in double.
void softmax(float* x, int64_t n);
// log(sum(exp(x))) computed stably (max + log of a double sum).
double logsumexp(const float* x, int64_t n);

float silu(float x);
float gelu_tanh(float x);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);  // out = silu(gate) * up
void gelu_tanh_inplace(float* x, int64_t n);

// Rotary embedding in the half-split ("rotate_half", NEOX) layout: dimension i of a head is
// paired with i + rope_dim/2 for i < rope_dim/2; dimensions >= rope_dim are left alone.
// Rotary angles for one position. theta(pos, i) = freq_scale * (pos * theta_scale^i) / freq_factors[i],
// computed the way ggml does (float, theta_scale^i by repeated multiplication), so the angles
// agree with llama.cpp's to the last bit of float32 except for the libm cos/sin.
struct RopeTable {
  int64_t half = 0;          // rope_dim / 2
  float theta_scale = 1.0f;  // base^(-2/rope_dim)
  float freq_scale = 1.0f;   // 1/factor for linear scaling, else 1
  std::vector<float> freq_factors;  // per pair divisor (llama3), empty = all 1
  void cos_sin(int64_t pos, float* cos_out, float* sin_out) const;
};
RopeTable make_rope_table(const ModelConfig& cfg);
// The llama3 per-pair frequency divisor (1 for pairs left unscaled), HF's formula.
std::vector<float> rope_llama3_factors(const RopeScaling& s, float theta_base, int64_t rope_dim);
// Rotate n_heads heads of head_dim floats laid out back to back.
void rope_apply(float* x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float* cos_v,
                const float* sin_v);

// Causal multi-head attention with grouped KV heads (GQA/MQA) for `n_q` query rows.
//  q:   n_q rows of n_heads*head_dim (query row r is at absolute position pos0 + r)
//  k,v: rows for positions 0 .. pos0 + n_q - 1, each kv_stride floats apart, n_kv_heads*head_dim used
//  out: n_q rows of n_heads*head_dim
// Query head h uses KV head h / (n_heads / n_kv_heads). sliding_window > 0 limits each query
// at position p to keys at positions p - window < t <= p. `scores` is scratch of at least
// pos0 + n_q floats per thread. Parallel over heads and rows.
struct AttentionShape {
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int64_t sliding_window = 0;
  float scale = 0;  // 0: 1/sqrt(head_dim)
};
void attention(const AttentionShape& s, const float* q, int64_t q_stride, int64_t n_q, int64_t pos0, const float* k,
               const float* v, int64_t kv_stride, float* out, int64_t out_stride, float* scores, int64_t scores_stride,
               ThreadPool* pool);
// The pieces attention() is made of, for attention over other storage (kv_attention.h) with the
// same arithmetic: the logit scale, the first key position a query at `pos` sees, and one query
// head row over n keys / values `stride` floats apart (sbuf: n floats of scratch; o: head_dim).
inline float attention_scale(const AttentionShape& s) {
  return s.scale != 0 ? s.scale : 1.0f / std::sqrt(static_cast<float>(s.head_dim));
}
inline int64_t attention_first_key(const AttentionShape& s, int64_t pos) {
  return s.sliding_window > 0 && pos - s.sliding_window + 1 > 0 ? pos - s.sliding_window + 1 : 0;
}
void attend_row(const float* qh, const float* k, const float* v, int64_t stride, int64_t n, int64_t hd, float sc,
                float* sbuf, float* o);

// Straightforward reference attention (double accumulation), for tests.
void attention_reference(const AttentionShape& s, const float* q, int64_t n_q, int64_t pos0, const float* k,
                         const float* v, float* out);

}  // namespace qeval::ops
