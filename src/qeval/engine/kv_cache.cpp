#include "qeval/engine/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "qeval/util/error.h"

namespace qeval {

std::string KvFormat::name() const {
  if (!quantized()) return "f32";
  std::string s = (element == KvElement::Q8 ? "q8 " : "q4 ") + std::string(symmetric ? "sym" : "asym");
  if (group_cols() == head_dim) return s + " per token+head";
  return s + " g" + std::to_string(group_cols());
}

KVCache::KVCache(int64_t n_layers, int64_t kv_dim, int64_t capacity, KvFormat format)
    : n_layers_(n_layers), kv_dim_(kv_dim), format_(std::move(format)) {
  if (format_.quantized()) {
    if (!format_.quantizer) throw Error("KV cache: format " + format_.name() + " needs a quantizer");
    if (format_.head_dim <= 0 || kv_dim % format_.head_dim != 0)
      throw Error("KV cache: head_dim " + std::to_string(format_.head_dim) + " does not divide kv_dim " +
                  std::to_string(kv_dim));
    const int64_t g = format_.group_cols();
    groups_ = kv_dim / format_.head_dim * ((format_.head_dim + g - 1) / g);
    row_bytes_ = format_.element == KvElement::Q8 ? kv_dim : (kv_dim + 1) / 2;
    group_codes_.resize(static_cast<size_t>(g));
  }
  reserve(capacity);
}

int64_t KVCache::bytes_per_position() const {
  if (!format_.quantized()) return n_layers_ * 2 * kv_dim_ * static_cast<int64_t>(sizeof(float));
  const int64_t per_group = static_cast<int64_t>(sizeof(float)) + (format_.symmetric ? 0 : 1);
  return n_layers_ * 2 * (row_bytes_ + groups_ * per_group);
}

void KVCache::truncate(int64_t n) {
  if (n < 0 || n > size_) throw Error("KV cache: cannot truncate " + std::to_string(size_) + " positions to " + std::to_string(n));
  size_ = n;
}

namespace {

// Grows a [planes][capacity][width] array to a new capacity, keeping the first `keep` positions.
template <class T>
void regrow(std::vector<T>& data, int64_t planes, int64_t width, int64_t old_cap, int64_t new_cap, int64_t keep) {
  std::vector<T> next(static_cast<size_t>(planes * new_cap * width));
  for (int64_t p = 0; p < planes && keep > 0; ++p)
    std::copy_n(data.data() + p * old_cap * width, keep * width, next.data() + p * new_cap * width);
  data = std::move(next);
}

}  // namespace

void KVCache::reserve(int64_t capacity) {
  if (capacity <= capacity_) return;
  const int64_t planes = n_layers_ * 2;
  if (!format_.quantized()) {
    regrow(data_, planes, kv_dim_, capacity_, capacity, size_);
  } else {
    regrow(codes_, planes, row_bytes_, capacity_, capacity, size_);
    regrow(scales_, planes, groups_, capacity_, capacity, size_);
    if (!format_.symmetric) regrow(zeros_, planes, groups_, capacity_, capacity, size_);
  }
  capacity_ = capacity;
}

void KVCache::write_row(int64_t plane, int64_t pos, const float* x) {
  const int64_t hd = format_.head_dim, g = format_.group_cols(), row = plane * capacity_ + pos;
  uint8_t* codes = codes_.data() + row * row_bytes_;
  float* scales = scales_.data() + row * groups_;
  uint8_t* zeros = format_.symmetric ? nullptr : zeros_.data() + row * groups_;
  const bool q4 = format_.element == KvElement::Q4;
  const auto qmax = static_cast<float>((1 << format_.bits()) - 1);
  const auto implicit_zero = static_cast<float>(1 << (format_.bits() - 1));
  int64_t gi = 0;
  for (int64_t h0 = 0; h0 < kv_dim_; h0 += hd)
    for (int64_t b = h0; b < h0 + hd; b += g, ++gi) {
      const int64_t n = std::min(g, h0 + hd - b);
      const KvGroupParams p = format_.quantizer->quantize(x + b, n, group_codes_.data());
      // The cache keeps the zero as an integer (asym) or not at all (sym): refuse anything else
      // rather than return values that differ from the quantizer's.
      if (format_.symmetric ? p.zero != implicit_zero : !(p.zero >= 0.0f && p.zero <= qmax && p.zero == static_cast<float>(static_cast<int>(p.zero))))
        throw Error("KV cache: quantizer returned zero-point " + std::to_string(p.zero) + " that format " +
                    format_.name() + " cannot store");
      scales[gi] = p.scale;
      if (zeros) zeros[gi] = static_cast<uint8_t>(p.zero);
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t c = group_codes_[static_cast<size_t>(i)];
        const int64_t e = b + i;
        if (!q4) {
          codes[e] = c;
        } else if (e % 2 == 0) {
          codes[e / 2] = static_cast<uint8_t>((codes[e / 2] & 0xF0) | (c & 0x0F));
        } else {
          codes[e / 2] = static_cast<uint8_t>((codes[e / 2] & 0x0F) | (c << 4));
        }
      }
    }
}

