#include "qeval/quant/quantizer.h"

#include <charconv>
#include <cmath>
#include <limits>

#include "qeval/util/error.h"

namespace qeval::quant {

namespace {

std::string num(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

void check_shape(std::span<const float> x, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0 || static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) != x.size())
    throw Error("quantizer: matrix [" + std::to_string(rows) + ", " + std::to_string(cols) + "] does not match " +
                std::to_string(x.size()) + " values");
}

uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// NaN-ignoring running range.
struct Range {
  float lo = std::numeric_limits<float>::infinity();
  float hi = -std::numeric_limits<float>::infinity();
  void add(float v) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
};

}  // namespace

std::string_view granularity_name(Granularity g) {
  switch (g) {
    case Granularity::PerTensor: return "per-tensor";
    case Granularity::PerChannel: return "per-channel";
    case Granularity::PerToken: return "per-token";
    case Granularity::PerGroup: return "per-group";
  }
  return "?";
}

std::string_view rounding_name(Rounding r) {
  switch (r) {
    case Rounding::Nearest: return "nearest";
    case Rounding::Floor: return "floor";
    case Rounding::Ceil: return "ceil";
    case Rounding::Stochastic: return "stochastic";
  }
  return "?";
}

void QuantizerConfig::validate() const {
  if (bits < 2 || bits > 8) throw Error("quantizer: bits " + std::to_string(bits) + " out of range 2-8");
  if (granularity == Granularity::PerGroup && group_size <= 0)
    throw Error("quantizer: group size must be positive (got " + std::to_string(group_size) + ")");
  if (granularity != Granularity::PerGroup && group_size != 0)
    throw Error("quantizer: group size " + std::to_string(group_size) + " given with " +
                std::string(granularity_name(granularity)) + " granularity");
  if (!(clip_ratio > 0.0 && clip_ratio <= 1.0))
    throw Error("quantizer: clip ratio " + num(clip_ratio) + " outside (0, 1]");
  if (!(scale_factor > 0.0 && scale_factor < 2.0))
    throw Error("quantizer: scale factor " + num(scale_factor) + " outside (0, 2)");
  if (!(zero_factor >= 0.0 && zero_factor <= 2.0))
    throw Error("quantizer: zero-point factor " + num(zero_factor) + " outside [0, 2]");
}

GroupLayout group_layout(const QuantizerConfig& cfg, int64_t rows, int64_t cols) {
  GroupLayout l;
  l.rows = rows;
  l.cols = cols;
  l.per_tensor = cfg.granularity == Granularity::PerTensor;
  l.group_cols = cfg.granularity == Granularity::PerGroup ? cfg.group_size : std::max<int64_t>(cols, 1);
  l.groups_per_row = cols == 0 ? 0 : (cols + l.group_cols - 1) / l.group_cols;
  return l;
}

ScaleZero params_from_range(const QuantizerConfig& cfg, float min, float max) {
  float lo = min < 0.0f ? min : 0.0f;  // the range always contains 0 (NaN -> 0)
  float hi = max > 0.0f ? max : 0.0f;
  const auto clip = static_cast<float>(cfg.clip_ratio);
  if (cfg.symmetric) {
    const int half = 1 << (cfg.bits - 1);
    const float amax = clip * std::max(-lo, hi);
    if (!(amax > 0.0f)) return {1.0f, static_cast<float>(half)};
    return {amax / static_cast<float>(half - 1), static_cast<float>(half)};
  }
  lo *= clip;
  hi *= clip;
  const float s = (hi - lo) / static_cast<float>(cfg.qmax());
  if (!(s > 0.0f)) return {1.0f, 0.0f};
  const float z = std::nearbyint(-lo / s);
  return {s, std::clamp(z, 0.0f, static_cast<float>(cfg.qmax()))};
}

ScaleZero perturbed(const QuantizerConfig& cfg, ScaleZero p) {
  if (cfg.scale_factor != 1.0) p.scale = static_cast<float>(p.scale * cfg.scale_factor);
  if (cfg.zero_factor != 1.0) p.zero = static_cast<float>(p.zero * cfg.zero_factor);
  return p;
}

uint8_t quantize_code(const QuantizerConfig& cfg, float x, ScaleZero p, uint64_t element_index) {
  const float v = x / p.scale;
  float r;
  switch (cfg.rounding) {
    case Rounding::Floor: r = std::floor(v); break;
    case Rounding::Ceil: r = std::ceil(v); break;
    case Rounding::Stochastic: {
      const uint64_t h = splitmix64(cfg.seed ^ splitmix64(element_index));
      const float u = static_cast<float>(h >> 40) * 0x1.0p-24f;  // [0, 1)
      r = std::floor(v + u);
      break;
    }
    case Rounding::Nearest:
    default: r = std::nearbyint(v); break;
  }
  const float t = r + p.zero;
  const float lo = cfg.symmetric ? 1.0f : 0.0f;
  const auto hi = static_cast<float>(cfg.qmax());
  if (t >= hi) return static_cast<uint8_t>(cfg.qmax());
  if (t >= lo) return static_cast<uint8_t>(t);
  if (t < lo) return static_cast<uint8_t>(lo);
  return static_cast<uint8_t>(p.zero);  // NaN input: the code of 0
}

