#pragma once
// Helpers shared by the tokenizer parity tests.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "qeval/tokenizer/tokenizer.h"

namespace qeval::test {

using Ids = std::vector<TokenId>;

// "[1, 2, 3]" for assertion messages.
inline std::string show(const Ids& ids) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < ids.size(); ++i) s << (i ? ", " : "") << ids[i];
  s << ']';
  return s.str();
}

// One JSON value per non-empty line.
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace qeval::test
