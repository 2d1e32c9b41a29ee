#pragma once
// `qeval score METRIC --pred FILE --ref FILE [--ref FILE...] [--json] [--stem]`: scores a file
// of predictions against references. The CLI wrapper (src/cli/cmd_score.cpp) only parses
// options; everything else is here so that it can be tested without the executable.
//
// Files: plain text with one item per line (a final '\n' does not start an item, a trailing
// '\r' is dropped, a leading UTF-8 BOM is skipped), or, when the name ends in ".jsonl", one
// JSON value per line: a string, or (reference files only) a non-empty list of strings, the
// references of one item. Several --ref files add their references item by item. Every file
// must be valid UTF-8 and have as many items as the prediction file; a violation is an
// Error "<file>: line N: <problem>" (or "<file>: <problem>" for whole-file problems).
//
// Metrics and what is reported (text: corpus level; --json: corpus level and per item):
//   rouge        rouge1/rouge2/rougeL/rougeLsum precision, recall, F (rouge-score, --stem for
//                the Porter stemmer; several references: best F per type). Corpus: the mean of
//                the per-item values with standard error and normal 95% interval.
//   bleu         corpus BLEU (sacreBLEU defaults) with bootstrap SE and percentile 95% interval
//                over items; per item: sentence BLEU (effective order) with all sacreBLEU fields.
//   chrf         corpus chrF with bootstrap SE / interval; per item: sentence chrF.
//   exact_match  SQuAD EM, f1 SQuAD token F1: 100 x the mean, with SE and normal interval.
//   ece          --pred holds one confidence in [0, 1] per line, --ref one correctness label
//                (0/1, or in .jsonl also true/false); ECE with --bins equal-width bins (default
//                10), bootstrap SE / interval, MCE, accuracy, mean confidence, per-bin table.
#include <cstdint>
#include <string>
#include <vector>

namespace qeval::eval {

struct ScoreOptions {
  std::string metric;
  std::string pred_path;
  std::vector<std::string> ref_paths;
  bool json = false;
  bool stem = false;
  int bootstrap_samples = 1000;
  uint64_t seed = 0;
  int bins = 10;
};

// The metric names `qeval score` accepts.
const std::vector<std::string>& score_metrics();

// Items of one file: each item is one string (prediction file, allow_lists = false) or one or
// more strings (reference file). Throws qeval::Error naming the file and line.
std::vector<std::vector<std::string>> read_score_file(const std::string& path, bool allow_lists);

// Runs the command and returns what it prints. Throws qeval::Error on bad input.
std::string run_score(const ScoreOptions& options);

}  // namespace qeval::eval
