// EngineLanguageModel against direct log-softmax sums, and `qeval eval` end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/eval/engine_model.h"
#include "qeval/eval/task/evaluate.h"
#include "qeval/eval/task/task.h"
#include "qeval/io/model.h"
#include "qeval/tokenizer/tokenizer.h"
#include "test_support.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;
using eval::EngineLanguageModel;
using eval::task::Request;
using eval::task::RequestType;

constexpr const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";

Request ll(const std::string& context, const std::string& continuation) {
  Request r;
  r.context = context;
  r.continuation = continuation;
  return r;
}
Request rolling(const std::string& text) {
  Request r;
  r.type = RequestType::loglikelihood_rolling;
  r.continuation = text;
  return r;
}
Request gen(const std::string& context, std::vector<std::string> until, int max_gen_toks) {
  Request r;
  r.type = RequestType::generate_until;
  r.context = context;
  r.until = std::move(until);
  r.max_gen_toks = max_gen_toks;
  return r;
}

// Sum of log p(tokens[i] | tokens[<i]) for i >= from, from the engine's full logits.
double direct_sum(Engine& e, const std::vector<TokenId>& tokens, size_t from) {
  const std::vector<float> lg = e.logits(tokens);
  const size_t V = static_cast<size_t>(e.vocab_size());
  double s = 0;
  for (size_t i = from; i < tokens.size(); ++i) {
    const float* row = lg.data() + (i - 1) * V;
    double mx = row[0];
    for (size_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
    double z = 0;
    for (size_t v = 0; v < V; ++v) z += std::exp(static_cast<double>(row[v]) - mx);
    s += static_cast<double>(row[tokens[i]]) - mx - std::log(z);
  }
  return s;
}

struct Fixture {
  Model model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Engine> engine;
  explicit Fixture(int64_t ctx = 0) {
    model = load_model(test::shared_path(kModel).string());
    tok = load_tokenizer(model);
    engine = std::make_unique<Engine>(model, EngineOptions{.threads = 2, .context_length = ctx});
  }
};

TEST(EngineModel, LoglikelihoodMatchesDirectLogSoftmax) {
  QEVAL_REQUIRE_SHARED(kModel);
  Fixture f;
  EngineLanguageModel lm(*f.engine, *f.tok);
  const std::string ctx = "Once upon a time, there was a little girl named Lily.";
  const std::string cont = " She liked to play outside.";
  const auto res = lm.loglikelihood({ll(ctx, cont),
                                     ll(ctx + " ", "She was happy.")});
  ASSERT_EQ(res.size(), 2u);

  // Expected tokens built independently: [BOS] + encode(ctx) + rest of encode(ctx + cont).
  const auto c = f.tok->encode(ctx, {.add_special = false});
  const auto whole = f.tok->encode(ctx + cont, {.add_special = false});
  ASSERT_GT(whole.size(), c.size());
  ASSERT_TRUE(std::equal(c.begin(), c.end(), whole.begin()));
  std::vector<TokenId> seq;
  if (f.tok->adds_bos()) seq.push_back(f.tok->bos_id());
  seq.insert(seq.end(), whole.begin(), whole.end());
  const size_t from = seq.size() - (whole.size() - c.size());
  EXPECT_NEAR(res[0].logprob, direct_sum(*f.engine, seq, from), 1e-4);
  EXPECT_EQ(res[0].n_tokens, static_cast<int64_t>(whole.size() - c.size()));
  EXPECT_LT(res[0].logprob, 0);

  // Trailing space of the context moves to the continuation (lm-eval's _encode_pair).
  const auto whole2 = f.tok->encode(ctx + " She was happy.", {.add_special = false});
  std::vector<TokenId> seq2;
  if (f.tok->adds_bos()) seq2.push_back(f.tok->bos_id());
  seq2.insert(seq2.end(), whole2.begin(), whole2.end());
  EXPECT_NEAR(res[1].logprob, direct_sum(*f.engine, seq2, seq2.size() - (whole2.size() - c.size())), 1e-4);
}

TEST(EngineModel, LoglikelihoodLeftTruncatesLongContext) {
  QEVAL_REQUIRE_SHARED(kModel);
  Fixture f(32);
  EngineLanguageModel lm(*f.engine, *f.tok);
  std::string ctx;
  for (int i = 0; i < 10; ++i) ctx += "The cat sat on the mat and the dog ran. ";
  ctx += "Then";
  const auto r = lm.loglikelihood_tokens(ctx, " they slept.");
  EXPECT_EQ(r.tokens.size(), 33u);  // context_length + 1
  const auto res = lm.loglikelihood({ll(ctx, " they slept.")});
  EXPECT_NEAR(res[0].logprob, direct_sum(*f.engine, r.tokens, static_cast<size_t>(r.score_from)), 1e-4);
}

// Choices of one doc share their context: scored once through a KV cache, the results equal
// scoring every request from scratch (also when the context is left-truncated).
TEST(EngineModel, SharedContextMatchesSeparateScoring) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED("data/arc_easy");
  const eval::task::TaskRegistry reg(fs::path(QEVAL_SOURCE_DIR) / "tasks");
  const auto cfg = reg.load("arc_easy");
  const auto data = eval::task::load_task_data(cfg, test::shared_path("data"), {.limit = 8, .skip_bad = std::nullopt});
  auto requests = eval::task::build_requests(cfg, eval::task::prepare(cfg, data));
  ASSERT_GE(requests.size(), 30u);
  std::string long_ctx;
  for (int i = 0; i < 12; ++i) long_ctx += "The cat sat on the mat and the dog ran. ";
  for (const char* c : {" Yes.", " No, it did not.", " Maybe"}) requests.push_back(ll(long_ctx, c));
  requests.push_back(ll("A lonely request", " with no sibling."));
  for (int64_t ctx : {int64_t{0}, int64_t{48}}) {
    Fixture f(ctx);
    eval::EngineModelOptions on, off;
    on.batch = off.batch = 5;
    off.share_context = false;
    EngineLanguageModel shared(*f.engine, *f.tok, on);
    EngineLanguageModel separate(*f.engine, *f.tok, off);
    size_t last_done = 0, calls = 0;
    eval::EngineModelOptions counting = on;
    counting.progress = [&](size_t d, size_t t) {
      EXPECT_EQ(t, requests.size());
      EXPECT_GT(d, last_done);
      last_done = d;
      ++calls;
    };
    EngineLanguageModel counted(*f.engine, *f.tok, counting);
    const auto a = shared.loglikelihood(requests);
    const auto b = separate.loglikelihood(requests);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_NEAR(a[i].logprob, b[i].logprob, 1e-4) << "request " << i << " ctx " << ctx;
      EXPECT_EQ(a[i].is_greedy, b[i].is_greedy) << i;
      EXPECT_EQ(a[i].n_tokens, b[i].n_tokens) << i;
    }
    counted.loglikelihood(requests);
    EXPECT_EQ(last_done, requests.size());
    EXPECT_GE(calls, 9u);  // 8 docs + the long context group, then the lonely request
  }
}

