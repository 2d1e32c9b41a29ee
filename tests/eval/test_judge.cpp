// LLM-as-judge: the OpenAI-compatible client against an in-process fake endpoint on 127.0.0.1
// (request format, auth header, rating parsing, HTTP errors, retries, timeouts), and MT-Bench
// judging through evaluate() and `qeval eval --judge-url`.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "qeval/eval/judge.h"
#include "qeval/eval/task/evaluate.h"
#include "qeval/eval/task/task.h"
#include "test_support.h"

namespace qeval::eval {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct HttpRequest {
  std::string method, path, body;
  std::map<std::string, std::string> headers;  // names lower-cased
};
struct HttpResponse {
  int status = 200;
  std::string body;
  double delay_s = 0;
};

// A minimal HTTP/1.1 server for tests: one connection at a time, Connection: close.
class FakeEndpoint {
 public:
  explicit FakeEndpoint(std::function<HttpResponse(const HttpRequest&)> handler) : handler_(std::move(handler)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd_, 8) != 0)
      throw std::runtime_error("fake endpoint: cannot listen");
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeEndpoint() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  std::vector<HttpRequest> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return seen_;
  }

 private:
  void serve() {
    while (!stop_) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      HttpRequest req;
      if (read_request(c, req)) {
        {
          std::lock_guard<std::mutex> l(mu_);
          seen_.push_back(req);
        }
        const HttpResponse r = handler_(req);
        if (r.delay_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(r.delay_s));
        const std::string out = "HTTP/1.1 " + std::to_string(r.status) +
                                " X\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                                std::to_string(r.body.size()) + "\r\n\r\n" + r.body;
        size_t sent = 0;
        while (sent < out.size()) {
          const ssize_t k = ::send(c, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
          if (k <= 0) break;
          sent += static_cast<size_t>(k);
        }
      }
      ::close(c);
    }
  }
  static bool read_request(int c, HttpRequest& req) {
    std::string data;
    char buf[4096];
    size_t header_end = std::string::npos;
    while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
      const ssize_t k = ::recv(c, buf, sizeof(buf), 0);
      if (k <= 0) return false;
      data.append(buf, static_cast<size_t>(k));
    }
    const std::string head = data.substr(0, header_end);
    size_t line_end = head.find("\r\n");
    const std::string first = head.substr(0, line_end);
    req.method = first.substr(0, first.find(' '));
    req.path = first.substr(first.find(' ') + 1, first.rfind(' ') - first.find(' ') - 1);
    size_t pos = line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      const std::string line = head.substr(pos, e - pos);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        req.headers[name] = line.substr(v);
      }
      pos = e + 2;
    }
    const size_t length = req.headers.count("content-length") ? std::stoul(req.headers["content-length"]) : 0;
    req.body = data.substr(header_end + 4);
    while (req.body.size() < length) {
      const ssize_t k = ::recv(c, buf, sizeof(buf), 0);
      if (k <= 0) return false;
      req.body.append(buf, static_cast<size_t>(k));
    }
    return true;
  }

  std::function<HttpResponse(const HttpRequest&)> handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<HttpRequest> seen_;
};

