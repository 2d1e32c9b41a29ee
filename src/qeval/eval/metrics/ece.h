#pragma once
// Expected and maximum calibration error over M equal-width confidence bins. Sample i goes to
// bin b = min(M - 1, floor(c_i * M)) with c_i * M evaluated in double, so bins are
// [b/M, (b+1)/M) and the last is closed at 1 (the double 0.3 lands in bin 3). For a non-empty
// bin: acc_b = correct / n_b, conf_b = (sum of its confidences in input order) / n_b.
// ECE = sum over non-empty bins in bin order of (n_b / N) * |acc_b - conf_b|; MCE = the largest
// |acc_b - conf_b| over non-empty bins.
#include <cstdint>
#include <optional>
#include <vector>

namespace qeval::eval {

struct EceBin {
  int index = 0;
  double lower = 0, upper = 0;
  int64_t count = 0, correct = 0;
  std::optional<double> accuracy, mean_confidence, abs_gap;  // empty for an empty bin
};

struct EceResult {
  double ece = 0, mce = 0;
  double accuracy = 0, mean_confidence = 0;
  std::vector<int> bin_indices;
  std::vector<EceBin> bins;
};

int ece_bin_index(double confidence, int n_bins);
// Throws std::invalid_argument for no samples, mismatched sizes, a confidence outside [0, 1]
// (or NaN), a label other than 0/1, or n_bins < 1.
EceResult expected_calibration_error(const std::vector<double>& confidences, const std::vector<int>& correct,
                                     int n_bins = 10);

}  // namespace qeval::eval
