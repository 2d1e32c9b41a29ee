// Id-for-id parity of the tokenizer.json BPE tokenizers with HF tokenizers on the reference
// vectors in shared/reference/tokenizers/<folder>/cases.jsonl (1516 texts per folder).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qeval/tokenizer/bpe_tokenizer.h"
#include "test_support.h"

namespace qeval {
namespace {

struct RefCase {
  int index = 0;
  std::string category;
  std::string text;
  std::vector<TokenId> ids;
  std::vector<TokenId> ids_with_special;
  std::string decoded;
};

std::vector<RefCase> load_cases(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<RefCase> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    RefCase c;
    c.index = j.at("index").get<int>();
    c.category = j.at("category").get<std::string>();
    c.text = j.at("text").get<std::string>();
    c.ids = j.at("ids").get<std::vector<TokenId>>();
    c.ids_with_special = j.at("ids_with_special").get<std::vector<TokenId>>();
    c.decoded = j.at("decoded").get<std::string>();
    out.push_back(std::move(c));
  }
  return out;
}

std::string show(const std::vector<TokenId>& v) {
  std::ostringstream s;
  for (size_t i = 0; i < v.size(); ++i) s << (i ? " " : "") << v[i];
  return s.str();
}

struct Expect {
  const char* folder;
  size_t lossless;  // texts with decode(encode(text)) == text, from the folder's README
};

class BpeParity : public ::testing::TestWithParam<Expect> {};

TEST_P(BpeParity, EveryReferenceCase) {
  const std::string folder = GetParam().folder;
  const std::string rel = "reference/tokenizers/" + folder;
  QEVAL_REQUIRE_SHARED(rel + "/cases.jsonl");
  const auto t0 = std::chrono::steady_clock::now();
  auto tok = load_tokenizer_json(test::shared_path(rel + "/tokenizer.json").string());
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto cases = load_cases(test::shared_path(rel + "/cases.jsonl"));
  ASSERT_EQ(cases.size(), 1516u);

  size_t ok_ids = 0, ok_special = 0, ok_decoded = 0, lossless = 0, reported = 0;
  for (const auto& c : cases) {
    const auto ids = tok->encode(c.text, {.add_special = false});
    const auto ids_s = tok->encode(c.text, {.add_special = true});
    const std::string dec = tok->decode(c.ids);
    ok_ids += ids == c.ids;
    ok_special += ids_s == c.ids_with_special;
    ok_decoded += dec == c.decoded;
    // Round trip through our own ids, on every case.
    lossless += tok->decode(ids) == c.text;
    if ((ids != c.ids || ids_s != c.ids_with_special || dec != c.decoded) && reported++ < 10) {
      ADD_FAILURE() << folder << " case " << c.index << " (" << c.category << ") text=" << nlohmann::json(c.text).dump()
                    << "\n  ids      got [" << show(ids) << "]\n           want [" << show(c.ids) << "]"
                    << "\n  special  got [" << show(ids_s) << "]\n           want [" << show(c.ids_with_special) << "]"
                    << "\n  decoded  got " << nlohmann::json(dec).dump() << "\n           want "
                    << nlohmann::json(c.decoded).dump();
    }
  }
  std::printf("[ parity   ] %-10s ids %zu/%zu, ids_with_special %zu/%zu, decoded %zu/%zu, lossless %zu, load %.3f s\n",
              folder.c_str(), ok_ids, cases.size(), ok_special, cases.size(), ok_decoded, cases.size(), lossless, load_s);
  EXPECT_EQ(ok_ids, cases.size());
  EXPECT_EQ(ok_special, cases.size());
  EXPECT_EQ(ok_decoded, cases.size());
  EXPECT_EQ(lossless, GetParam().lossless);
}

INSTANTIATE_TEST_SUITE_P(Reference, BpeParity,
                         ::testing::Values(Expect{"gpt2", 1516}, Expect{"llama3", 1516}, Expect{"qwen3", 1476},
                                           Expect{"mistral-7b", 1508}, Expect{"llama2", 1508}),
                         [](const auto& info) {
                           std::string n = info.param.folder;
                           for (auto& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

// The 40 texts Qwen3 does not round-trip are exactly the NFD/compatibility spellings, and for
// them decode(encode(x)) is the NFC form that the reference decoded field holds.
TEST(BpeParity, Qwen3NotLosslessOnlyThroughNfc) {
  const std::string rel = "reference/tokenizers/qwen3";
  QEVAL_REQUIRE_SHARED(rel + "/cases.jsonl");
  auto tok = load_tokenizer_json(test::shared_path(rel + "/tokenizer.json").string());
  size_t lossy = 0;
  for (const auto& c : load_cases(test::shared_path(rel + "/cases.jsonl"))) {
    const std::string rt = tok->decode(tok->encode(c.text, {.add_special = false}));
    if (rt == c.text) continue;
    ++lossy;
    EXPECT_EQ(c.category, "unicode_normalization") << c.index;
    EXPECT_EQ(rt, c.decoded) << c.index;
  }
  EXPECT_EQ(lossy, 40u);
}

TEST(BpeParity, LoadTimeOfLargestTokenizerJson) {
  const std::string rel = "reference/tokenizers/qwen3/tokenizer.json";
  QEVAL_REQUIRE_SHARED(rel);
  for (const char* f : {"reference/tokenizers/llama3/tokenizer.json", "reference/tokenizers/qwen3/tokenizer.json"}) {
    const auto t0 = std::chrono::steady_clock::now();
    auto tok = load_tokenizer_json(test::shared_path(f).string());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[ load     ] %s: %.3f s, vocab %d, merges %zu\n", f, s,
                tok->vocab_size(), dynamic_cast<BpeTokenizer&>(*tok).model().merge_count());
#ifdef NDEBUG
    EXPECT_LT(s, 2.0) << f;  // well under a second on an idle machine; generous for shared CI cores
#endif
  }
}

TEST(BpeParity, SpecialTokenConfiguration) {
  const std::string base = "reference/tokenizers/";
  QEVAL_REQUIRE_SHARED(base + "llama2/tokenizer.json");
  auto llama2 = load_tokenizer_json(test::shared_path(base + "llama2/tokenizer.json").string());
  EXPECT_EQ(llama2->bos_id(), 1);
  EXPECT_EQ(llama2->eos_id(), 2);
  EXPECT_TRUE(llama2->adds_bos());
  EXPECT_FALSE(llama2->adds_eos());
  EXPECT_EQ(llama2->vocab_size(), 32000);
  EXPECT_EQ(llama2->token_string(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(llama2->token_text(15043), " Hello");  // streaming text keeps the space
  EXPECT_EQ(llama2->token_text(13), "\n");          // <0x0A>

  auto qwen3 = load_tokenizer_json(test::shared_path(base + "qwen3/tokenizer.json").string());
  EXPECT_EQ(qwen3->bos_id(), -1);  // tokenizer_config.json: bos_token null
  EXPECT_EQ(qwen3->eos_id(), 151645);
  EXPECT_FALSE(qwen3->adds_bos());
  EXPECT_EQ(qwen3->vocab_size(), 151669);
  EXPECT_EQ(qwen3->token_string(21927), "\xC4\xA0Hello");
  EXPECT_EQ(qwen3->token_text(21927), " Hello");

  auto llama3 = load_tokenizer_json(test::shared_path(base + "llama3/tokenizer.json").string());
  EXPECT_EQ(llama3->bos_id(), 128000);
  EXPECT_EQ(llama3->eos_id(), 128001);
  EXPECT_FALSE(llama3->adds_bos());  // this tokenizer.json's post-processor adds nothing
  EXPECT_EQ(llama3->vocab_size(), 128256);

  auto gpt2 = load_tokenizer_json(test::shared_path(base + "gpt2/tokenizer.json").string());
  EXPECT_EQ(gpt2->bos_id(), 50256);
  EXPECT_EQ(gpt2->eos_id(), 50256);
  EXPECT_FALSE(gpt2->adds_bos());
  EXPECT_EQ(gpt2->kind(), "bpe");
  // parse_special=false: special tokens are text.
  EXPECT_EQ(gpt2->encode("<|endoftext|>", {.add_special = false, .parse_special = false}),
            (std::vector<TokenId>{27, 91, 437, 1659, 5239, 91, 29}));
  EXPECT_EQ(gpt2->encode("<|endoftext|>", {.add_special = false}), (std::vector<TokenId>{50256}));
}

}  // namespace
}  // namespace qeval
