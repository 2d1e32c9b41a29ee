#include "qeval/eval/metrics/ece.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace qeval::eval {

int ece_bin_index(double confidence, int n_bins) {
  const double scaled = confidence * static_cast<double>(n_bins);
  return std::min(n_bins - 1, static_cast<int>(std::floor(scaled)));
}

EceResult expected_calibration_error(const std::vector<double>& confidences, const std::vector<int>& correct,
                                     int n_bins) {
  if (n_bins < 1) throw std::invalid_argument("ECE: the number of bins must be >= 1");
  if (confidences.empty()) throw std::invalid_argument("ECE: no samples");
  if (confidences.size() != correct.size()) throw std::invalid_argument("ECE: confidences and labels differ in number");
  EceResult out;
  out.bins.resize(static_cast<size_t>(n_bins));
  std::vector<double> conf_sum(static_cast<size_t>(n_bins), 0.0);
  double total_conf = 0.0;
  int64_t total_correct = 0;
  for (size_t i = 0; i < confidences.size(); ++i) {
    const double c = confidences[i];
    if (!(c >= 0.0 && c <= 1.0)) throw std::invalid_argument("ECE: a confidence is outside [0, 1]");
    if (correct[i] != 0 && correct[i] != 1) throw std::invalid_argument("ECE: a correctness label is not 0 or 1");
    const int b = ece_bin_index(c, n_bins);
    out.bin_indices.push_back(b);
    EceBin& bin = out.bins[static_cast<size_t>(b)];
    ++bin.count;
    bin.correct += correct[i];
    conf_sum[static_cast<size_t>(b)] += c;
    total_conf += c;
    total_correct += correct[i];
  }
  const auto n = static_cast<double>(confidences.size());
  out.accuracy = static_cast<double>(total_correct) / n;
  out.mean_confidence = total_conf / n;
  for (int b = 0; b < n_bins; ++b) {
    EceBin& bin = out.bins[static_cast<size_t>(b)];
    bin.index = b;
    bin.lower = static_cast<double>(b) / n_bins;
    bin.upper = static_cast<double>(b + 1) / n_bins;
    if (bin.count == 0) continue;
    const auto nb = static_cast<double>(bin.count);
    bin.accuracy = static_cast<double>(bin.correct) / nb;
    bin.mean_confidence = conf_sum[static_cast<size_t>(b)] / nb;
    bin.abs_gap = std::fabs(*bin.accuracy - *bin.mean_confidence);
    out.ece += (nb / n) * *bin.abs_gap;
    out.mce = std::max(out.mce, *bin.abs_gap);
  }
  return out;
}

}  // namespace qeval::eval