TEST(EngineModel, RollingMatchesDirectSum) {
  QEVAL_REQUIRE_SHARED(kModel);
  const std::string text =
      "Once upon a time, there was a little boy named Tim. He had a big red ball. He liked to play with it every day. "
      "One day, the ball rolled into the park and Tim ran after it.";
  for (int64_t ctx : {int64_t{0}, int64_t{16}}) {
    Fixture f(ctx);
    eval::EngineModelOptions o;
    o.batch = 3;
    EngineLanguageModel lm(*f.engine, *f.tok, o);
    const auto t = f.tok->encode(text, {.add_special = false});
    const auto res = lm.loglikelihood_rolling({rolling(text)});
    ASSERT_EQ(res.size(), 1u);
    EXPECT_EQ(res[0].n_tokens, static_cast<int64_t>(t.size()));
    // Direct: every token scored once, from a window of at most context_length tokens before it
    // (the first window starts at BOS).
    const size_t n = static_cast<size_t>(f.engine->context_length());
    double expected = 0;
    std::vector<TokenId> first = {f.tok->bos_id()};
    first.insert(first.end(), t.begin(), t.begin() + static_cast<std::ptrdiff_t>(std::min(n, t.size())));
    expected += direct_sum(*f.engine, first, 1);
    for (size_t pred = std::min(n, t.size()); pred < t.size();) {
      const size_t end = std::min(pred + n, t.size());
      std::vector<TokenId> w(t.begin() + static_cast<std::ptrdiff_t>(end - n - 1), t.begin() + static_cast<std::ptrdiff_t>(end));
      expected += direct_sum(*f.engine, w, w.size() - (end - pred));
      pred = end;
    }
    EXPECT_NEAR(res[0].logprob, expected, 1e-4) << "ctx " << ctx;
    if (ctx == 16) {
      EXPECT_GT(lm.rolling_windows(text).size(), 2u);
    }
  }
}