std::vector<float> QuantizedMatrix::dequantize() const {
  std::vector<float> out(codes.size());
  dequantize(out);
  return out;
}

void QuantizedMatrix::dequantize(std::span<float> out) const {
  if (out.size() != codes.size()) throw Error("QuantizedMatrix::dequantize: output size mismatch");
  const GroupLayout l = layout();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const auto i = static_cast<size_t>(r * cols + c);
      const auto g = static_cast<size_t>(l.index(r, c));
      out[i] = dequantize_code(codes[i], {scales[g], zeros[g]});
    }
  if (!has_outliers()) return;
  if (static_cast<int64_t>(outlier_row_ptr.size()) != rows + 1 || outlier_cols.size() != outlier_values.size() ||
      static_cast<size_t>(outlier_row_ptr.back()) != outlier_values.size())
    throw Error("QuantizedMatrix::dequantize: inconsistent outlier CSR");
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = outlier_row_ptr[static_cast<size_t>(r)]; k < outlier_row_ptr[static_cast<size_t>(r) + 1]; ++k) {
      const auto ku = static_cast<size_t>(k);
      if (outlier_cols[ku] < 0 || outlier_cols[ku] >= cols) throw Error("QuantizedMatrix::dequantize: outlier column out of range");
      out[static_cast<size_t>(r * cols + outlier_cols[ku])] = outlier_values[ku];
    }
}

namespace {

// Calls fn(group_index, exact_params, row, col_begin, col_end) for every group row-segment, after
// computing each group's parameters from x.
template <class Fn>
void for_each_group(const QuantizerConfig& cfg, std::span<const float> x, int64_t rows, int64_t cols, Fn&& fn) {
  const GroupLayout l = group_layout(cfg, rows, cols);
  if (l.per_tensor) {
    Range rg;
    for (float v : x) rg.add(v);
    const ScaleZero p = params_from_range(cfg, rg.lo, rg.hi);
    for (int64_t r = 0; r < rows; ++r) fn(0, p, r, 0, cols);
    return;
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < l.groups_per_row; ++g) {
      const int64_t b = l.group_begin(g), e = l.group_end(g);
      Range rg;
      for (int64_t c = b; c < e; ++c) rg.add(x[static_cast<size_t>(r * cols + c)]);
      fn(r * l.groups_per_row + g, params_from_range(cfg, rg.lo, rg.hi), r, b, e);
    }
}

}  // namespace

QuantizedMatrix quantize(const QuantizerConfig& cfg, std::span<const float> x, int64_t rows, int64_t cols) {
  cfg.validate();
  check_shape(x, rows, cols);
  QuantizedMatrix q;
  q.config = cfg;
  q.rows = rows;
  q.cols = cols;
  q.codes.resize(x.size());
  const auto n = static_cast<size_t>(group_layout(cfg, rows, cols).count());
  q.scales.assign(n, 1.0f);
  q.zeros.assign(n, 0.0f);
  for_each_group(cfg, x, rows, cols, [&](int64_t g, ScaleZero p, int64_t r, int64_t b, int64_t e) {
    const ScaleZero stored = perturbed(cfg, p);
    q.scales[static_cast<size_t>(g)] = stored.scale;
    q.zeros[static_cast<size_t>(g)] = stored.zero;
    for (int64_t c = b; c < e; ++c) {
      const auto i = static_cast<size_t>(r * cols + c);
      q.codes[i] = quantize_code(cfg, x[i], p, i);
    }
  });
  return q;
}

void fake_quantize_inplace(const QuantizerConfig& cfg, std::span<float> x, int64_t rows, int64_t cols) {
  cfg.validate();
  check_shape(x, rows, cols);
  // Parameters of a group are computed from its values before any of them is overwritten:
  // for_each_group finishes a group's range before calling fn (per-tensor: the whole matrix).
  for_each_group(cfg, std::span<const float>(x.data(), x.size()), rows, cols,
                 [&](int64_t, ScaleZero p, int64_t r, int64_t b, int64_t e) {
                   const ScaleZero stored = perturbed(cfg, p);
                   for (int64_t c = b; c < e; ++c) {
                     const auto i = static_cast<size_t>(r * cols + c);
                     x[i] = dequantize_code(quantize_code(cfg, x[i], p, i), stored);
                   }
                 });
}

std::vector<float> fake_quantize(const QuantizerConfig& cfg, std::span<const float> x, int64_t rows, int64_t cols) {
  std::vector<float> out(x.begin(), x.end());
  fake_quantize_inplace(cfg, out, rows, cols);
  return out;
}

double effective_bits(const QuantizerConfig& cfg, int64_t rows, int64_t cols, int scale_bits) {
  cfg.validate();
  const double n = static_cast<double>(rows) * static_cast<double>(cols);
  if (n == 0) return cfg.bits;
  const auto groups = static_cast<double>(group_layout(cfg, rows, cols).count());
  const double per_group = scale_bits + (cfg.symmetric ? 0 : cfg.bits);
  return (n * cfg.bits + groups * per_group) / n;
}

}  // namespace qeval::quant
