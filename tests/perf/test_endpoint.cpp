// The endpoint client against in-test fake OpenAI-compatible servers (cpp-httplib on
// 127.0.0.1, a random port) with injected delays and failures.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include <unistd.h>

#include "qeval/perf/endpoint.h"
#include "qeval/util/error.h"

namespace qeval::perf {
namespace {

using namespace std::chrono_literals;

class FakeServer {
 public:
  explicit FakeServer(const std::function<void(httplib::Server&)>& routes) {
    routes(server_);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    for (int i = 0; i < 2000 && !server_.is_running(); ++i) std::this_thread::sleep_for(1ms);
  }
  ~FakeServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

std::string chunk(const std::string& text, const char* finish = nullptr) {
  nlohmann::json j = {{"id", "cmpl-1"}, {"object", "text_completion"}, {"model", "fake"},
                      {"choices", {{{"index", 0}, {"text", text}, {"finish_reason", finish ? nlohmann::json(finish) : nlohmann::json()}}}}};
  return "data: " + j.dump() + "\n\n";
}

// Streams `tokens` text chunks: the first after `first_delay`, the rest `gap` apart, then a
// finish chunk with usage and [DONE].
void streaming_route(httplib::Server& s, std::chrono::milliseconds first_delay, std::chrono::milliseconds gap, int tokens,
                     std::atomic<int>* received = nullptr) {
  s.Post("/v1/completions", [=](const httplib::Request& req, httplib::Response& res) {
    if (received) ++*received;
    const auto body = nlohmann::json::parse(req.body);
    if (!body.value("stream", false) || body.value("model", "") != "fake" || !body.contains("max_tokens")) {
      res.status = 400;
      res.set_content(R"({"error":{"message":"bad request body","type":"invalid_request_error"}})", "application/json");
      return;
    }
    res.set_chunked_content_provider("text/event-stream", [=](size_t, httplib::DataSink& sink) {
      std::this_thread::sleep_for(first_delay);
      for (int i = 0; i < tokens; ++i) {
        if (i > 0) std::this_thread::sleep_for(gap);
        const std::string c = chunk(" w" + std::to_string(i));
        sink.write(c.data(), c.size());
      }
      std::string tail = chunk("", "length");
      tail += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":" + std::to_string(tokens) + "}}\n\n";
      tail += "data: [DONE]\n\n";
      sink.write(tail.data(), tail.size());
      sink.done();
      return true;
    });
  });
}

EndpointBenchConfig config_for(const std::string& url) {
  EndpointBenchConfig c;
  c.url = url;
  c.model = "fake";
  c.prompt_tokens = 16;
  c.gen_tokens = 8;
  c.requests = 3;
  c.duration_s = 30;
  c.request_timeout_s = 20;
  return c;
}

TEST(PerfSse, ParsesEventsAcrossFeedsAndLineEndings) {
  std::vector<std::string> events;
  SseParser p([&](const std::string& d) { events.push_back(d); });
  p.feed(": comment\r\ndata: {\"a\"");
  p.feed(":1}\r");
  p.feed("\n\r\nevent: x\ndata: line1\ndata:line2\n\ndata: [DONE]\n");
  p.feed("\n");
  p.feed("id: 3\n\n");  // no data: no event
  p.feed("data: tail");
  p.finish();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0], "{\"a\":1}");
  EXPECT_EQ(events[1], "line1\nline2");
  EXPECT_EQ(events[2], "[DONE]");
  EXPECT_EQ(events[3], "tail");
}

TEST(PerfEndpoint, MeasuresInjectedFirstTokenAndInterTokenDelays) {
  std::atomic<int> received{0};
  FakeServer server([&](httplib::Server& s) { streaming_route(s, 200ms, 60ms, 6, &received); });
  const RequestResult r = stream_completion(config_for(server.url()), "hello");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.chunks, 6);
  EXPECT_EQ(r.completion_tokens, 6);  // from usage
  EXPECT_EQ(r.prompt_tokens, 7);
  // Nothing can arrive before the injected delay; the upper bound allows a loaded machine.
  EXPECT_GE(r.ttft_s, 0.195);
  EXPECT_LT(r.ttft_s, 0.200 + 0.25);
  ASSERT_EQ(r.itl_s.size(), 5u);
  const Summary itl = summarize(r.itl_s);
  EXPECT_GE(itl.min, 0.055);
  EXPECT_LT(itl.p50, 0.060 + 0.05);
  EXPECT_GE(r.total_s, 0.2 + 5 * 0.06 - 0.01);
  EXPECT_EQ(received.load(), 1);
}

TEST(PerfEndpoint, LevelsAggregateAndRespectRequestCount) {
  std::atomic<int> received{0};
  FakeServer server([&](httplib::Server& s) { streaming_route(s, 30ms, 10ms, 4, &received); });
  EndpointBenchConfig c = config_for(server.url() + "/v1/");  // a base URL ending in /v1 is accepted
  c.concurrency = {1, 3};
  c.requests = 5;
  const EndpointResult r = run_endpoint_bench(c);
  ASSERT_EQ(r.levels.size(), 2u);
  for (const EndpointLevel& l : r.levels) {
    EXPECT_EQ(l.started, 5);
    EXPECT_EQ(l.succeeded, 5);
    EXPECT_EQ(l.failed, 0);
    EXPECT_FALSE(l.stopped_by_duration);
    EXPECT_EQ(l.completion_tokens, 20);
    EXPECT_EQ(l.ttft_seconds.n, 5);
    EXPECT_GE(l.ttft_seconds.min, 0.028);
    EXPECT_EQ(l.itl_seconds.n, 15);
    EXPECT_GT(l.aggregate_tokens_per_second, 0.0);
    EXPECT_GT(l.request_tokens_per_second.median, 0.0);
  }
  EXPECT_EQ(received.load(), 10);
  // Three clients overlap: the level takes clearly less than five sequential requests.
  EXPECT_LT(r.levels[1].wall_seconds, r.levels[0].wall_seconds);
  const nlohmann::json j = r.to_json();
  EXPECT_EQ(j["levels"][1]["concurrency"], 3);
  EXPECT_TRUE(j.contains("client_machine"));
  const std::string table = format_endpoint_table(r);
  EXPECT_NE(table.find("| 3 | 5 / 0 |"), std::string::npos) << table;
}

