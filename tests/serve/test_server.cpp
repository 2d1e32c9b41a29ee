// Integration tests of `qeval serve`: a real server process on loopback (stories260K GGUF),
// checked against the in-process engine.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "qeval/engine/engine.h"
#include "qeval/engine/generate.h"
#include "qeval/io/model.h"
#include "qeval/quant/in_memory.h"
#include "qeval/quant/spec.h"
#include "qeval/serve/http_client.h"
#include "qeval/tokenizer/tokenizer.h"
#include "support/server_process.h"
#include "test_support.h"

namespace qeval {
namespace {

using nlohmann::json;
using serve::HttpClient;
using serve::HttpResponse;

constexpr const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
constexpr const char* kKeyVar = "QEVAL_TEST_SERVE_KEY";
constexpr const char* kKey = "test-key-0123456789";

// The in-process reference: the same model through Engine and generate().
struct Reference {
  Model model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Engine> engine;
  explicit Reference(const std::string& path) : model(load_model(path)) {
    tok = load_tokenizer(model);
    engine = std::make_unique<Engine>(model, EngineOptions{.threads = 1});
  }
  std::string greedy(const std::string& prompt, int64_t n, std::vector<std::string> stop = {}) {
    GenerationOptions g;
    g.max_tokens = n;
    g.stop = std::move(stop);
    return generate(*engine, tok.get(), tok->encode(prompt), g).text;
  }
};

// Events of a server-sent-event body: the JSON of each "data:" line; "[DONE]" as a string.
std::vector<json> sse_events(const std::string& body) {
  std::vector<json> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) continue;
    const std::string data = ev.substr(6);
    out.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
  }
  return out;
}

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::have_shared(kModel)) return;
    dir_ = new test::TempDir();
    server_ = new test::ServerProcess(test::shared_path(kModel).string(),
                                      {"--threads", "1", "--api-key-env", kKeyVar, "--max-request-bytes", "65536",
                                       "--max-concurrency", "4"},
                                      dir_->path() / "serve.log", {{kKeyVar, kKey}});
    ref_ = new Reference(test::shared_path(kModel).string());
  }
  static void TearDownTestSuite() {
    // The server must stop cleanly on SIGTERM (exit code 0), and is killed if it does not.
    if (server_ != nullptr && server_->port() != 0) {
      EXPECT_EQ(server_->stop(), 0) << server_->log();
    }
    delete server_;
    delete ref_;
    delete dir_;
    server_ = nullptr;
    ref_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override {
    QEVAL_REQUIRE_SHARED(kModel);
    ASSERT_NE(server_->port(), 0) << server_->error();
  }
  static std::unique_ptr<HttpClient> client(bool with_key = true) {
    auto c = std::make_unique<HttpClient>(server_->url(), 60);
    if (with_key) c->set_bearer_token(kKey);
    return c;
  }
  static json post_ok(HttpClient& c, const std::string& path, const json& body) {
    const HttpResponse r = c.post(path, body.dump());
    EXPECT_EQ(r.status, 200) << r.error << " " << r.body;
    return r.status == 200 ? json::parse(r.body) : json();
  }
  static HttpResponse stream(HttpClient& c, const std::string& path, const json& body) {
    std::string collected;
    HttpResponse r = c.post_stream(path, body.dump(), [&](std::string_view d) {
      collected.append(d);
      return true;
    });
    r.body = collected;
    return r;
  }
  // Checks OpenAI's error shape and returns the error object.
  static json expect_error(const HttpResponse& r, int status) {
    EXPECT_EQ(r.status, status) << r.error << " " << r.body;
    json j = json::parse(r.body, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("error")) << r.body;
    if (!j.is_object() || !j.contains("error")) return json();
    const json& e = j["error"];
    for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(e.contains(k)) << k << " in " << r.body;
    EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty());
    return e;
  }

  static test::TempDir* dir_;
  static test::ServerProcess* server_;
  static Reference* ref_;
};
test::TempDir* ServeTest::dir_ = nullptr;
test::ServerProcess* ServeTest::server_ = nullptr;
Reference* ServeTest::ref_ = nullptr;

