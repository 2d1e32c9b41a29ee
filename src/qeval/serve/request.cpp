#include "qeval/serve/request.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "qeval/serve/api_error.h"

namespace qeval::serve {

using nlohmann::json;

nlohmann::json error_body(const ApiError& e) {
  json err;
  err["message"] = e.what();
  err["type"] = e.type();
  err["param"] = e.param().empty() ? json(nullptr) : json(e.param());
  err["code"] = e.code().empty() ? json(nullptr) : json(e.code());
  return json{{"error", err}};
}

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
std::string dump_json(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

namespace {

// A present, non-null member, or nullptr.
const json* member(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<int64_t> get_int(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = member(body, name);
  if (!v) return std::nullopt;
  // 3.0 is accepted as an integer (JSON has one number type); 3.5 is not.
  int64_t x = 0;
  if (v->is_number_integer()) {
    x = v->get<int64_t>();
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) && std::floor(v->get<double>()) == v->get<double>() &&
             std::fabs(v->get<double>()) < 9e15) {
    x = static_cast<int64_t>(v->get<double>());
  } else {
    bad_param(name, "must be an integer");
  }
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    bad_param(name, "out of range");
  if (x < lo || x > hi)
    bad_param(name, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + std::to_string(x));
  return x;
}

std::optional<double> get_number(const json& body, const char* name, double lo, double hi, bool lo_open = false) {
  const json* v = member(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_param(name, "must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "must be in %s%g, %g], got %g", lo_open ? "(" : "[", lo, hi, x);
    bad_param(name, buf);
  }
  return x;
}

std::optional<bool> get_bool(const json& body, const char* name) {
  const json* v = member(body, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad_param(name, "must be true or false");
  return v->get<bool>();
}

std::string get_model(const json& body) {
  const json* v = member(body, "model");
  if (!v) return {};
  if (!v->is_string()) bad_param("model", "must be a string");
  return v->get<std::string>();
}

void require_object(const json& body) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object", "invalid_request_error");
}

SamplingParams parse_sampling(const json& body, bool chat) {
  SamplingParams s;
  if (chat) {
    s.max_tokens = -1;
    if (auto v = get_int(body, "max_completion_tokens", 1, std::numeric_limits<int32_t>::max())) s.max_tokens = *v;
    if (auto v = get_int(body, "max_tokens", 1, std::numeric_limits<int32_t>::max())) s.max_tokens = *v;
  } else {
    if (auto v = get_int(body, "max_tokens", 0, std::numeric_limits<int32_t>::max())) s.max_tokens = *v;
  }
  if (auto v = get_number(body, "temperature", 0.0, 2.0)) s.temperature = static_cast<float>(*v);
  if (auto v = get_number(body, "top_p", 0.0, 1.0, true)) s.top_p = static_cast<float>(*v);
  if (auto v = get_int(body, "top_k", 0, std::numeric_limits<int32_t>::max())) s.top_k = static_cast<int>(*v);
  if (const json* v = member(body, "seed")) {
    if (!v->is_number_integer()) bad_param("seed", "must be an integer");
    s.seed = v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
    s.seed_given = true;
  }
  if (const json* v = member(body, "stop")) {
    if (v->is_string()) {
      s.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > kMaxStopStrings) bad_param("stop", "at most " + std::to_string(kMaxStopStrings) + " stop strings");
      for (const auto& x : *v) {
        if (!x.is_string()) bad_param("stop", "must be a string or a list of strings");
        s.stop.push_back(x.get<std::string>());
      }
    } else {
      bad_param("stop", "must be a string or a list of strings");
    }
    for (const auto& x : s.stop)
      if (x.empty()) bad_param("stop", "stop strings must not be empty");
  }
  if (auto v = get_bool(body, "ignore_eos")) s.ignore_eos = *v;
  if (auto v = get_int(body, "n", 1, 1000); v && *v != 1) bad_param("n", "only n = 1 is supported");
  if (auto v = get_int(body, "best_of", 1, 1000); v && *v != 1) bad_param("best_of", "only best_of = 1 is supported");
  for (const char* p : {"presence_penalty", "frequency_penalty"})
    if (auto v = get_number(body, p, -2.0, 2.0); v && *v != 0.0) bad_param(p, "only 0 is supported");
  if (const json* v = member(body, "logit_bias")) {
    if (!v->is_object()) bad_param("logit_bias", "must be an object");
    if (!v->empty()) bad_param("logit_bias", "is not supported");
  }
  return s;
}

void parse_stream(const json& body, bool& stream, bool& include_usage) {
  if (auto v = get_bool(body, "stream")) stream = *v;
  if (const json* o = member(body, "stream_options")) {
    if (!o->is_object()) bad_param("stream_options", "must be an object");
    if (auto v = get_bool(*o, "include_usage")) include_usage = *v;
  }
}

std::vector<TokenId> token_list(const json& a, const char* what) {
  std::vector<TokenId> ids;
  ids.reserve(a.size());
  for (const auto& x : a) {
    if (!x.is_number_integer()) bad_param("prompt", std::string(what) + " must hold only integers");
    const int64_t id = x.get<int64_t>();
    if (id < 0 || id > std::numeric_limits<TokenId>::max()) bad_param("prompt", "token id " + std::to_string(id) + " out of range");
    ids.push_back(static_cast<TokenId>(id));
  }
  return ids;
}

}  // namespace

json parse_json_body(const std::string& body) {
  try {
    return json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("malformed JSON in the request body: ") + e.what(), "invalid_request_error", {},
                   "invalid_json");
  }
}

CompletionRequest parse_completion_request(const json& body) {
  require_object(body);
  CompletionRequest r;
  r.model = get_model(body);
  const json* p = member(body, "prompt");
  if (!p) bad_param("prompt", "is required");
  auto add_text = [&](const json& x) {
    Prompt q;
    q.text = x.get<std::string>();
    r.prompts.push_back(std::move(q));
  };
  if (p->is_string()) {
    add_text(*p);
  } else if (p->is_array() && !p->empty() && (*p)[0].is_number()) {
    r.prompts.push_back({{}, token_list(*p, "a token-id prompt"), true});
  } else if (p->is_array() && !p->empty()) {
    for (const auto& x : *p) {
      if (x.is_string()) add_text(x);
      else if (x.is_array()) r.prompts.push_back({{}, token_list(x, "a token-id prompt"), true});
      else bad_param("prompt", "must be a string, a list of strings, or a list of token ids");
    }
  } else {
    bad_param("prompt", "must be a non-empty string, list of strings, or list of token ids");
  }
  r.sampling = parse_sampling(body, false);
  if (auto v = get_int(body, "logprobs", 0, kMaxLogprobs)) r.logprobs = static_cast<int>(*v);
  if (auto v = get_bool(body, "echo")) r.echo = *v;
  if (const json* v = member(body, "suffix")) {
    if (!v->is_string()) bad_param("suffix", "must be a string");
    if (!v->get<std::string>().empty()) bad_param("suffix", "is not supported");
  }
  parse_stream(body, r.stream, r.include_usage);
  return r;
}

ChatRequest parse_chat_request(const json& body) {
  require_object(body);
  ChatRequest r;
  r.model = get_model(body);
  const json* m = member(body, "messages");
  if (!m || !m->is_array() || m->empty()) bad_param("messages", "must be a non-empty list of messages");
  for (size_t i = 0; i < m->size(); ++i) {
    const json& x = (*m)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!x.is_object()) bad_param(where, "must be an object with role and content");
    const json* role = member(x, "role");
    if (!role || !role->is_string()) bad_param(where + ".role", "must be a string");
    ChatMessage msg;
    msg.role = role->get<std::string>();
    if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for the system role
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      bad_param(where + ".role", "must be system, user or assistant, got '" + msg.role + "'");
    const json* content = member(x, "content");
    if (!content) bad_param(where + ".content", "is required");
    if (content->is_string()) {
      msg.content = content->get<std::string>();
    } else if (content->is_array()) {
      // Content parts: only text parts are understood.
      for (const auto& part : *content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
          bad_param(where + ".content", "only text content parts are supported");
        msg.content += part["text"].get<std::string>();
      }
    } else {
      bad_param(where + ".content", "must be a string or a list of text parts");
    }
    r.messages.push_back(std::move(msg));
  }
  r.sampling = parse_sampling(body, true);
  if (const json* lp = member(body, "logprobs"); lp && !(lp->is_boolean() && !lp->get<bool>()))
    bad_param("logprobs", "log-probabilities are not supported for chat completions (use /v1/completions)");
  parse_stream(body, r.stream, r.include_usage);
  return r;
}

}  // namespace qeval::serve
