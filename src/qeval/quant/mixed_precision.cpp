#include "qeval/quant/mixed_precision.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "qeval/util/error.h"

namespace qeval::quant {

nlohmann::json MixedPrecisionPlan::to_json() const {
  nlohmann::json l = nlohmann::json::array();
  for (const auto& a : layers) l.push_back({{"name", a.name}, {"bits", a.bits}, {"bpw", a.bpw}});
  return {{"achieved_bpw", achieved_bpw}, {"predicted_error", predicted_error}, {"layers", std::move(l)}};
}

MixedPrecisionPlan assign_mixed_precision(std::span<const LayerCost> layers, const MixedPrecisionOptions& opts) {
  std::vector<int> cand = opts.candidates;
  std::sort(cand.begin(), cand.end());
  cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
  if (cand.empty()) throw Error("mixed precision: no candidate bit-widths");
  for (int b : cand)
    if (b < 2 || b > 8) throw Error("mixed precision: candidate bits " + std::to_string(b) + " outside 2..8");
  const size_t L = layers.size(), C = cand.size();
  std::vector<std::vector<double>> bpw(L, std::vector<double>(C));
  std::vector<QuantizerConfig> cfgs(C, opts.base);
  double total_params = 0;
  for (size_t c = 0; c < C; ++c) cfgs[c].bits = cand[c];
  for (size_t l = 0; l < L; ++l) {
    if (layers[l].rows <= 0 || layers[l].cols <= 0) throw Error("mixed precision: layer '" + layers[l].name + "' is empty");
    if (!(layers[l].sensitivity >= 0)) throw Error("mixed precision: negative sensitivity for '" + layers[l].name + "'");
    for (size_t c = 0; c < C; ++c) bpw[l][c] = effective_bits(cfgs[c], layers[l].rows, layers[l].cols, opts.scale_bits);
    total_params += static_cast<double>(layers[l].rows) * static_cast<double>(layers[l].cols);
  }
  auto params = [&](size_t l) { return static_cast<double>(layers[l].rows) * static_cast<double>(layers[l].cols); };
  std::vector<size_t> level(L, 0);
  double bits_used = 0;
  for (size_t l = 0; l < L; ++l) bits_used += params(l) * bpw[l][0];
  const double budget_bits = opts.budget_bpw * total_params * (1 + 1e-12);
  if (L > 0 && bits_used > budget_bits)
    throw Error("mixed precision: budget " + std::to_string(opts.budget_bpw) + " bpw is below the smallest candidate (" +
                std::to_string(bits_used / total_params) + " bpw)");
  auto err = [&](size_t l, size_t c) { return layers[l].sensitivity * std::pow(4.0, -cand[c]); };
  while (true) {
    size_t best = L;
    double best_ratio = -1;
    for (size_t l = 0; l < L; ++l) {
      if (level[l] + 1 >= C) continue;
      const size_t nxt = level[l] + 1;
      const double extra = params(l) * (bpw[l][nxt] - bpw[l][level[l]]);
      if (bits_used + extra > budget_bits) continue;
      bool order_ok = true;  // every strictly more sensitive layer must already have >= cand[nxt]
      for (size_t m = 0; m < L && order_ok; ++m)
        if (layers[m].sensitivity > layers[l].sensitivity && level[m] < nxt) order_ok = false;
      if (!order_ok) continue;
      const double ratio = (err(l, level[l]) - err(l, nxt)) / std::max(extra, 1e-30);
      if (ratio > best_ratio) best_ratio = ratio, best = l;
    }
    if (best == L) break;
    bits_used += params(best) * (bpw[best][level[best] + 1] - bpw[best][level[best]]);
    ++level[best];
  }
  MixedPrecisionPlan p;
  for (size_t l = 0; l < L; ++l) {
    p.layers.push_back({layers[l].name, cand[level[l]], cfgs[level[l]], bpw[l][level[l]]});
    p.predicted_error += err(l, level[l]);
  }
  p.achieved_bpw = total_params > 0 ? bits_used / total_params : 0.0;
  return p;
}

}  // namespace qeval::quant