TEST_F(ServeTest, ListsTheModel) {
  auto c = client();
  const HttpResponse r = c->get("/models");
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], "stories260K-F32");
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_EQ(j["data"][0]["context_length"], 512);
  EXPECT_EQ(c->get("/models/stories260K-F32").status, 200);
  expect_error(c->get("/models/other"), 404);
}

TEST_F(ServeTest, GreedyCompletionMatchesTheEngine) {
  auto c = client();
  const std::string prompt = "Once upon a time";
  const json j = post_ok(*c, "/completions",
                         {{"model", "stories260K-F32"}, {"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(j["choices"].size(), 1u);
  const std::string expected = ref_->greedy(prompt, 12);
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(j["choices"][0]["text"], expected);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["usage"]["prompt_tokens"], static_cast<int64_t>(ref_->tok->encode(prompt).size()));
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
}

TEST_F(ServeTest, StreamedCompletionMatchesTheEngine) {
  auto c = client();
  const std::string prompt = "Once upon a time";
  const HttpResponse r = stream(*c, "/completions", {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}, {"stream", true}});
  ASSERT_EQ(r.status, 200) << r.error;
  const auto events = sse_events(r.body);
  ASSERT_GE(events.size(), 3u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  int finishes = 0;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json& ch = events[i]["choices"][0];
    text += ch["text"].get<std::string>();
    if (!ch["finish_reason"].is_null()) {
      ++finishes;
      EXPECT_EQ(ch["finish_reason"], "length");
    }
  }
  EXPECT_EQ(finishes, 1);
  EXPECT_EQ(text, ref_->greedy(prompt, 12));
}

TEST_F(ServeTest, StopStringsCutTheText) {
  auto c = client();
  const std::string prompt = "Once upon a time";
  const std::string full = ref_->greedy(prompt, 24);
  // Stop at the second word of the greedy continuation.
  const size_t sp = full.find(' ', 1);
  ASSERT_NE(sp, std::string::npos) << full;
  const size_t sp2 = full.find(' ', sp + 1);
  const std::string stop = full.substr(sp, sp2 == std::string::npos ? std::string::npos : sp2 - sp);
  for (const json& stop_param : {json(stop), json::array({"zzzz", stop})}) {
    const json j = post_ok(*c, "/completions", {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}, {"stop", stop_param}});
    EXPECT_EQ(j["choices"][0]["text"], full.substr(0, full.find(stop)));
    EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
    const HttpResponse r = stream(*c, "/completions",
                                  {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}, {"stop", stop_param}, {"stream", true}});
    std::string text;
    for (const auto& e : sse_events(r.body))
      if (e.is_object()) text += e["choices"][0]["text"].get<std::string>();
    EXPECT_EQ(text, full.substr(0, full.find(stop)));
  }
}

TEST_F(ServeTest, SeededSamplingRepeats) {
  auto c = client();
  const json body{{"prompt", "Once upon a time"}, {"max_tokens", 16}, {"temperature", 1.0}, {"top_p", 0.9}, {"seed", 7}};
  const json a = post_ok(*c, "/completions", body);
  const json b = post_ok(*c, "/completions", body);
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]);
  // Sampling through the engine's own sampler with the same seed gives the same text.
  GenerationOptions g;
  g.max_tokens = 16;
  g.sampling = {1.0f, 0, 0.9f, 7};
  EXPECT_EQ(a["choices"][0]["text"], generate(*ref_->engine, ref_->tok.get(), ref_->tok->encode("Once upon a time"), g).text);
}