void KVCache::write(int64_t layer, int64_t pos, const float* k_rows, const float* v_rows, int64_t n) {
  if (layer < 0 || layer >= n_layers_ || pos < 0 || n < 0 || pos + n > capacity_)
    throw Error("KV cache: write of positions " + std::to_string(pos) + ".." + std::to_string(pos + n) +
                " outside a cache of " + std::to_string(capacity_));
  if (!format_.quantized()) {
    std::memcpy(k(layer) + pos * kv_dim_, k_rows, static_cast<size_t>(n * kv_dim_) * sizeof(float));
    std::memcpy(v(layer) + pos * kv_dim_, v_rows, static_cast<size_t>(n * kv_dim_) * sizeof(float));
    return;
  }
  for (int64_t r = 0; r < n; ++r) {
    write_row(plane(layer, false), pos + r, k_rows + r * kv_dim_);
    write_row(plane(layer, true), pos + r, v_rows + r * kv_dim_);
  }
}

void KVCache::read_head(int64_t layer, bool value, int64_t head, int64_t begin, int64_t end, float* out) const {
  const int64_t pl = plane(layer, value);
  if (!format_.quantized()) {
    const int64_t hd = format_.head_dim > 0 ? format_.head_dim : kv_dim_;
    for (int64_t t = begin; t < end; ++t)
      std::memcpy(out + (t - begin) * hd, data_.data() + (pl * capacity_ + t) * kv_dim_ + head * hd,
                  static_cast<size_t>(hd) * sizeof(float));
    return;
  }
  const int64_t hd = format_.head_dim, g = format_.group_cols();
  const int64_t gph = (hd + g - 1) / g;  // groups per head
  const bool q4 = format_.element == KvElement::Q4;
  const auto implicit_zero = static_cast<float>(1 << (format_.bits() - 1));
  for (int64_t t = begin; t < end; ++t) {
    const int64_t row = pl * capacity_ + t;
    const uint8_t* codes = codes_.data() + row * row_bytes_;
    const float* scales = scales_.data() + row * groups_ + head * gph;
    const uint8_t* zeros = format_.symmetric ? nullptr : zeros_.data() + row * groups_ + head * gph;
    float* o = out + (t - begin) * hd;
    for (int64_t j = 0; j < gph; ++j) {
      const float s = scales[j];
      const float z = zeros ? static_cast<float>(zeros[j]) : implicit_zero;
      const int64_t b = j * g, e = std::min(hd, b + g);
      for (int64_t i = b; i < e; ++i) {
        const int64_t el = head * hd + i;
        const int c = q4 ? (codes[el / 2] >> ((el % 2) * 4)) & 0x0F : codes[el];
        o[i] = s * (static_cast<float>(c) - z);  // quant::dequantize_code
      }
    }
  }
}

}  // namespace qeval
