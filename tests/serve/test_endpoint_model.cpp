// EndpointLanguageModel against a running `qeval serve` gives what EngineLanguageModel gives
// in process; a server without prompt log-probabilities gets a clear error.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <thread>

#include "qeval/engine/engine.h"
#include "qeval/eval/engine_model.h"
#include "qeval/io/model.h"
#include "qeval/serve/endpoint_model.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"
#include "support/server_process.h"
#include "test_support.h"

namespace qeval {
namespace {

using eval::task::Request;
using eval::task::RequestType;

constexpr const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";

Request ll(std::string context, std::string continuation) {
  Request r;
  r.type = RequestType::loglikelihood;
  r.context = std::move(context);
  r.continuation = std::move(continuation);
  return r;
}

TEST(EndpointModel, MatchesTheEngineModel) {
  QEVAL_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  setenv("QEVAL_TEST_ENDPOINT_KEY", "k-123", 1);
  test::ServerProcess server(test::shared_path(kModel).string(),
                             {"--threads", "1", "--api-key-env", "QEVAL_TEST_ENDPOINT_KEY", "--name", "stories"},
                             dir.path() / "serve.log", {{"QEVAL_TEST_ENDPOINT_KEY", "k-123"}});
  ASSERT_NE(server.port(), 0) << server.error();

  const Model model = load_model(test::shared_path(kModel).string());
  auto tok = load_tokenizer(model);
  Engine engine(model, {.threads = 1});
  eval::EngineLanguageModel local(engine, *tok);
  serve::EndpointOptions eo;
  eo.base_url = server.url();
  eo.model = "stories";
  eo.api_key_env = "QEVAL_TEST_ENDPOINT_KEY";
  eo.batch = 3;
  auto remote = serve::make_endpoint_model(eo);

  // Multiple-choice style requests (shared context, trailing space in a context), a greedy one.
  const std::vector<Request> reqs = {
      ll("Once upon a time, there was a little girl named", " Lily"),
      ll("Once upon a time, there was a little girl named", " Tom"),
      ll("Once upon a time, there was a little girl named ", "Lily."),
      ll("The cat sat on the", " mat and looked at the sky."),
      ll("", "Once upon a time"),
  };
  const auto want = local.loglikelihood(reqs);
  const auto got = remote->loglikelihood(reqs);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_NEAR(got[i].logprob, want[i].logprob, 1e-4) << i;
    EXPECT_EQ(got[i].is_greedy, want[i].is_greedy) << i;
    EXPECT_EQ(got[i].n_tokens, want[i].n_tokens) << i;
  }

  std::vector<Request> rolling(2);
  rolling[0].type = rolling[1].type = RequestType::loglikelihood_rolling;
  rolling[0].continuation = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
  rolling[1].continuation = "The dog was happy.";
  const auto rw = local.loglikelihood_rolling(rolling);
  const auto rg = remote->loglikelihood_rolling(rolling);
  for (size_t i = 0; i < rolling.size(); ++i) {
    EXPECT_NEAR(rg[i].logprob, rw[i].logprob, 1e-4) << i;
    EXPECT_EQ(rg[i].n_tokens, rw[i].n_tokens) << i;
  }

  std::vector<Request> gen(2);
  gen[0].type = gen[1].type = RequestType::generate_until;
  gen[0].context = "Once upon a time";
  gen[0].until = {"."};
  gen[0].max_gen_toks = 24;
  gen[1].context = "Lily and her mom";
  gen[1].until = {"\n\n", "mom"};
  gen[1].max_gen_toks = 16;
  const auto gw = local.generate_until(gen);
  const auto gg = remote->generate_until(gen);
  ASSERT_EQ(gg.size(), 2u);
  EXPECT_FALSE(gw[0].empty());
  EXPECT_EQ(gg[0], gw[0]);
  EXPECT_EQ(gg[1], gw[1]);

  // A wrong model name is reported with the server's message.
  serve::EndpointOptions bad = eo;
  bad.model = "other";
  try {
    serve::make_endpoint_model(bad)->loglikelihood({reqs[0]});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("other"), std::string::npos) << e.what();
  }
  EXPECT_EQ(server.stop(), 0);
}

// A minimal HTTP server (one connection at a time) that answers every request with a fixed
// completions body without log-probabilities, like a server that ignores echo / logprobs.
class FixedAnswerServer {
 public:
  explicit FixedAnswerServer(std::string body) : body_(std::move(body)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd_, 4) != 0) return;
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FixedAnswerServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }

 private:
  void serve() {
    for (;;) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      // Read the headers and the body announced by Content-Length, then answer and close.
      std::string in;
      char buf[4096];
      size_t need = std::string::npos;
      while (need == std::string::npos || in.size() < need) {
        const ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
        const size_t hdr = in.find("\r\n\r\n");
        if (hdr != std::string::npos && need == std::string::npos) {
          size_t cl = 0;
          const size_t p = in.find("Content-Length: ");
          if (p != std::string::npos && p < hdr) cl = std::stoul(in.substr(p + 16));
          need = hdr + 4 + cl;
        }
      }
      const std::string out = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                              std::to_string(body_.size()) + "\r\nConnection: close\r\n\r\n" + body_;
      (void)!write(c, out.data(), out.size());
      close(c);
    }
  }
  std::string body_;
  int fd_ = -1, port_ = 0;
  std::thread thread_;
};

TEST(EndpointModel, ServerWithoutPromptLogprobsGetsAClearError) {
  FixedAnswerServer fake(R"({"id":"x","object":"text_completion","choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"length"}]})");
  ASSERT_NE(fake.port(), 0);
  serve::EndpointOptions eo;
  eo.base_url = "http://127.0.0.1:" + std::to_string(fake.port());
  eo.model = "m";
  eo.max_retries = 0;
  auto m = serve::make_endpoint_model(eo);
  try {
    m->loglikelihood({ll("Once upon a time", " there")});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("server does not return prompt log-probabilities (echo+logprobs unsupported)"),
              std::string::npos)
        << e.what();
  }
  // generate_until only needs the text.
  EXPECT_EQ(m->generate_until({[] {
              Request r;
              r.type = RequestType::generate_until;
              r.context = "x";
              return r;
            }()}),
            std::vector<std::string>{""});
}

TEST(EndpointModel, OptionsAreChecked) {
  serve::EndpointOptions eo;
  eo.base_url = "ftp://example";
  eo.model = "m";
  EXPECT_THROW(serve::make_endpoint_model(eo), Error);
  eo.base_url = "http://127.0.0.1:1/v1";
  eo.api_key_env = "QEVAL_TEST_UNSET_VARIABLE";
  EXPECT_THROW(serve::make_endpoint_model(eo), Error);
  eo.api_key_env.clear();
  eo.max_retries = 0;
  auto m = serve::make_endpoint_model(eo);  // nothing listens on port 1
  EXPECT_THROW(m->loglikelihood({ll("a", " b")}), Error);
}

}  // namespace
}  // namespace qeval
