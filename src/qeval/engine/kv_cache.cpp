#include "qeval/engine/kv_cache.h"

#include <algorithm>
#include <string>

#include "qeval/util/error.h"

namespace qeval {

KVCache::KVCache(int64_t n_layers, int64_t kv_dim, int64_t capacity)
    : n_layers_(n_layers), kv_dim_(kv_dim), capacity_(capacity),
      data_(static_cast<size_t>(n_layers * 2 * capacity * kv_dim)) {}

void KVCache::truncate(int64_t n) {
  if (n < 0 || n > size_) throw Error("KV cache: cannot truncate " + std::to_string(size_) + " positions to " + std::to_string(n));
  size_ = n;
}

void KVCache::reserve(int64_t capacity) {
  if (capacity <= capacity_) return;
  std::vector<float> next(static_cast<size_t>(n_layers_ * 2 * capacity * kv_dim_));
  for (int64_t l = 0; l < n_layers_ * 2; ++l)
    std::copy_n(data_.data() + l * capacity_ * kv_dim_, size_ * kv_dim_, next.data() + l * capacity * kv_dim_);
  data_ = std::move(next);
  capacity_ = capacity;
}

}  // namespace qeval
