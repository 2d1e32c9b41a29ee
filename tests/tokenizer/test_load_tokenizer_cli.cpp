// `qeval tokenize`: output formats and exit codes, run through the built executable.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>

#include "test_support.h"

namespace qeval {
namespace {

using Ids = std::vector<int32_t>;

struct Result {
  int rc = -1;
  std::string out;  // stdout and stderr together
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

Result run_qeval(const std::vector<std::string>& args) {
  std::string cmd = quote(QEVAL_EXE);
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " 2>&1";
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), p)) > 0;) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

const char* kGguf = "models/stories260K-gguf/stories260K-F32.gguf";
const char* kLogits = "reference/logits/stories260K-F32.logits.json";

std::pair<std::string, Ids> reference_sequence(const std::string& name) {
  const auto j = nlohmann::json::parse(test::read_text(test::shared_path(kLogits)));
  for (const auto& s : j["sequences"])
    if (s["name"] == name) return {s["text"].get<std::string>(), s["tokens"].get<Ids>()};
  ADD_FAILURE() << "no sequence " << name;
  return {};
}

std::string id_list(const Ids& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

TEST(TokenizeCommand, IdsMatchLlamaTokenize) {
  QEVAL_REQUIRE_SHARED(kGguf);
  QEVAL_REQUIRE_SHARED(kLogits);
  for (const char* name : {"lily", "tom_dog", "sun_birds"}) {
    const auto [text, ids] = reference_sequence(name);
    const Result r = run_qeval({"tokenize", test::shared_path(kGguf).string(), text, "--ids"});
    EXPECT_EQ(r.rc, 0) << r.out;
    EXPECT_EQ(r.out, id_list(ids) + "\n") << name;
    // --no-bos drops the BOS.
    const Result nb = run_qeval({"tokenize", "--no-bos", test::shared_path(kGguf).string(), text, "--ids"});
    EXPECT_EQ(nb.out, id_list(Ids(ids.begin() + 1, ids.end())) + "\n") << name;
  }
}

TEST(TokenizeCommand, DefaultOutputListsIdAndPiece) {
  QEVAL_REQUIRE_SHARED("models/stories260K-hf/tokenizer.model");
  const Result r = run_qeval({"tokenize", test::shared_path("models/stories260K-hf").string(), "Hello\nworld"});
  ASSERT_EQ(r.rc, 0) << r.out;
  // First line BOS, then one line per token; the pieces concatenate to the text.
  ASSERT_EQ(r.out.rfind("     1 -> '<s>'\n", 0), 0u) << r.out;
  std::string joined;
  size_t lines = 0;
  for (size_t pos = 0; pos < r.out.size();) {
    const size_t open = r.out.find(" -> '", pos);
    ASSERT_NE(open, std::string::npos) << r.out;
    const size_t close = r.out.find("'\n", open + 5);
    ASSERT_NE(close, std::string::npos);
    if (lines++ > 0) joined += r.out.substr(open + 5, close - open - 5);
    pos = close + 2;
  }
  EXPECT_EQ(joined, " Hello\nworld");
  EXPECT_GT(lines, 3u);
}

TEST(TokenizeCommand, JsonAndSpecialParsing) {
  QEVAL_REQUIRE_SHARED(kGguf);
  const Result r = run_qeval({"tokenize", "--json", test::shared_path(kGguf).string(), "<s>hi"});
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  const Ids ids = j["ids"].get<Ids>();
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 1);  // "<s>" in the text is parsed as BOS
  EXPECT_EQ(j["count"].get<size_t>(), ids.size());
  EXPECT_EQ(j["pieces"].size(), ids.size());
  EXPECT_EQ(j["tokens"][0], "<s>");
  EXPECT_EQ(j["tokenizer"], "spm-gguf");

  const Result plain = run_qeval({"tokenize", "--json", "--no-parse-special", test::shared_path(kGguf).string(), "<s>hi"});
  ASSERT_EQ(plain.rc, 0) << plain.out;
  const Ids ids2 = nlohmann::json::parse(plain.out)["ids"].get<Ids>();
  EXPECT_EQ(std::count(ids2.begin(), ids2.end(), 1), 1);  // only the added BOS
}

TEST(TokenizeCommand, ErrorsExitWithCode2) {
  QEVAL_REQUIRE_SHARED("models/aidreams260K-hf/config.json");
  const std::string dir = test::shared_path("models/aidreams260K-hf").string();
  const Result r = run_qeval({"tokenize", dir, "hello"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find(dir + ": no tokenizer (tokenizer.json or tokenizer.model)"), std::string::npos) << r.out;
  const Result usage = run_qeval({"tokenize"});
  EXPECT_EQ(usage.rc, 2) << usage.out;
}

}  // namespace
}  // namespace qeval
