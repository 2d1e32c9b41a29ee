// Porter stemmer: the worked examples of Porter (1980) and NLTK's extensions.
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "qeval/eval/metrics/porter_stemmer.h"

namespace qeval::eval {
namespace {

using Pairs = std::vector<std::pair<const char*, const char*>>;

void expect_stems(const Pairs& pairs) {
  for (const auto& [word, stem] : pairs) EXPECT_EQ(porter_stem(word), stem) << word;
}

TEST(PorterStemmer, PaperExamples) {
  expect_stems({{"caresses", "caress"},     {"ponies", "poni"},         {"caress", "caress"},
                {"cats", "cat"},            {"feed", "feed"},           {"agreed", "agre"},
                {"plastered", "plaster"},   {"bled", "bled"},           {"motoring", "motor"},
                {"sing", "sing"},           {"conflated", "conflat"},   {"troubled", "troubl"},
                {"sized", "size"},          {"hopping", "hop"},         {"tanned", "tan"},
                {"falling", "fall"},        {"hissing", "hiss"},        {"fizzed", "fizz"},
                {"failing", "fail"},        {"filing", "file"},         {"happy", "happi"},
                {"relational", "relat"},    {"conditional", "condit"},  {"rational", "ration"},
                {"valenci", "valenc"},      {"hesitanci", "hesit"},     {"digitizer", "digit"},
                {"conformabli", "conform"}, {"radicalli", "radic"},     {"differentli", "differ"},
                {"vileli", "vile"},         {"analogousli", "analog"},  {"vietnamization", "vietnam"},
                {"predication", "predic"},  {"operator", "oper"},       {"feudalism", "feudal"},
                {"decisiveness", "decis"},  {"hopefulness", "hope"},    {"callousness", "callous"},
                {"formaliti", "formal"},    {"sensitiviti", "sensit"},  {"sensibiliti", "sensibl"},
                {"triplicate", "triplic"},  {"formative", "form"},      {"formalize", "formal"},
                {"electriciti", "electr"},  {"electrical", "electr"},   {"hopeful", "hope"},
                {"goodness", "good"},       {"revival", "reviv"},       {"allowance", "allow"},
                {"inference", "infer"},     {"airliner", "airlin"},     {"gyroscopic", "gyroscop"},
                {"adjustable", "adjust"},   {"defensible", "defens"},   {"irritant", "irrit"},
                {"replacement", "replac"},  {"adjustment", "adjust"},   {"dependent", "depend"},
                {"adoption", "adopt"},      {"homologou", "homolog"},   {"communism", "commun"},
                {"activate", "activ"},      {"angulariti", "angular"},  {"effective", "effect"},
                {"bowdlerize", "bowdler"},  {"probate", "probat"},      {"rate", "rate"},
                {"cease", "ceas"},          {"controll", "control"},    {"roll", "roll"}});
}

TEST(PorterStemmer, NltkExtensions) {
  expect_stems({{"skies", "sky"},      {"dying", "die"},       {"lying", "lie"},       {"tying", "tie"},
                {"news", "news"},      {"innings", "inning"},  {"howe", "howe"},       {"proceed", "proceed"},
                {"ties", "tie"},       {"dies", "die"},        {"cried", "cri"},       {"died", "die"},
                {"generously", "gener"}, {"generalli", "gener"}, {"geology", "geolog"}, {"archaeology", "archaeolog"},
                {"capably", "capabl"}, {"fully", "fulli"},     {"sly", "sli"},         {"by", "by"},
                {"is", "is"},          {"succeeded", "succeed"}});
}

}  // namespace
}  // namespace qeval::eval
