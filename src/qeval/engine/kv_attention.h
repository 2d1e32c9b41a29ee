#pragma once
// Attention over a KV cache in any storage format (kv_cache.h). A quantized cache is read one
// KV head at a time: a work unit (KV head, block of query rows) dequantizes that head's keys and
// values for the positions its rows see into per-thread scratch, then runs every query head of
// the group over them with ops::attend_row, the arithmetic of ops::attention. The dequantized
// values are the simulated quantizer's, so the output equals ops::attention over a float cache
// holding quantize-dequantized K and V, bit for bit.
#include <cstdint>

#include "qeval/engine/kv_cache.h"
#include "qeval/engine/ops.h"

namespace qeval {

class ThreadPool;

// Floats of scratch per thread that attention_over_cache needs for caches of max_len positions.
int64_t kv_attention_scratch(const ops::AttentionShape& s, int64_t max_len);

// As ops::attention, reading K and V of `layer` from `cache` (positions 0 .. pos0 + n_q - 1 must
// be written). scores: scores_stride (>= pos0 + n_q) floats per thread; kv_scratch:
// kv_scratch_stride (>= kv_attention_scratch(s, pos0 + n_q)) floats per thread.
void attention_over_cache(const ops::AttentionShape& s, const float* q, int64_t q_stride, int64_t n_q, int64_t pos0,
                          const KVCache& cache, int64_t layer, float* out, int64_t out_stride, float* scores,
                          int64_t scores_stride, float* kv_scratch, int64_t kv_scratch_stride, ThreadPool* pool);

}  // namespace qeval
