#pragma once
// Errors the OpenAI-compatible server answers with: an HTTP status and OpenAI's error body
// {"error": {"message", "type", "param", "code"}}.
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace qeval::serve {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = {},
           std::string code = {})
      : std::runtime_error(message), status_(status), type_(std::move(type)), param_(std::move(param)),
        code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }  // empty: null
  const std::string& code() const { return code_; }    // empty: null

 private:
  int status_;
  std::string type_, param_, code_;
};

// 400 invalid_request_error naming the parameter.
[[noreturn]] inline void bad_param(const std::string& param, const std::string& message) {
  throw ApiError(400, param + ": " + message, "invalid_request_error", param, "invalid_value");
}

// The error body of an ApiError (param / code null when empty).
nlohmann::json error_body(const ApiError& e);

// JSON text that never throws on invalid UTF-8 (it is replaced by U+FFFD).
std::string dump_json(const nlohmann::json& j);
std::string dump_json(const nlohmann::ordered_json& j);

}  // namespace qeval::serve
