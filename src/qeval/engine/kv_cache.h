#pragma once
// Per-sequence key/value cache: for every layer, K and V rows of kv_dim floats for positions
// 0 .. size()-1 (K after RoPE). Allocated once with a fixed capacity; decoding never allocates.
#include <cstdint>
#include <vector>

namespace qeval {

class KVCache {
 public:
  KVCache() = default;
  KVCache(int64_t n_layers, int64_t kv_dim, int64_t capacity);

  int64_t size() const { return size_; }          // positions filled
  int64_t capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  int64_t n_layers() const { return n_layers_; }
  void clear() { size_ = 0; }
  void truncate(int64_t n);                        // keep the first n positions
  // Grows (reallocating, keeping contents) to at least `capacity` positions.
  void reserve(int64_t capacity);

  float* k(int64_t layer) { return data_.data() + (layer * 2) * capacity_ * kv_dim_; }
  float* v(int64_t layer) { return data_.data() + (layer * 2 + 1) * capacity_ * kv_dim_; }
  const float* k(int64_t layer) const { return data_.data() + (layer * 2) * capacity_ * kv_dim_; }
  const float* v(int64_t layer) const { return data_.data() + (layer * 2 + 1) * capacity_ * kv_dim_; }
  void set_size(int64_t n) { size_ = n; }          // engine use: after writing new positions

 private:
  int64_t n_layers_ = 0, kv_dim_ = 0, capacity_ = 0, size_ = 0;
  std::vector<float> data_;
};

}  // namespace qeval
