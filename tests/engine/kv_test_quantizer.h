#pragma once
// A minimal min-max KV group quantizer for engine tests (the engine cannot use quant/'s; the
// real one is tested against the simulated path in tests/quant/test_kv_stored_cache.cpp), and
// the quantize-dequantize of whole rows it implies, for comparing a stored cache with a float
// cache that holds the dequantized values.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>

#include "qeval/engine/hooks.h"
#include "qeval/engine/kv_cache.h"

namespace qeval::test {

class MinMaxKvQuantizer final : public KvGroupQuantizer {
 public:
  MinMaxKvQuantizer(int bits, bool symmetric) : bits_(bits), symmetric_(symmetric) {}
  KvGroupParams quantize(const float* x, int64_t n, uint8_t* codes) const override {
    float lo = 0, hi = 0;
    for (int64_t i = 0; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
    const int qmax = (1 << bits_) - 1;
    KvGroupParams p;
    if (symmetric_) {
      const int half = 1 << (bits_ - 1);
      p.zero = static_cast<float>(half);
      const float a = std::max(-lo, hi);
      p.scale = a > 0 ? a / static_cast<float>(half - 1) : 1.0f;
      for (int64_t i = 0; i < n; ++i)
        codes[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(x[i] / p.scale) + p.zero, 1.0f, static_cast<float>(qmax)));
    } else {
      p.scale = hi > lo ? (hi - lo) / static_cast<float>(qmax) : 1.0f;
      p.zero = std::clamp(std::nearbyint(-lo / p.scale), 0.0f, static_cast<float>(qmax));
      for (int64_t i = 0; i < n; ++i)
        codes[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(x[i] / p.scale) + p.zero, 0.0f, static_cast<float>(qmax)));
    }
    return p;
  }

 private:
  int bits_;
  bool symmetric_;
};

inline KvFormat minmax_format(KvElement element, int64_t head_dim, int64_t group_size, bool symmetric) {
  KvFormat f;
  f.element = element;
  f.head_dim = head_dim;
  f.group_size = group_size;
  f.symmetric = symmetric;
  f.quantizer = std::make_shared<MinMaxKvQuantizer>(f.bits(), symmetric);
  return f;
}

// x [rows, kv_dim] quantized-dequantized in place, group by group as a stored cache of format f.
inline void fake_quantize_rows(const KvFormat& f, float* x, int64_t rows, int64_t kv_dim) {
  uint8_t codes[256];
  const int64_t g = f.group_cols();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h0 = 0; h0 < kv_dim; h0 += f.head_dim)
      for (int64_t b = h0; b < h0 + f.head_dim; b += g) {
        const int64_t n = std::min(g, h0 + f.head_dim - b);
        float* y = x + r * kv_dim + b;
        const KvGroupParams p = f.quantizer->quantize(y, n, codes);
        for (int64_t i = 0; i < n; ++i) y[i] = p.scale * (static_cast<float>(codes[i]) - p.zero);
      }
}

// The simulated path: K and V quantize-dequantized before a float cache.
struct FakeKvHooks final : ForwardHooks {
  KvFormat format;
  explicit FakeKvHooks(KvFormat f) : format(std::move(f)) {}
  void kv(int, float* k, float* v, int64_t tokens, int64_t kv_dim) override {
    fake_quantize_rows(format, k, tokens, kv_dim);
    fake_quantize_rows(format, v, tokens, kv_dim);
  }
};

}  // namespace qeval::test
