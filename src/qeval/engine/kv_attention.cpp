#include "qeval/engine/kv_attention.h"

#include <algorithm>

#include "qeval/engine/thread_pool.h"

namespace qeval {

int64_t kv_attention_scratch(const ops::AttentionShape& s, int64_t max_len) { return 2 * max_len * s.head_dim; }

void attention_over_cache(const ops::AttentionShape& s, const float* q, int64_t q_stride, int64_t n_q, int64_t pos0,
                          const KVCache& cache, int64_t layer, float* out, int64_t out_stride, float* scores,
                          int64_t scores_stride, float* kv_scratch, int64_t kv_scratch_stride, ThreadPool* pool) {
  if (!cache.format().quantized()) {
    ops::attention(s, q, q_stride, n_q, pos0, cache.k(layer), cache.v(layer), cache.kv_dim(), out, out_stride, scores,
                   scores_stride, pool);
    return;
  }
  const int64_t group = s.n_heads / s.n_kv_heads, hd = s.head_dim;
  const float sc = ops::attention_scale(s);
  // Enough units to keep the pool busy; each row block re-reads its KV head's prefix, which
  // costs far less than the block's attention (group * rows dot products per position).
  const int64_t threads = pool ? pool->size() : 1;
  const int64_t blocks = std::clamp<int64_t>((2 * threads + s.n_kv_heads - 1) / s.n_kv_heads, 1, n_q);
  const int64_t rows_per_block = (n_q + blocks - 1) / blocks;
  const int64_t units = s.n_kv_heads * ((n_q + rows_per_block - 1) / rows_per_block);
  auto body = [&](int64_t b, int64_t e, int thread) {
    float* sbuf = scores + static_cast<int64_t>(thread) * scores_stride;
    float* kbuf = kv_scratch + static_cast<int64_t>(thread) * kv_scratch_stride;
    for (int64_t u = b; u < e; ++u) {
      const int64_t kvh = u % s.n_kv_heads;
      const int64_t r0 = (u / s.n_kv_heads) * rows_per_block, r1 = std::min(n_q, r0 + rows_per_block);
      const int64_t first = ops::attention_first_key(s, pos0 + r0), end = pos0 + r1;
      float* vbuf = kbuf + (end - first) * hd;
      cache.read_head(layer, false, kvh, first, end, kbuf);
      cache.read_head(layer, true, kvh, first, end, vbuf);
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h)
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t pos = pos0 + r, lo = ops::attention_first_key(s, pos);
          ops::attend_row(q + r * q_stride + h * hd, kbuf + (lo - first) * hd, vbuf + (lo - first) * hd, hd, pos - lo + 1,
                          hd, sc, sbuf, out + r * out_stride + h * hd);
        }
    }
  };
  if (pool)
    pool->parallel_for(units, 1, body);
  else
    body(0, units, 0);
}

}  // namespace qeval