std::string completion(const std::string& content) {
  return Json{{"id", "x"}, {"object", "chat.completion"},
              {"choices", Json::array({Json{{"index", 0}, {"message", {{"role", "assistant"}, {"content", content}}},
                                            {"finish_reason", "stop"}}})}}
      .dump();
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Options with short retry delays; `set` adjusts the rest.
OpenAIChatOptions judge_options(const std::string& url, const std::string& key_env = "",
                                const std::function<void(OpenAIChatOptions&)>& set = nullptr) {
  OpenAIChatOptions o;
  o.url = url;
  o.model = "m";
  o.api_key_env = key_env;
  o.retry_delay_s = 0.01;
  if (set) set(o);
  return o;
}

constexpr const char* kKeyVar = "QEVAL_TEST_JUDGE_KEY";
constexpr const char* kKey = "sk-test-0123456789-secret";

TEST(Judge, ParsesRatings) {
  EXPECT_EQ(parse_judge_rating("The answer is fine. Rating: [[7]]"), 7.0);
  EXPECT_EQ(parse_judge_rating("Rating: [[8.5]]"), 8.5);
  EXPECT_EQ(parse_judge_rating("[[3]] and later [[9]]"), 3.0);  // the first one
  EXPECT_EQ(parse_judge_rating("Rating: [4]"), 4.0);             // single brackets as a fallback
  EXPECT_EQ(parse_judge_rating("[2] but [[6]]"), 6.0);           // double brackets win
  EXPECT_FALSE(parse_judge_rating("Rating: 7/10").has_value());
  EXPECT_FALSE(parse_judge_rating("[[11]]").has_value());        // outside 1..10
  EXPECT_FALSE(parse_judge_rating("[[0]]").has_value());
  EXPECT_FALSE(parse_judge_rating("").has_value());
}

TEST(Judge, SendsOpenAIRequestsWithTheBearerKey) {
  ::setenv(kKeyVar, kKey, 1);
  FakeEndpoint server([](const HttpRequest&) { return HttpResponse{200, completion("Good. Rating: [[7]]")}; });
  OpenAIChatClient client(judge_options(server.url() + "/", kKeyVar, [](auto& o) { o.model = "judge-model"; }));
  EXPECT_EQ(client.endpoint(), server.url() + "/chat/completions");
  EXPECT_EQ(client.describe().find(kKey), std::string::npos);
  ChatRequest r;
  r.messages = {{"system", "be fair"}, {"user", "rate this \"answer\"\nplease"}};
  r.max_tokens = 77;
  const auto out = client.chat({r, r});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], "Good. Rating: [[7]]");
  const auto seen = server.requests();
  ASSERT_EQ(seen.size(), 2u);
  const HttpRequest& q = seen[0];
  EXPECT_EQ(q.method, "POST");
  EXPECT_EQ(q.path, "/v1/chat/completions");
  EXPECT_EQ(q.headers.at("authorization"), std::string("Bearer ") + kKey);
  EXPECT_EQ(q.headers.at("content-type"), "application/json");
  const Json body = Json::parse(q.body);
  EXPECT_EQ(body.at("model"), "judge-model");
  EXPECT_EQ(body.at("temperature").get<double>(), 0.0);
  EXPECT_EQ(body.at("max_tokens").get<int>(), 77);
  ASSERT_EQ(body.at("messages").size(), 2u);
  EXPECT_EQ(body["messages"][0].at("role"), "system");
  EXPECT_EQ(body["messages"][1].at("content"), "rate this \"answer\"\nplease");

  // Without a key variable there is no Authorization header.
  OpenAIChatClient anonymous(judge_options(server.url()));
  anonymous.chat({r});
  EXPECT_EQ(server.requests().back().headers.count("authorization"), 0u);
}

TEST(Judge, ReportsHttpErrorsWithoutTheKey) {
  ::setenv(kKeyVar, kKey, 1);
  FakeEndpoint server([](const HttpRequest&) {
    return HttpResponse{401, R"({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})"};
  });
  OpenAIChatClient client(judge_options(server.url(), kKeyVar));
  const std::string e = error_of([&] { client.chat({ChatRequest{{{"user", "x"}}, 8}}); });
  EXPECT_NE(e.find("HTTP 401"), std::string::npos) << e;
  EXPECT_NE(e.find("Incorrect API key provided"), std::string::npos) << e;
  EXPECT_NE(e.find(server.url()), std::string::npos) << e;
  EXPECT_EQ(e.find(kKey), std::string::npos) << e;
  EXPECT_EQ(server.requests().size(), 1u);  // a 4xx is not retried

  // The key variable must be set when named.
  ::unsetenv("QEVAL_TEST_JUDGE_UNSET");
  const std::string unset =
      error_of([&] { OpenAIChatClient c(judge_options(server.url(), "QEVAL_TEST_JUDGE_UNSET")); });
  EXPECT_NE(unset.find("QEVAL_TEST_JUDGE_UNSET is not set"), std::string::npos) << unset;
  EXPECT_NE(error_of([] { OpenAIChatClient c(judge_options("ftp://x")); }).find("not http"), std::string::npos);
  // A body that is not a chat completion.
  FakeEndpoint odd([](const HttpRequest&) { return HttpResponse{200, R"({"result": 1})"}; });
  OpenAIChatClient c2(judge_options(odd.url()));
  EXPECT_NE(error_of([&] { c2.chat({ChatRequest{{{"user", "x"}}, 8}}); }).find("without choices[0].message.content"),
            std::string::npos);
}

TEST(Judge, RetriesServerErrorsThenGivesUp) {
  std::atomic<int> calls{0};
  FakeEndpoint flaky([&](const HttpRequest&) {
    return ++calls <= 2 ? HttpResponse{503, R"({"error": {"message": "overloaded"}})"} : HttpResponse{200, completion("[[9]]")};
  });
  OpenAIChatClient client(judge_options(flaky.url(), "", [](auto& o) { o.max_retries = 3; }));
  EXPECT_EQ(client.chat({ChatRequest{{{"user", "x"}}, 8}}).at(0), "[[9]]");
  EXPECT_EQ(calls.load(), 3);

  FakeEndpoint down([](const HttpRequest&) { return HttpResponse{429, R"({"error": {"message": "rate limited"}})"}; });
  OpenAIChatClient c2(judge_options(down.url(), "", [](auto& o) { o.max_retries = 2; }));
  const std::string e = error_of([&] { c2.chat({ChatRequest{{{"user", "x"}}, 8}}); });
  EXPECT_NE(e.find("HTTP 429"), std::string::npos) << e;
  EXPECT_NE(e.find("rate limited"), std::string::npos) << e;
  EXPECT_NE(e.find("gave up after 3 attempts"), std::string::npos) << e;
  EXPECT_EQ(down.requests().size(), 3u);
}