TEST(PerfEndpoint, DurationBoundsTheLevel) {
  std::atomic<int> received{0};
  FakeServer server([&](httplib::Server& s) { streaming_route(s, 150ms, 10ms, 2, &received); });
  EndpointBenchConfig c = config_for(server.url());
  c.requests = 1000;
  c.duration_s = 0.4;
  const auto t0 = std::chrono::steady_clock::now();
  const EndpointResult r = run_endpoint_bench(c);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.levels.size(), 1u);
  EXPECT_TRUE(r.levels[0].stopped_by_duration);
  EXPECT_GE(r.levels[0].started, 1);
  EXPECT_LE(r.levels[0].started, 4);  // ~0.17 s each within 0.4 s, the last one finishing
  EXPECT_LT(took, 2.0);
}

TEST(PerfEndpoint, ServerErrorsAreCountedWithTheirMessage) {
  FakeServer server([](httplib::Server& s) {
    s.Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.status = 500;
      res.set_content(R"({"error":{"message":"model exploded","type":"server_error"}})", "application/json");
    });
  });
  EndpointBenchConfig c = config_for(server.url());
  c.requests = 4;
  const EndpointResult r = run_endpoint_bench(c);
  const EndpointLevel& l = r.levels.at(0);
  EXPECT_EQ(l.succeeded, 0);
  EXPECT_EQ(l.failed, 4);
  EXPECT_EQ(l.errors.at("http_500"), 4);
  EXPECT_NE(l.first_error.at("http_500").find("model exploded"), std::string::npos);
  EXPECT_EQ(l.ttft_seconds.n, 0);
}

TEST(PerfEndpoint, MalformedStreamsAreErrors) {
  FakeServer server([](httplib::Server& s) {
    s.Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("data: {not json\n\n", "text/event-stream");
    });
    s.Post("/cut/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(chunk(" a") + chunk(" b"), "text/event-stream");  // ends without finish or [DONE]
    });
  });
  RequestResult r = stream_completion(config_for(server.url()), "x");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_kind, "malformed_stream");
  EXPECT_NE(r.error.find("not JSON"), std::string::npos) << r.error;
  r = stream_completion(config_for(server.url() + "/cut"), "x");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_kind, "malformed_stream");
  EXPECT_NE(r.error.find("[DONE]"), std::string::npos) << r.error;
}

TEST(PerfEndpoint, BearerTokenIsSent) {
  FakeServer server([](httplib::Server& s) {
    s.Post("/v1/completions", [](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("Authorization") != "Bearer sekret") {
        res.status = 401;
        res.set_content(R"({"error":{"message":"missing token"}})", "application/json");
        return;
      }
      res.set_content(chunk(" ok", "stop") + "data: [DONE]\n\n", "text/event-stream");
    });
  });
  EndpointBenchConfig c = config_for(server.url());
  RequestResult r = stream_completion(c, "x");
  EXPECT_EQ(r.error_kind, "http_401");
  c.api_key = "sekret";
  r = stream_completion(c, "x");
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.completion_tokens, 1);  // no usage: counted from chunks
}

TEST(PerfEndpoint, ConnectionRefusedIsOneClearError) {
  EndpointBenchConfig c = config_for("http://127.0.0.1:1");
  try {
    run_endpoint_bench(c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot reach http://127.0.0.1:1"), std::string::npos) << e.what();
  }
}

TEST(PerfEndpoint, ValidatesConfiguration) {
  EndpointBenchConfig c = config_for("ftp://x");
  EXPECT_THROW(c.validate(), Error);
  c = config_for("http://127.0.0.1:9");
  c.model.clear();
  EXPECT_THROW(c.validate(), Error);
  c = config_for("http://127.0.0.1:9");
  c.requests = 0;
  EXPECT_THROW(c.validate(), Error);
  c = config_for("http://127.0.0.1:9");
  c.pid = 999999999;
  EXPECT_THROW(c.validate(), Error);
}

TEST(PerfEndpoint, SamplesTheServerProcess) {
  FakeServer server([](httplib::Server& s) { streaming_route(s, 20ms, 5ms, 3); });
  EndpointBenchConfig c = config_for(server.url());
  c.pid = static_cast<int>(getpid());  // the fake server lives in this process
  c.requests = 2;
  const EndpointResult r = run_endpoint_bench(c);
  ASSERT_TRUE(r.levels.at(0).server.has_value());
  EXPECT_GT(r.levels[0].server->rss_peak_bytes, 0);
  EXPECT_GT(r.levels[0].server->wall_seconds, 0.0);
  EXPECT_TRUE(r.to_json()["levels"][0].contains("server"));
}

}  // namespace
}  // namespace qeval::perf
