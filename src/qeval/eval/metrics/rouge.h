#pragma once
// ROUGE-1/2/L/Lsum with the exact behaviour of Google's rouge-score package (RougeScorer with
// the default tokenizer, split_summaries=False):
//   tokens: Python lower(), every run of characters outside [a-z0-9] is a separator, and with
//   the stemmer every token longer than 3 characters is replaced by its NLTK Porter stem;
//   rougeN: clipped n-gram overlap, P = overlap / max(#pred n-grams, 1), R likewise;
//   rougeL: LCS of the token sequences (0 if either side is empty);
//   rougeLsum: lines split on '\n' only, union-LCS per reference line with rouge-score's
//   backtracking tie rule, hits limited by whole-text token counts.
// F = 2PR / (P + R), or 0 when P + R = 0. Several references: per ROUGE type, the reference
// with the highest F-measure (the first on ties), as RougeScorer.score_multi does.
#include <string>
#include <string_view>
#include <vector>

namespace qeval::eval {

struct RougeScore {
  double precision = 0;
  double recall = 0;
  double fmeasure = 0;
};

struct RougeScores {
  RougeScore rouge1, rouge2, rougeL, rougeLsum;
};

// rouge-score's default tokenizer.
std::vector<std::string> rouge_tokenize(std::string_view text, bool stem);

// ROUGE-n between two token lists (n >= 1).
RougeScore rouge_n(const std::vector<std::string>& prediction, const std::vector<std::string>& reference, int n);
RougeScore rouge_l(const std::vector<std::string>& prediction, const std::vector<std::string>& reference);
// Summary-level LCS over lists of tokenized lines.
RougeScore rouge_lsum(const std::vector<std::vector<std::string>>& prediction_lines,
                      const std::vector<std::vector<std::string>>& reference_lines);

RougeScores rouge(std::string_view prediction, std::string_view reference, bool stem);
// references must not be empty.
RougeScores rouge_multi(std::string_view prediction, const std::vector<std::string>& references, bool stem);

}  // namespace qeval::eval
