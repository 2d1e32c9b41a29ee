#include "qeval/quant/layer_stats.h"

#include <algorithm>
#include <cmath>

namespace qeval::quant {

namespace {
constexpr size_t kSampleCap = 65536;

double median_of(std::vector<float> v) {
  if (v.empty()) return 0;
  const size_t m = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(m), v.end());
  double med = v[m];
  if (v.size() % 2 == 0) med = 0.5 * (med + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(m)));
  return med;
}

TensorStats from_moments(double n, double s1, double s2, double s3, double s4, double max_abs, double median) {
  TensorStats t;
  t.count = static_cast<int64_t>(n);
  if (n <= 0) return t;
  const double m1 = s1 / n, m2 = s2 / n, m3 = s3 / n, m4 = s4 / n;
  const double var = std::max(0.0, m2 - m1 * m1);
  const double c4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1 * m1 * m1 * m1;
  t.mean = m1;
  t.std = std::sqrt(var);
  t.mean_square = m2;
  t.excess_kurtosis = var > 0 ? c4 / (var * var) - 3.0 : 0.0;
  t.max_abs = max_abs;
  t.median_abs = median;
  t.max_median_ratio = median > 0 ? max_abs / median : 0.0;
  return t;
}
}  // namespace

TensorStats tensor_stats(std::span<const float> x) {
  // Two-pass central moments for accuracy.
  const auto n = static_cast<double>(x.size());
  if (x.empty()) return {};
  double mean = 0, max_abs = 0;
  for (float v : x) mean += v, max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
  mean /= n;
  double c2 = 0, c4 = 0;
  for (float v : x) {
    const double d = v - mean, d2 = d * d;
    c2 += d2;
    c4 += d2 * d2;
  }
  c2 /= n;
  c4 /= n;
  std::vector<float> a(x.size());
  for (size_t i = 0; i < x.size(); ++i) a[i] = std::fabs(x[i]);
  TensorStats t;
  t.count = static_cast<int64_t>(x.size());
  t.mean = mean;
  t.std = std::sqrt(c2);
  t.mean_square = c2 + mean * mean;
  t.excess_kurtosis = c2 > 0 ? c4 / (c2 * c2) - 3.0 : 0.0;
  t.max_abs = max_abs;
  t.median_abs = median_of(std::move(a));
  t.max_median_ratio = t.median_abs > 0 ? max_abs / t.median_abs : 0.0;
  return t;
}

void ActivationStatsObserver::linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) {
  Acc& a = acc_[id];
  const int64_t n = rows * cols;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i], v2 = v * v;
    a.s1 += v;
    a.s2 += v2;
    a.s3 += v2 * v;
    a.s4 += v2 * v2;
    a.max_abs = std::max(a.max_abs, std::fabs(v));
    if (a.seen++ % a.stride == 0) {
      a.sample.push_back(std::fabs(x[i]));
      if (a.sample.size() >= kSampleCap) {  // keep every other sample, double the stride
        size_t k = 0;
        for (size_t j = 0; j < a.sample.size(); j += 2) a.sample[k++] = a.sample[j];
        a.sample.resize(k);
        a.stride *= 2;
      }
    }
  }
  a.n += static_cast<double>(n);
}

std::optional<TensorStats> ActivationStatsObserver::stats(const LinearId& id) const {
  auto it = acc_.find(id);
  if (it == acc_.end()) return std::nullopt;
  const Acc& a = it->second;
  return from_moments(a.n, a.s1, a.s2, a.s3, a.s4, a.max_abs, median_of(a.sample));
}

std::vector<LinearId> ActivationStatsObserver::layers() const {
  std::vector<LinearId> v;
  for (const auto& [id, a] : acc_) v.push_back(id);
  return v;
}

double sensitivity_score(const LayerStats& s) {
  const double ms = s.activation ? s.activation->mean_square : 1.0;
  const double kurt = s.activation ? std::max(0.0, s.activation->excess_kurtosis) : 0.0;
  return s.weight.max_abs * s.weight.max_abs * ms * static_cast<double>(s.in_features) * (1.0 + kurt / 3.0);
}

nlohmann::json to_json(const TensorStats& s) {
  return {{"count", s.count},       {"mean", s.mean},         {"std", s.std},
          {"excess_kurtosis", s.excess_kurtosis}, {"max_abs", s.max_abs}, {"median_abs", s.median_abs},
          {"max_median_ratio", s.max_median_ratio}, {"mean_square", s.mean_square}};
}

nlohmann::json LayerStatsReport::to_json() const {
  nlohmann::json layers_j = nlohmann::json::array();
  for (const LayerStats& l : layers) {
    nlohmann::json j = {{"name", l.id.name()},
                        {"out_features", l.out_features},
                        {"in_features", l.in_features},
                        {"weight", quant::to_json(l.weight)},
                        {"sensitivity", l.sensitivity}};
    j["activation"] = l.activation ? quant::to_json(*l.activation) : nlohmann::json(nullptr);
    layers_j.push_back(std::move(j));
  }
  return {{"layers", std::move(layers_j)}};
}

LayerStatsReport collect_layer_stats(const Engine& engine, const ActivationStatsObserver* acts) {
  LayerStatsReport r;
  for (const LinearId& id : engine.linear_ids()) {
    const Linear& L = engine.linear(id);
    LayerStats s;
    s.id = id;
    s.out_features = L.out_features();
    s.in_features = L.in_features();
    const auto w = L.weights->to_f32();
    s.weight = tensor_stats(w);
    if (acts) s.activation = acts->stats(id);
    s.sensitivity = sensitivity_score(s);
    r.layers.push_back(std::move(s));
  }
  return r;
}

}  // namespace qeval::quant