TEST(EngineModel, GenerateUntilStopsBeforeStopString) {
  QEVAL_REQUIRE_SHARED(kModel);
  Fixture f;
  EngineLanguageModel lm(*f.engine, *f.tok);
  const auto free = lm.generate_until({gen("Once upon a time", {}, 24)});
  ASSERT_EQ(free.size(), 1u);
  ASSERT_FALSE(free[0].empty());
  // Stop at the first character of the free generation that is not at position 0.
  const std::string stop = free[0].substr(free[0].size() / 2, 1);
  const auto cut = lm.generate_until({gen("Once upon a time", {stop}, 24)});
  EXPECT_EQ(cut[0], free[0].substr(0, free[0].find(stop)));
  EXPECT_EQ(cut[0].find(stop), std::string::npos);
}

TEST(EngineModel, TasksEndToEnd) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED("data/arc_easy");
  QEVAL_REQUIRE_SHARED("data/tinystories");
  Fixture f;
  EngineLanguageModel lm(*f.engine, *f.tok);
  const eval::task::TaskRegistry reg(fs::path(QEVAL_SOURCE_DIR) / "tasks");
  {
    const auto cfg = reg.load("tinystories");
    const auto data = eval::task::load_task_data(cfg, test::shared_path("data"), {.limit = 3, .skip_bad = std::nullopt});
    const auto r = eval::task::evaluate(cfg, data, lm);
    EXPECT_EQ(r.n_docs, 3);
    const auto* ppl = r.metric("word_perplexity");
    ASSERT_NE(ppl, nullptr);
    EXPECT_TRUE(std::isfinite(ppl->value));
    EXPECT_GT(ppl->value, 1.0);
    const auto* bpb = r.metric("bits_per_byte");
    ASSERT_NE(bpb, nullptr);
    EXPECT_GT(bpb->value, 0.0);
  }
  {
    const auto cfg = reg.load("arc_easy");
    const auto data = eval::task::load_task_data(cfg, test::shared_path("data"), {.limit = 5, .skip_bad = std::nullopt});
    const auto r = eval::task::evaluate(cfg, data, lm);
    EXPECT_EQ(r.n_docs, 5);
    for (const char* m : {"acc", "acc_norm"}) {
      const auto* x = r.metric(m);
      ASSERT_NE(x, nullptr) << m;
      EXPECT_GE(x->value, 0.0);
      EXPECT_LE(x->value, 1.0);
      EXPECT_EQ(x->n, 5);
    }
    ASSERT_EQ(r.docs.size(), 5u);
    for (const auto& d : r.docs) {
      EXPECT_GE(d.logprobs.size(), 2u);
      for (double lp : d.logprobs) EXPECT_LT(lp, 0.0);
    }
  }
}

TEST(EngineModel, EvalCommandWritesJson) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED("data/arc_easy");
  test::TempDir tmp;
  const std::string out = tmp.file("results.json");
  const std::string cmd = std::string("'") + QEVAL_EXE + "' eval '" + test::shared_path(kModel).string() +
                          "' --tasks arc_easy --limit 4 --threads 2 --no-cache --data-dir '" + test::shared_path("data").string() +
                          "' --output '" + out + "' > '" + tmp.file("stdout.txt") + "' 2> '" + tmp.file("stderr.txt") + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_text(tmp.file("stderr.txt"));
  const auto j = nlohmann::json::parse(test::read_text(out));
  const auto& t = j.at("results").at("arc_easy");
  EXPECT_EQ(t.at("n_docs").get<int>(), 4);
  const double acc = t.at("metrics").at("acc").at("value").get<double>();
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  EXPECT_TRUE(t.at("metrics").at("acc").contains("stderr"));
  EXPECT_EQ(t.at("docs").size(), 4u);
  EXPECT_TRUE(t.at("docs")[0].at("scores").contains("acc"));
  const std::string table = test::read_text(tmp.file("stdout.txt"));
  EXPECT_NE(table.find("| Task"), std::string::npos);
  EXPECT_NE(table.find("arc_easy"), std::string::npos);
  EXPECT_NE(test::read_text(tmp.file("stderr.txt")).find("4/4 docs"), std::string::npos);

  // An unknown task fails.
  const std::string bad = std::string("'") + QEVAL_EXE + "' eval '" + test::shared_path(kModel).string() +
                          "' --tasks no_such_task 2>/dev/null >/dev/null";
  EXPECT_NE(std::system(bad.c_str()), 0);
}

}  // namespace
}  // namespace qeval
