#pragma once
// Per-sequence key/value cache: for every layer, K and V rows of kv_dim values for positions
// 0 .. size()-1 (K after RoPE). Allocated once with a fixed capacity; decoding never allocates.
//
// Storage (KvFormat):
//   F32      floats, read in place through k(layer) / v(layer)
//   Q8, Q4   integer codes of 8 or 4 bits (two 4-bit codes per byte, the even element of a row in
//            the low nibble), with one float32 scale per group and, for an asymmetric grid, one
//            uint8 zero-point per group (a symmetric grid's zero is implicit: 2^(bits-1)).
//            Groups never cross heads: each head of head_dim values is split into groups of
//            group_size (the last one shorter when head_dim is not a multiple; group_size 0 or
//            >= head_dim: one group per token and head).
// The cache does not choose codes: a KvGroupQuantizer (the uniform quantizer of quant/, which the
// engine cannot depend on) maps each group to codes, scale and zero; the cache only packs them and
// dequantizes x^ = scale * (code - zero), the expression of quant::dequantize_code. The float32
// scale and the integer zero are kept exactly, so a dequantized value is bit-identical to the one
// the simulated path (quant::KvQuantHooks: quantize-dequantize, then a float cache) would store.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qeval {

// Codes and parameters of one group of a K or V row, as the quantizer chose them.
struct KvGroupParams {
  float scale = 1.0f;
  float zero = 0.0f;  // asymmetric: an integer in [0, 2^bits - 1]; symmetric: 2^(bits-1)
};

class KvGroupQuantizer {
 public:
  virtual ~KvGroupQuantizer() = default;
  // Writes n codes (one per byte, each < 2^bits) for x[0 .. n-1] and returns the group's
  // parameters; must not allocate (called on every decoding step).
  virtual KvGroupParams quantize(const float* x, int64_t n, uint8_t* codes) const = 0;
};

enum class KvElement : uint8_t { F32, Q8, Q4 };

struct KvFormat {
  KvElement element = KvElement::F32;
  int64_t head_dim = 0;    // quantized formats: the model's head dimension
  int64_t group_size = 0;  // elements per group inside a head; 0: the whole head
  bool symmetric = false;
  std::shared_ptr<const KvGroupQuantizer> quantizer;  // required for Q8 / Q4

  bool quantized() const { return element != KvElement::F32; }
  int bits() const { return element == KvElement::Q8 ? 8 : element == KvElement::Q4 ? 4 : 32; }
  int64_t group_cols() const { return group_size > 0 && group_size < head_dim ? group_size : head_dim; }
  // "f32", "q8 asym per token+head", "q4 sym g32".
  std::string name() const;
};

class KVCache {
 public:
  KVCache() = default;
  // Throws qeval::Error for a quantized format without a quantizer or whose head_dim does not
  // divide kv_dim.
  KVCache(int64_t n_layers, int64_t kv_dim, int64_t capacity, KvFormat format = {});

  int64_t size() const { return size_; }          // positions filled
  int64_t capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  int64_t n_layers() const { return n_layers_; }
  const KvFormat& format() const { return format_; }
  void clear() { size_ = 0; }
  void truncate(int64_t n);                        // keep the first n positions
  // Grows (reallocating, keeping contents) to at least `capacity` positions.
  void reserve(int64_t capacity);

  // Bytes held per position (K and V of every layer: codes, scales, zeros) and for n positions:
  // the memory a sequence of n tokens occupies in this format.
  int64_t bytes_per_position() const;
  int64_t bytes(int64_t positions) const { return positions * bytes_per_position(); }

  // The float rows of the F32 format; nullptr for a quantized format (read_head dequantizes).
  float* k(int64_t layer) { return plane_f32(layer, false); }
  float* v(int64_t layer) { return plane_f32(layer, true); }
  const float* k(int64_t layer) const { return const_cast<KVCache*>(this)->plane_f32(layer, false); }
  const float* v(int64_t layer) const { return const_cast<KVCache*>(this)->plane_f32(layer, true); }

  // Stores n rows of K and V (kv_dim floats each) at positions pos .. pos+n-1 of `layer`
  // (quantized formats: quantizes them). Does not change size(); does not allocate.
  void write(int64_t layer, int64_t pos, const float* k_rows, const float* v_rows, int64_t n);
  // Dequantized values of head `head` of positions [begin, end) into out ((end-begin) * head_dim
  // floats, rows back to back); `value` selects V over K. Any format; does not allocate.
  void read_head(int64_t layer, bool value, int64_t head, int64_t begin, int64_t end, float* out) const;
  void set_size(int64_t n) { size_ = n; }          // engine use: after writing new positions

 private:
  int64_t plane(int64_t layer, bool value) const { return layer * 2 + (value ? 1 : 0); }
  float* plane_f32(int64_t layer, bool value) {
    return data_.empty() ? nullptr : data_.data() + plane(layer, value) * capacity_ * kv_dim_;
  }
  void write_row(int64_t plane, int64_t pos, const float* x);

  int64_t n_layers_ = 0, kv_dim_ = 0, capacity_ = 0, size_ = 0;
  KvFormat format_;
  std::vector<float> data_;  // F32: [layer][k|v][capacity][kv_dim]
  // Q8 / Q4: per plane ([layer][k|v]) and position, row_bytes_ codes, groups_ scales and zeros.
  int64_t row_bytes_ = 0, groups_ = 0;
  std::vector<uint8_t> codes_;
  std::vector<float> scales_;
  std::vector<uint8_t> zeros_;  // asymmetric only
  std::vector<uint8_t> group_codes_;  // scratch: one group's unpacked codes
};

}  // namespace qeval
