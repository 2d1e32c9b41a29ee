#include "qeval/report/escape.h"

namespace qeval::report {

std::string html_escape(std::string_view s) {
  std::string o;
  o.reserve(s.size() + s.size() / 8);
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string json_for_script(const nlohmann::json& j) {
  const std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string o;
  o.reserve(s.size() + 64);
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '<')
      o += "\\u003c";
    else if (c == '>')
      o += "\\u003e";
    else if (c == '&')
      o += "\\u0026";
    else if (static_cast<unsigned char>(c) == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
             (static_cast<unsigned char>(s[i + 2]) == 0xA8 || static_cast<unsigned char>(s[i + 2]) == 0xA9)) {
      o += static_cast<unsigned char>(s[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029";  // JS line terminators
      i += 2;
    } else
      o += c;
  }
  return o;
}

std::string js_for_script(std::string_view js) {
  std::string o;
  o.reserve(js.size());
  for (size_t i = 0; i < js.size(); ++i) {
    if (js[i] == '<' && i + 1 < js.size()) {
      const std::string_view rest = js.substr(i + 1);
      auto starts_ci = [&](std::string_view p) {
        if (rest.size() < p.size()) return false;
        for (size_t k = 0; k < p.size(); ++k)
          if (std::tolower(static_cast<unsigned char>(rest[k])) != p[k]) return false;
        return true;
      };
      if (starts_ci("/script")) {
        o += "<\\/";
        ++i;  // skip '/'
        continue;
      }
      if (starts_ci("!--")) {
        o += "<\\!";
        ++i;
        continue;
      }
    }
    o += js[i];
  }
  return o;
}

std::string markdown_cell(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (c == '|')
      o += "\\|";
    else if (c == '\n' || c == '\r')
      o += ' ';
    else if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else
      o += c;
  }
  return o;
}

}  // namespace qeval::report
