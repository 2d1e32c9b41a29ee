#pragma once
// The Porter stemmer as NLTK's PorterStemmer() runs it by default (mode NLTK_EXTENSIONS, NLTK
// 3.8): Porter's 1980 algorithm plus NLTK's irregular-forms table and its rule changes
// (step 1a "ies" on 4-letter words, step 1b "ied", step 1c consonant-before-y, the "alli",
// "bli", "fulli" and "logi" rules of step 2, words of <= 2 letters left alone).
// Input is a lower-case word (rouge-score only passes [a-z0-9]+ tokens); other bytes are
// treated as consonants.
#include <string>
#include <string_view>

namespace qeval::eval {

std::string porter_stem(std::string_view word);

}  // namespace qeval::eval