TEST_F(ServeTest, EchoLogprobsEqualTheEngineScores) {
  auto c = client();
  const std::string prompt = "Once upon a time, there was a little girl named Lily.";
  const json j = post_ok(*c, "/completions",
                         {{"prompt", prompt}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 3}, {"temperature", 0}});
  const json& ch = j["choices"][0];
  EXPECT_EQ(ch["text"], prompt);
  const json& lp = ch["logprobs"];
  const std::vector<TokenId> tokens = ref_->tok->encode(prompt);
  ASSERT_EQ(lp["tokens"].size(), tokens.size());
  ASSERT_EQ(lp["token_logprobs"].size(), tokens.size());
  ASSERT_EQ(lp["text_offset"].size(), tokens.size());
  ASSERT_EQ(lp["top_logprobs"].size(), tokens.size());
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());

  ScoreRequest req;
  req.tokens = tokens;
  const ScoreResult ref = ref_->engine->score({&req, 1})[0];
  double max_diff = 0;
  for (size_t i = 1; i < tokens.size(); ++i) {
    const double got = lp["token_logprobs"][i].get<double>();
    max_diff = std::max(max_diff, std::fabs(got - ref.logprobs[i - 1]));
    // top_logprobs: at most 3 alternatives, the best one at least as likely as the token; the
    // token is the best exactly when the engine calls it greedy.
    const json& top = lp["top_logprobs"][i];
    ASSERT_TRUE(top.is_object());
    EXPECT_LE(top.size(), 3u);
    double best = -INFINITY;
    for (const auto& [k, v] : top.items()) best = std::max(best, v.get<double>());
    EXPECT_GE(best, got - 1e-12);
    EXPECT_EQ(got >= best, ref.greedy[i - 1] != 0) << "position " << i;
  }
  EXPECT_LE(max_diff, 1e-4);
  // text_offset: non-decreasing character offsets where each token's text starts.
  EXPECT_EQ(lp["text_offset"][0], 0);
  for (size_t i = 1; i < tokens.size(); ++i) {
    const size_t off = lp["text_offset"][i].get<size_t>();
    EXPECT_GE(off, lp["text_offset"][i - 1].get<size_t>());
    const std::string piece = lp["tokens"][i].get<std::string>();
    const std::string bare = piece.size() > 1 && piece[0] == ' ' && off == 0 ? piece.substr(1) : piece;
    EXPECT_EQ(prompt.compare(off, bare.size(), bare), 0) << "token " << i << " '" << piece << "' at " << off;
  }
}

TEST_F(ServeTest, GenerationLogprobsEqualTheEngineScores) {
  auto c = client();
  const std::string prompt = "Once upon a time";
  const json j = post_ok(*c, "/completions", {{"prompt", prompt}, {"max_tokens", 6}, {"logprobs", 2}, {"temperature", 0}});
  const json& lp = j["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 6u);
  // Score prompt + the generated tokens in process.
  GenerationOptions g;
  g.max_tokens = 6;
  const std::vector<TokenId> p = ref_->tok->encode(prompt);
  const GenerationResult gen = generate(*ref_->engine, ref_->tok.get(), p, g);
  ASSERT_EQ(gen.tokens.size(), 6u);
  ScoreRequest req;
  req.tokens = p;
  req.tokens.insert(req.tokens.end(), gen.tokens.begin(), gen.tokens.end());
  req.score_from = static_cast<int64_t>(p.size());
  const ScoreResult ref = ref_->engine->score({&req, 1})[0];
  size_t offset = prompt.size();
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), ref.logprobs[i], 1e-4);
    EXPECT_EQ(lp["tokens"][i], ref_->tok->token_text(gen.tokens[i]));
    EXPECT_EQ(lp["text_offset"][i], offset);  // offsets continue after the prompt (ASCII here)
    offset += ref_->tok->token_text(gen.tokens[i]).size();
    EXPECT_EQ(lp["top_logprobs"][i].size(), 2u);
  }
}

TEST_F(ServeTest, PromptAsTokenIdsAndLists) {
  auto c = client();
  const std::vector<TokenId> ids = ref_->tok->encode("Once upon a time");
  const json a = post_ok(*c, "/completions", {{"prompt", ids}, {"max_tokens", 5}, {"temperature", 0}});
  EXPECT_EQ(a["choices"][0]["text"], ref_->greedy("Once upon a time", 5));
  const json b = post_ok(*c, "/completions",
                         {{"prompt", json::array({"Once upon a time", "The cat"})}, {"max_tokens", 5}, {"temperature", 0}});
  ASSERT_EQ(b["choices"].size(), 2u);
  EXPECT_EQ(b["choices"][0]["index"], 0);
  EXPECT_EQ(b["choices"][1]["index"], 1);
  EXPECT_EQ(b["choices"][1]["text"], ref_->greedy("The cat", 5));
}

