// Perplexity: llama-perplexity parity (shared/reference/perplexity.json) and the gptq / rolling
// conventions against straightforward re-computations.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "qeval/engine/perplexity.h"
#include "qeval/io/model.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval {
namespace {

std::string text_path(const std::string& name) {
  return name == "wikitext2_shared" ? "data/wikitext2/wiki.test.raw" : "data/tinystories/tinystories_eval.txt";
}

struct PplCase {
  std::string model, type, text;
  int64_t ctx = 0;
};

void PrintTo(const PplCase& c, std::ostream* os) { *os << c.model << "-" << c.type << " c=" << c.ctx << " " << c.text; }

class PerplexityParity : public ::testing::TestWithParam<PplCase> {};

TEST_P(PerplexityParity, MatchesLlamaPerplexityWithin0_1Percent) {
  const PplCase& c = GetParam();
  QEVAL_REQUIRE_SHARED("reference/perplexity.json");
  std::ifstream in(test::shared_path("reference/perplexity.json"));
  const auto ref = nlohmann::json::parse(in);
  const nlohmann::json* rec = nullptr;
  for (const auto& r : ref.at("runs"))
    if (r.at("kind") == "ppl" && r.at("model") == c.model && r.at("type") == c.type && r.at("text") == c.text &&
        r.at("n_ctx") == c.ctx)
      rec = &r;
  ASSERT_NE(rec, nullptr) << "no reference record";
  const std::string file = "models/" + c.model + "-gguf/" + c.model + "-" + c.type + ".gguf";
  QEVAL_REQUIRE_SHARED(file);
  const Model model = load_model(test::shared_path(file).string());
  auto tok = load_tokenizer(model);
  // Non-F32 files: llama.cpp's activation rounding and F16 KV cache, as the reference ran.
  const bool quantized = c.type != "F32";
  Engine engine(model, {.threads = 2, .ggml_compat = quantized, .kv_f16 = quantized});
  PerplexityOptions o;
  o.method = PerplexityMethod::LlamaCpp;
  o.n_ctx = c.ctx;
  o.max_chunks = rec->at("n_chunks").get<int64_t>();
  const auto r = perplexity(engine, *tok, test::read_text(test::shared_path(text_path(c.text))), o);
  const double want = rec->at("ppl").get<double>();
  std::printf("  %s-%s c=%lld %s: PPL %.4f +/- %.5f, reference %.4f +/- %.5f (rel %.4f%%)\n", c.model.c_str(),
              c.type.c_str(), static_cast<long long>(c.ctx), c.text.c_str(), r.ppl, r.ppl_err, want,
              rec->at("ppl_err").get<double>(), 100 * std::fabs(r.ppl / want - 1));
  EXPECT_EQ(r.scored_tokens, rec->at("scored_tokens").get<int64_t>());
  EXPECT_NEAR(r.ppl / want, 1.0, 1e-3);
  EXPECT_NEAR(r.ppl_err / rec->at("ppl_err").get<double>(), 1.0, 2e-2);
}

std::vector<PplCase> ppl_cases() {
  std::vector<PplCase> v;
  for (const char* t : {"F32", "F16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0"}) v.push_back({"stories260K", t, "tinystories_shared", 128});
  v.push_back({"stories260K", "F32", "tinystories_shared", 256});
  v.push_back({"stories260K", "Q4_0", "tinystories_shared", 256});
  v.push_back({"stories260K", "F32", "wikitext2_shared", 128});
  v.push_back({"aidreams260K", "F32", "tinystories_shared", 128});
  v.push_back({"aidreams260K", "Q4_1", "tinystories_shared", 128});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Reference, PerplexityParity, ::testing::ValuesIn(ppl_cases()), [](const auto& info) {
  return info.param.model + "_" + info.param.type + "_c" + std::to_string(info.param.ctx) + "_" +
         info.param.text.substr(0, info.param.text.find('_'));
});

struct Stories {
  Model model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Engine> engine;
};

Stories load_stories() {
  Stories s;
  s.model = load_model(test::shared_path("models/stories260K-gguf/stories260K-F32.gguf").string());
  s.tok = load_tokenizer(s.model);
  s.engine = std::make_unique<Engine>(s.model, EngineOptions{.threads = 2});
  return s;
}

double last_logprob(Engine& e, const std::vector<TokenId>& ctx, TokenId target) {
  const auto l = e.logits(ctx);
  const float* row = l.data() + (ctx.size() - 1) * static_cast<size_t>(e.vocab_size());
  double z = 0;
  for (int64_t v = 0; v < e.vocab_size(); ++v) z += std::exp(static_cast<double>(row[v]));
  return row[target] - std::log(z);
}

const char* kText =
    "Once upon a time, there was a little dog named Max. Max liked to run in the park.\n"
    "One day he found a big red ball under a tree.\n"
    "\n"
    "\n"
    "Sue had a cat. The cat was soft and white. Sue and the cat played all day and then they slept.\n"
    "   \n"
    "The end.\n";

TEST(Perplexity, GptqScoresEveryTokenOfEachWindow) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  auto s = load_stories();
  const auto tokens = s.tok->encode(kText);
  const int64_t ctx = 16, windows = static_cast<int64_t>(tokens.size()) / ctx;
  double nll = 0;
  int64_t n = 0;
  for (int64_t w = 0; w < windows; ++w)
    for (int64_t i = 1; i < ctx; ++i) {
      std::vector<TokenId> c(tokens.begin() + w * ctx, tokens.begin() + w * ctx + i);
      nll -= last_logprob(*s.engine, c, tokens[static_cast<size_t>(w * ctx + i)]);
      ++n;
    }
  PerplexityOptions o;
  o.method = PerplexityMethod::GPTQ;
  o.n_ctx = ctx;
  o.batch = 3;
  const auto r = perplexity(*s.engine, *s.tok, kText, o);
  EXPECT_EQ(r.chunks, windows);
  EXPECT_EQ(r.scored_tokens, n);
  EXPECT_NEAR(r.ppl, std::exp(nll / n), 1e-4 * r.ppl);
}