TEST(Judge, TimesOut) {
  FakeEndpoint slow([](const HttpRequest&) { return HttpResponse{200, completion("[[5]]"), 1.5}; });
  OpenAIChatClient client(judge_options(slow.url(), "", [](auto& o) {
    o.timeout_s = 0.2;
    o.max_retries = 1;
  }));
  const auto t0 = std::chrono::steady_clock::now();
  const std::string e = error_of([&] { client.chat({ChatRequest{{{"user", "x"}}, 8}}); });
  EXPECT_NE(e.find("imeout"), std::string::npos) << e;  // curl: "Timeout was reached"
  EXPECT_NE(e.find("gave up after 2 attempts"), std::string::npos) << e;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.4 * 2);
}

// Answers "turn <k> of <first words>"; the judge rates turn 1 with 8, turn 2 with 4, and gives no
// rating to the question about 'Hawaii' in turn 2.
class TurnModel : public task::LanguageModel {
 public:
  std::vector<task::LoglikelihoodResult> loglikelihood(const std::vector<task::Request>&) override { return {}; }
  std::vector<task::RollingResult> loglikelihood_rolling(const std::vector<task::Request>&) override { return {}; }
  std::vector<std::string> generate_until(const std::vector<task::Request>& rs) override {
    std::vector<std::string> out;
    for (const auto& r : rs) out.push_back("my answer to turn " + std::to_string(r.turn + 1));
    return out;
  }
};

HttpResponse grade(const HttpRequest& q) {
  const Json body = Json::parse(q.body);
  const std::string prompt = body["messages"].back()["content"];
  const bool second = prompt.find("Grade the assistant's answer to turn 2") != std::string::npos;
  if (second && prompt.find("Hawaii") != std::string::npos) return {200, completion("I cannot decide.")};
  return {200, completion(second ? "Weak. Rating: [[4]]" : "Strong. Rating: [[8]]")};
}

TEST(Judge, MtBenchThroughEvaluate) {
  QEVAL_REQUIRE_SHARED("data/mt_bench/question.jsonl");
  const task::TaskRegistry reg(fs::path(QEVAL_SOURCE_DIR) / "tasks");
  const task::TaskConfig cfg = reg.load("mt_bench");
  ASSERT_TRUE(cfg.judge.has_value());
  const task::TaskData all = task::load_task_data(cfg, test::shared_path("data"));
  // The first question (writing, about Hawaii) and one math question with a reference answer.
  task::TaskData data = all;
  data.docs.clear();
  data.sources.clear();
  size_t math = all.docs.size();
  for (size_t i = 0; i < all.docs.size(); ++i)
    if (all.docs[i]["category"] == "math" && all.docs[i].contains("reference")) {
      math = i;
      break;
    }
  ASSERT_LT(math, all.docs.size());
  for (size_t i : {size_t{0}, math}) {
    data.docs.push_back(all.docs[i]);
    data.sources.push_back(all.sources[i]);
  }
  FakeEndpoint server(grade);
  OpenAIChatClient judge(judge_options(server.url(), "", [](auto& o) { o.model = "judge"; }));
  TurnModel model;
  task::EvalOptions eo;
  eo.judge = &judge;
  const task::TaskResult r = task::evaluate(cfg, data, model, eo);
  const auto seen = server.requests();
  ASSERT_EQ(seen.size(), 4u);  // 2 docs x 2 turns
  // Turn 2's prompt holds the whole conversation; the math question carries its reference.
  const Json turn2 = Json::parse(seen[1].body);
  const std::string p2 = turn2["messages"][1]["content"];
  EXPECT_NE(p2.find("[User, turn 1]"), std::string::npos) << p2;
  EXPECT_NE(p2.find("my answer to turn 1"), std::string::npos) << p2;
  EXPECT_NE(p2.find("[Assistant, turn 2]\nmy answer to turn 2"), std::string::npos) << p2;
  EXPECT_EQ(p2.find("[Reference answer"), std::string::npos);
  const std::string pm = Json::parse(seen[2].body)["messages"][1]["content"];
  EXPECT_NE(pm.find("[Reference answer for turn 1]\n" + data.docs[1]["reference"][0].get<std::string>()),
            std::string::npos) << pm;
  EXPECT_EQ(pm.find("[User, turn 2]"), std::string::npos);  // turn 1 sees only turn 1
  EXPECT_NE(Json::parse(seen[2].body)["messages"][0]["content"].get<std::string>().find("reference answer is provided"),
            std::string::npos);
  // Ratings: doc 0 = (8, none), doc 1 = (8, 4).
  EXPECT_EQ(r.judge_invalid, 1);
  EXPECT_EQ(r.judge, "judge at " + server.url() + "/chat/completions");
  ASSERT_NE(r.metric("judge_turn1"), nullptr);
  EXPECT_DOUBLE_EQ(r.metric("judge_turn1")->value, 8.0);
  EXPECT_DOUBLE_EQ(r.metric("judge_turn2")->value, 4.0);
  EXPECT_EQ(r.metric("judge_turn2")->n, 1);
  EXPECT_DOUBLE_EQ(r.metric("judge_score")->value, (8.0 + 6.0) / 2);
  EXPECT_TRUE(std::isnan(r.docs[0].ratings[1]));
  EXPECT_EQ(r.docs[0].judgments[1], "I cannot decide.");
  // Per category (group_by).
  ASSERT_EQ(r.groups.count("math"), 1u);
  bool saw = false;
  for (const auto& m : r.groups.at("math"))
    if (m.name == "judge_score") {
      saw = true;
      EXPECT_DOUBLE_EQ(m.value, 6.0);
    }
  EXPECT_TRUE(saw);
  // The statistic resamples every doc and skips missing ratings.
  const std::vector<uint32_t> w = {0, 2};
  EXPECT_DOUBLE_EQ(r.metric("judge_turn2")->statistic(w), 4.0);
}