TEST_F(ServeTest, ChatUsesThePlainFormatWithoutATemplate) {
  auto c = client();
  const json messages = json::array({{{"role", "system"}, {"content", "You tell stories."}},
                                     {{"role", "user"}, {"content", "Tell me about a dog."}}});
  // stories260K has no tokenizer.chat_template: the documented plain format.
  const std::string prompt = "System: You tell stories.\n\nUser: Tell me about a dog.\n\nAssistant:";
  const std::string expected = ref_->greedy(prompt, 10, {"\n\nUser:", "\n\nSystem:"});
  const json j = post_ok(*c, "/chat/completions", {{"messages", messages}, {"max_tokens", 10}, {"temperature", 0}});
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], expected);
  EXPECT_EQ(j["usage"]["prompt_tokens"], static_cast<int64_t>(ref_->tok->encode(prompt).size()));

  const HttpResponse r = stream(*c, "/chat/completions",
                                {{"messages", messages}, {"max_tokens", 10}, {"temperature", 0}, {"stream", true},
                                 {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200);
  const auto events = sse_events(r.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  bool usage = false;
  for (const auto& e : events) {
    if (!e.is_object()) continue;
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    if (e.contains("usage")) usage = true;
    if (!e["choices"].empty() && e["choices"][0]["delta"].contains("content"))
      text += e["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_TRUE(usage);
  EXPECT_EQ(text, expected);
}

TEST_F(ServeTest, BadRequestsGetOpenAIErrors) {
  auto c = client();
  EXPECT_EQ(expect_error(c->post("/completions", "{\"prompt\": \"x\", "), 400)["type"], "invalid_request_error");
  EXPECT_EQ(expect_error(c->post("/completions", "[1, 2]"), 400)["type"], "invalid_request_error");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"prompt", "x"}, {"max_tokens", -1}}.dump()), 400)["param"], "max_tokens");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"prompt", "x"}, {"max_tokens", "5"}}.dump()), 400)["param"], "max_tokens");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"prompt", 5}}.dump()), 400)["param"], "prompt");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"max_tokens", 5}}.dump()), 400)["param"], "prompt");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"prompt", "x"}, {"temperature", "hot"}}.dump()), 400)["param"], "temperature");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"prompt", "x"}, {"temperature", 3}}.dump()), 400)["param"], "temperature");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"prompt", "x"}, {"stop", json::array({1})}}.dump()), 400)["param"], "stop");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"prompt", "x"}, {"logprobs", 99}}.dump()), 400)["param"], "logprobs");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"prompt", "x"}, {"stream", "yes"}}.dump()), 400)["param"], "stream");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"prompt", json::array({1, 100000})}}.dump()), 400)["param"], "prompt");
  EXPECT_EQ(expect_error(c->post("/chat/completions", json{{"messages", json::array()}}.dump()), 400)["param"], "messages");
  EXPECT_EQ(expect_error(c->post("/chat/completions", json{{"messages", {{{"role", "robot"}, {"content", "x"}}}}}.dump()), 400)["param"],
            "messages[0].role");
  EXPECT_EQ(expect_error(c->post("/completions", json{{"model", "gpt-4"}, {"prompt", "x"}}.dump()), 404)["code"], "model_not_found");
  expect_error(c->get("/no/such/endpoint"), 404);
  // A prompt longer than the context (512 tokens).
  std::string lng;
  for (int i = 0; i < 300; ++i) lng += "Once upon a time ";
  EXPECT_EQ(expect_error(c->post("/completions", json{{"prompt", lng}, {"max_tokens", 1}}.dump()), 400)["code"],
            "context_length_exceeded");
  // Over --max-request-bytes (65536).
  const HttpResponse big = c->post("/completions", json{{"prompt", std::string(70000, 'a')}}.dump());
  expect_error(big, 413);
  // The server still answers afterwards.
  EXPECT_EQ(c->get("/models").status, 200);
}

