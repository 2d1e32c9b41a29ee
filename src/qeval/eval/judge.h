#pragma once
// LLM-as-judge: a chat model reached through any OpenAI-compatible endpoint
// (POST <url>/chat/completions), and the parsing of MT-Bench style ratings ("[[7]]").
//
// The API key is read from an environment variable named by the caller, sent only in the
// Authorization header, and never printed, logged or stored (error messages name the variable,
// not its value). Each request has a connect timeout and a total timeout; network errors, HTTP
// 429 and 5xx are retried up to max_retries times with exponential backoff (retry_delay_s,
// doubled each time); any other HTTP error stops at once with the status and the endpoint's
// error message.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qeval::eval {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

struct ChatRequest {
  std::vector<ChatMessage> messages;
  int max_tokens = 1024;
};

// Answers chat requests (the judge). Results come back in the order of the requests.
class ChatModel {
 public:
  virtual ~ChatModel() = default;
  virtual std::vector<std::string> chat(const std::vector<ChatRequest>& requests) = 0;
  // Names the judge in results ("<model> at <url>"); never contains a key.
  virtual std::string describe() const = 0;
};

struct OpenAIChatOptions {
  std::string url;          // base URL ("http://host:8000/v1") or the full .../chat/completions
  std::string model;        // the judge model's name
  std::string api_key_env;  // environment variable holding the key; empty: no Authorization header
  double connect_timeout_s = 10;
  double timeout_s = 300;   // whole request
  int max_retries = 3;
  double retry_delay_s = 1;
  double temperature = 0;   // MT-Bench grades with temperature 0
};

class OpenAIChatClient : public ChatModel {
 public:
  // Throws qeval::Error when the URL is not http(s) or the key variable is named but unset.
  explicit OpenAIChatClient(OpenAIChatOptions options);
  std::vector<std::string> chat(const std::vector<ChatRequest>& requests) override;
  std::string describe() const override;
  // The endpoint actually posted to.
  const std::string& endpoint() const { return endpoint_; }

 private:
  std::string complete(const ChatRequest& request);
  OpenAIChatOptions opts_;
  std::string endpoint_;
  std::string key_;  // held in memory only
};

// The rating in a judge's answer: the first "[[x]]" (x a number), else the first "[x]", as
// MT-Bench's single-answer grading parses it; nullopt when there is none or it is outside
// [min, max].
std::optional<double> parse_judge_rating(std::string_view text, double min = 1, double max = 10);

}  // namespace qeval::eval
