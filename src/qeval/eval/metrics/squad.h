#pragma once
// SQuAD v1.1 exact match and token F1 (the official evaluate-v1.1.py): answers are normalised
// by Python lower(), deleting the 32 ASCII punctuation characters, replacing the whole words
// a / an / the (Unicode word boundaries) with a space and collapsing whitespace. F1 is over the
// clipped multiset intersection of whitespace tokens and is 0 when nothing is shared (so two
// answers that normalise to "" have EM 1 and F1 0). With several gold answers each score is
// the maximum over them.
#include <string>
#include <string_view>
#include <vector>

namespace qeval::eval {

std::string squad_normalize(std::string_view answer);
bool squad_exact_match(std::string_view prediction, std::string_view ground_truth);
double squad_f1(std::string_view prediction, std::string_view ground_truth);

struct SquadScore {
  int exact_match = 0;  // 0 or 1
  double f1 = 0;        // 0..1
};
// ground_truths must not be empty.
SquadScore squad_score(std::string_view prediction, const std::vector<std::string>& ground_truths);

}  // namespace qeval::eval