TEST(Perplexity, RollingCoversEachDocumentTokenOnce) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  auto s = load_stories();
  const std::vector<std::string> docs = {
      "Once upon a time, there was a little dog named Max. Max liked to run in the park.\n"
      "One day he found a big red ball under a tree.",
      "Sue had a cat. The cat was soft and white. Sue and the cat played all day and then they slept.",
      "The end."};
  const int64_t L = 8;
  EncodeOptions eo;
  eo.add_special = false;
  eo.parse_special = false;
  double ll = 0;
  int64_t ntok = 0, words = 0, bytes = 0;
  for (const auto& d : docs) {
    const auto t = s.tok->encode(d, eo);
    const int64_t n = static_cast<int64_t>(t.size());
    for (int64_t i = 0; i < n; ++i) {
      std::vector<TokenId> c;
      if (i < L) {
        c.push_back(s.tok->bos_id());
        c.insert(c.end(), t.begin(), t.begin() + i);
      } else {
        const int64_t end = std::min(n, (i / L + 1) * L);
        c.assign(t.begin() + (end - L - 1), t.begin() + i);
      }
      ll += last_logprob(*s.engine, c, t[static_cast<size_t>(i)]);
    }
    ntok += n;
    bytes += static_cast<int64_t>(d.size());
  }
  words = 29 + 21 + 2;  // Python: [len(re.split(r"\s+", d)) for d in docs] == [29, 21, 2]
  PerplexityOptions o;
  o.method = PerplexityMethod::Rolling;
  o.n_ctx = L;
  o.batch = 4;
  const auto r = perplexity(*s.engine, *s.tok, kText, o);
  EXPECT_EQ(r.chunks, 3);
  EXPECT_EQ(r.scored_tokens, ntok);
  EXPECT_EQ(r.bytes, bytes);
  EXPECT_EQ(r.words, words);
  EXPECT_NEAR(r.ppl, std::exp(-ll / ntok), 1e-4 * r.ppl);
  EXPECT_NEAR(r.word_ppl, std::exp(-ll / words), 1e-4 * r.word_ppl);
  EXPECT_NEAR(r.bits_per_byte, -ll / bytes / std::log(2.0), 1e-5);
}

TEST(Perplexity, RejectsBadOptions) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  auto s = load_stories();
  PerplexityOptions o;
  o.n_ctx = 128;
  EXPECT_THROW(perplexity(*s.engine, *s.tok, kText, o), Error);  // fewer than 2*ctx tokens
  o.n_ctx = 4096;
  EXPECT_THROW(perplexity(*s.engine, *s.tok, kText, o), Error);  // beyond the model's context
  o.n_ctx = 16;
  o.batch = 0;
  EXPECT_THROW(perplexity(*s.engine, *s.tok, kText, o), Error);
  EXPECT_THROW(parse_perplexity_method("wiki"), Error);
  o.batch = 1;
  o.method = PerplexityMethod::Rolling;
  EXPECT_THROW(perplexity(*s.engine, *s.tok, "\n\n  \n", o), Error);
}

}  // namespace
}  // namespace qeval