TEST(Judge, EvalCommandJudgesMtBenchWithoutLeakingTheKey) {
  QEVAL_REQUIRE_SHARED("data/mt_bench/question.jsonl");
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-F32.gguf");
  FakeEndpoint server(grade);
  test::TempDir tmp;
  const std::string cmd = std::string(kKeyVar) + "='" + kKey + "' '" + QEVAL_EXE + "' eval '" +
                          test::shared_path("models/stories260K-gguf/stories260K-F32.gguf").string() +
                          "' --tasks mt_bench --limit 1 --threads 1 --no-cache --data-dir '" +
                          test::shared_path("data").string() + "' --judge-url " + server.url() +
                          " --judge-model judge --judge-key-env " + kKeyVar + " -o '" + tmp.file("r.json") + "' > '" +
                          tmp.file("out.txt") + "' 2> '" + tmp.file("err.txt") + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_text(tmp.file("err.txt"));
  const std::string out = test::read_text(tmp.file("out.txt")), err = test::read_text(tmp.file("err.txt")),
                    json = test::read_text(tmp.file("r.json"));
  EXPECT_EQ(out.find(kKey), std::string::npos);
  EXPECT_EQ(err.find(kKey), std::string::npos);
  EXPECT_EQ(json.find(kKey), std::string::npos);
  EXPECT_NE(out.find("judge_score"), std::string::npos) << out;
  const auto seen = server.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].headers.at("authorization"), std::string("Bearer ") + kKey);
  const Json j = Json::parse(json);
  const auto& t = j.at("results").at("mt_bench");
  EXPECT_EQ(t.at("judge_invalid").get<int>(), 1);  // question 81 (Hawaii), turn 2
  EXPECT_EQ(t.at("metrics").at("judge_turn1").at("value").get<double>(), 8.0);
  EXPECT_EQ(t.at("docs")[0].at("ratings")[1], nullptr);

  // An unreachable judge fails the run with a clear message and writes nothing.
  const std::string bad = std::string("'") + QEVAL_EXE + "' eval '" +
                          test::shared_path("models/stories260K-gguf/stories260K-F32.gguf").string() +
                          "' --tasks mt_bench --limit 1 --threads 1 --no-cache --data-dir '" +
                          test::shared_path("data").string() +
                          "' --judge-url http://127.0.0.1:9/v1 --judge-model judge --judge-retries 0 -o '" +
                          tmp.file("bad.json") + "' > /dev/null 2> '" + tmp.file("bad.txt") + "'";
  EXPECT_NE(std::system(bad.c_str()), 0);
  EXPECT_NE(test::read_text(tmp.file("bad.txt")).find("judge: http://127.0.0.1:9/v1/chat/completions"), std::string::npos)
      << test::read_text(tmp.file("bad.txt"));
  EXPECT_FALSE(fs::exists(tmp.file("bad.json")));
}

}  // namespace
}  // namespace qeval::eval
