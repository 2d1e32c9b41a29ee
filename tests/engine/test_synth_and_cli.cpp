// qeval synth models, and the engine commands end to end (exit codes, one-line errors).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <memory>

#include "qeval/engine/engine.h"
#include "qeval/engine/synth.h"
#include "qeval/io/model.h"
#include "qeval/io/model_export.h"
#include "test_support.h"

namespace qeval {
namespace {

struct CliRun {
  int rc = -1;
  std::string out;
};

CliRun run_qeval(const std::string& args) {
  CliRun r;
  const std::string cmd = std::string(QEVAL_EXE) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(Synth, SameSeedSameBytesAndLoadsBack) {
  test::TempDir dir;
  const auto a = dir.file("a.gguf"), b = dir.file("b.gguf"), c = dir.file("c.gguf");
  ASSERT_EQ(run_qeval("synth --preset stories260k --seed 7 -o " + a).rc, 0);
  ASSERT_EQ(run_qeval("synth --preset stories260k --seed 7 -o " + b + " --threads 1").rc, 0);
  ASSERT_EQ(run_qeval("synth --preset stories260k --seed 8 -o " + c).rc, 0);
  EXPECT_EQ(test::read_text(a), test::read_text(b));
  EXPECT_NE(test::read_text(a), test::read_text(c));
  const Model m = load_model(a);
  const ModelConfig want = synth_preset("stories260k");
  EXPECT_EQ(m.config.hidden_size, want.hidden_size);
  EXPECT_EQ(m.config.n_layers, want.n_layers);
  EXPECT_EQ(m.config.n_kv_heads, want.n_kv_heads);
  EXPECT_EQ(m.config.ffn_size, want.ffn_size);
  EXPECT_EQ(m.config.vocab_size, 512);
  // Weights are N(0, 0.02).
  const auto w = m.tensor("blk.0.ffn_up.weight").to_f32();
  double s = 0, s2 = 0;
  for (float x : w) s += x, s2 += static_cast<double>(x) * x;
  EXPECT_NEAR(s / w.size(), 0.0, 2e-3);
  EXPECT_NEAR(std::sqrt(s2 / w.size()), 0.02, 1e-3);
  // The byte-level vocabulary tokenizes any text and the model runs.
  auto tok = load_tokenizer(m);
  const auto ids = tok->encode("hello, world");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(tok->decode(std::vector<TokenId>(ids.begin() + 1, ids.end())), "hello, world");
  Engine e(m, {.threads = 1});
  EXPECT_EQ(e.logits(ids).size(), ids.size() * 512);
}

TEST(Synth, F16AndVocabFrom) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  test::TempDir dir;
  const auto f = dir.file("f16.gguf");
  const auto vocab = test::shared_path("models/stories260K-gguf/stories260K-F32.gguf").string();
  ASSERT_EQ(run_qeval("synth --preset stories260k --seed 3 --type f16 --vocab-from " + vocab + " -o " + f).rc, 0);
  const Model m = load_model(f);
  EXPECT_EQ(m.tensor("blk.1.attn_q.weight").dtype, DType::F16);
  EXPECT_EQ(m.tensor("output_norm.weight").dtype, DType::F32);
  const Model ref = load_model(vocab);
  EXPECT_EQ(load_tokenizer(m)->encode("Once upon a time"), load_tokenizer(ref)->encode("Once upon a time"));
  EXPECT_NE(run_qeval("synth --preset gpt5 --seed 1 -o " + dir.file("x.gguf")).rc, 0);
  EXPECT_EQ(run_qeval("synth --preset stories260k --type q4 -o " + dir.file("x.gguf")).rc, 2);
}

TEST(EngineCli, BadInputIsOneLineErrorWithExitCode2) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  const std::string m = test::shared_path("models/stories260K-gguf/stories260K-F32.gguf").string();
  for (const std::string& args : {
           "generate " + m + " -p ''",                     // empty prompt
           "generate " + m + " -p hi --top-p 1.5",          // bad sampling option
           "generate " + m + " -p hi --top-k -1",
           "generate " + m + " -p hi --mirostat 2",         // unknown option
           "logits " + m + " --tokens 1,2,9999",            // invalid token id
           "logits " + m + " --tokens 1,x",
           "logits " + m,                                   // neither --tokens nor --text
           "perplexity " + m + " -f /nonexistent/file.txt --ctx 64",
           "perplexity " + m + " -f " + test::shared_path("reference/README.md").string() + " --ctx 64 --method wiki",
       }) {
    const CliRun r = run_qeval(args);
    EXPECT_EQ(r.rc, 2) << args << "\n" << r.out;
    EXPECT_LE(std::count(r.out.begin(), r.out.end(), '\n'), 2) << args << "\n" << r.out;
  }
  // A prompt longer than the context.
  std::string long_prompt;
  for (int i = 0; i < 600; ++i) long_prompt += "a b ";
  const CliRun r = run_qeval("generate " + m + " -p '" + long_prompt + "' -n 4");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("does not fit the context"), std::string::npos) << r.out;
}

TEST(EngineCli, CommandsPrintTheirFigures) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  const std::string m = test::shared_path("models/stories260K-gguf/stories260K-F32.gguf").string();
  CliRun g = run_qeval("generate " + m + " -p 'Once upon a time' -n 12 --threads 1");
  EXPECT_EQ(g.rc, 0);
  EXPECT_NE(g.out.find("Once upon a time, there was a little girl"), std::string::npos) << g.out;
  EXPECT_NE(g.out.find("tokens/s"), std::string::npos);
  CliRun l = run_qeval("logits " + m + " --text 'Once upon a time' --top 2 --json");
  EXPECT_EQ(l.rc, 0);
  EXPECT_NE(l.out.find("\"top\""), std::string::npos);
  const std::string text = test::shared_path("data/tinystories/tinystories_eval.txt").string();
  CliRun p = run_qeval("perplexity " + m + " -f " + text + " --ctx 128 --chunks 3 --method llamacpp");
  EXPECT_EQ(p.rc, 0) << p.out;
  EXPECT_NE(p.out.find("[3]"), std::string::npos);
  EXPECT_NE(p.out.find("Final estimate: PPL = "), std::string::npos);
  EXPECT_NE(p.out.find("method llamacpp"), std::string::npos);
  CliRun q = run_qeval("perplexity " + m + " -f " + text + " --ctx 128 --chunks 3 --method gptq --json");
  EXPECT_EQ(q.rc, 0) << q.out;
  EXPECT_NE(q.out.find("\"method\": \"gptq\""), std::string::npos);
  CliRun r = run_qeval("perplexity " + m + " -f " + text + " --ctx 128 --chunks 5 --method rolling");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("bits/byte"), std::string::npos);
}

}  // namespace
}  // namespace qeval