TEST_F(ServeTest, BearerTokenIsRequired) {
  auto anonymous = client(false);
  const json body{{"prompt", "Once"}, {"max_tokens", 1}};
  EXPECT_EQ(expect_error(anonymous->post("/completions", body.dump()), 401)["code"], "invalid_api_key");
  expect_error(anonymous->get("/models"), 401);
  auto wrong = client(false);
  wrong->set_bearer_token("not-the-key");
  expect_error(wrong->post("/completions", body.dump()), 401);
  HttpClient health("http://127.0.0.1:" + std::to_string(server_->port()), 10);
  EXPECT_EQ(health.get("/health").status, 200);  // health needs no key
  EXPECT_EQ(server_->log().find(kKey), std::string::npos) << "the API key must never be logged";
}

TEST_F(ServeTest, ConcurrentClientsGetTheirOwnAnswers) {
  const std::vector<std::string> prompts = {"Once upon a time", "The cat", "Lily was", "One day, a little"};
  std::vector<std::string> expected;
  for (const auto& p : prompts) expected.push_back(ref_->greedy(p, 16));
  std::vector<std::string> got(prompts.size());
  std::vector<int> status(prompts.size());
  std::barrier start(static_cast<std::ptrdiff_t>(prompts.size()));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i)
    threads.emplace_back([&, i] {
      auto c = client();
      start.arrive_and_wait();
      for (int rep = 0; rep < 3; ++rep) {
        const bool streamed = (i + static_cast<size_t>(rep)) % 2 == 1;
        const json body{{"prompt", prompts[i]}, {"max_tokens", 16}, {"temperature", 0}, {"stream", streamed}};
        if (streamed) {
          const HttpResponse r = stream(*c, "/completions", body);
          status[i] = r.status;
          std::string text;
          for (const auto& e : sse_events(r.body))
            if (e.is_object()) text += e["choices"][0]["text"].get<std::string>();
          got[i] = text;
        } else {
          const HttpResponse r = c->post("/completions", body.dump());
          status[i] = r.status;
          got[i] = r.status == 200 ? json::parse(r.body)["choices"][0]["text"].get<std::string>() : r.body;
        }
        if (status[i] != 200 || got[i] != expected[i]) return;
      }
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(status[i], 200);
    EXPECT_EQ(got[i], expected[i]) << prompts[i];
  }
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

TEST_F(ServeTest, ClientDisconnectStopsGeneration) {
  const json body{{"prompt", "Once upon a time"}, {"max_tokens", 500}, {"temperature", 0}, {"ignore_eos", true}};
  auto wait_for_cancel = [&](size_t before) {
    for (int i = 0; i < 100; ++i) {
      if (count(server_->log(), "cancelled after") > before) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  // Streamed: hang up after the first piece.
  size_t before = count(server_->log(), "cancelled after");
  auto c = client();
  json streamed = body;
  streamed["stream"] = true;
  int chunks = 0;
  const HttpResponse r = c->post_stream("/completions", streamed.dump(), [&](std::string_view) { return ++chunks < 2; });
  EXPECT_FALSE(r.error.empty());
  EXPECT_TRUE(wait_for_cancel(before)) << server_->log();
  // Not streamed: the client gives up (a 10 ms timeout) long before 500 tokens are done.
  before = count(server_->log(), "cancelled after");
  HttpClient impatient(server_->url(), 0.01);
  impatient.set_bearer_token(kKey);
  EXPECT_FALSE(impatient.post("/completions", body.dump()).error.empty());
  EXPECT_TRUE(wait_for_cancel(before)) << server_->log();
  // The server goes on serving.
  auto c2 = client();
  const json j = post_ok(*c2, "/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 4}, {"temperature", 0}});
  EXPECT_EQ(j["choices"][0]["text"], ref_->greedy("Once upon a time", 4));
}

// A second server admitting one request at a time answers the overflow with 429.
TEST(ServeLimits, ConcurrencyLimitAnswers429) {
  QEVAL_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  test::ServerProcess server(test::shared_path(kModel).string(), {"--threads", "1", "--max-concurrency", "1"},
                             dir.path() / "serve.log");
  ASSERT_NE(server.port(), 0) << server.error();
  Reference ref(test::shared_path(kModel).string());
  GenerationOptions g;
  g.max_tokens = 300;
  g.stop_at_eos = false;
  const std::string expected = generate(*ref.engine, ref.tok.get(), ref.tok->encode("Once upon a time"), g).text;
  const json body{{"prompt", "Once upon a time"}, {"max_tokens", 300}, {"temperature", 0}, {"ignore_eos", true}};
  constexpr int kClients = 6;
  std::vector<HttpResponse> res(kClients);
  std::barrier start(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i)
    threads.emplace_back([&, i] {
      HttpClient c(server.url(), 60);
      start.arrive_and_wait();
      res[static_cast<size_t>(i)] = c.post("/completions", body.dump());
    });
  for (auto& t : threads) t.join();
  int ok = 0, busy = 0;
  for (const auto& r : res) {
    if (r.status == 200) {
      ++ok;
      EXPECT_EQ(json::parse(r.body)["choices"][0]["text"], expected);
    } else {
      EXPECT_EQ(r.status, 429) << r.body;
      EXPECT_EQ(json::parse(r.body)["error"]["code"], "rate_limit_exceeded");
      ++busy;
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1) << "six simultaneous 300-token requests never overlapped";
  EXPECT_EQ(server.stop(), 0);
}

// --spec quantizes in memory exactly as the in-process path does.
TEST(ServeSpec, EchoLogprobsEqualTheQuantizedEngine) {
  QEVAL_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  test::ServerProcess server(test::shared_path(kModel).string(), {"--threads", "1", "--spec", "w4g32"}, dir.path() / "serve.log");
  ASSERT_NE(server.port(), 0) << server.error();
  Reference ref(test::shared_path(kModel).string());
  const auto quantized = quant::quantize_in_memory(*ref.engine, quant::QuantSpec::parse("w4g32"), {}, "test");
  const std::string prompt = "Once upon a time, there was a little girl named Lily.";
  HttpClient c(server.url(), 60);
  const HttpResponse r = c.post("/completions", json{{"prompt", prompt}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 0}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json lp = json::parse(r.body)["choices"][0]["logprobs"]["token_logprobs"];
  ScoreRequest req;
  req.tokens = ref.tok->encode(prompt);
  const ScoreResult want = ref.engine->score({&req, 1})[0];
  ASSERT_EQ(lp.size(), req.tokens.size());
  double max_diff = 0;
  for (size_t i = 1; i < lp.size(); ++i) max_diff = std::max(max_diff, std::fabs(lp[i].get<double>() - want.logprobs[i - 1]));
  EXPECT_LE(max_diff, 1e-4);
  // And the quantization changed something (the comparison is not trivially against F32).
  Reference f32(test::shared_path(kModel).string());
  const ScoreResult plain = f32.engine->score({&req, 1})[0];
  EXPECT_GT(std::fabs(plain.sum() - want.sum()), 1e-3);
  EXPECT_EQ(server.stop(), 0);
}

TEST(ServeCli, BadArgumentsFailWithOneLine) {
  QEVAL_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  test::ServerProcess missing(dir.file("nope.gguf"), {}, dir.path() / "a.log");
  EXPECT_EQ(missing.port(), 0);
  EXPECT_NE(missing.error().find("nope.gguf"), std::string::npos) << missing.error();
  test::ServerProcess nokey(test::shared_path(kModel).string(), {"--api-key-env", "QEVAL_TEST_UNSET_VARIABLE"},
                            dir.path() / "b.log");
  EXPECT_EQ(nokey.port(), 0);
  EXPECT_NE(nokey.error().find("QEVAL_TEST_UNSET_VARIABLE"), std::string::npos) << nokey.error();
}

}  // namespace
}  // namespace qeval
