#pragma once
// Escaping for the report formats: every string from a model, plan or data set goes through
// one of these before it reaches a file.
#include <cctype>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace qeval::report {

// HTML text and attribute values: & < > " ' as character references.
std::string html_escape(std::string_view s);
// JSON to embed inside <script type="application/json">: '<', '>', '&', U+2028 and U+2029 as
// \uXXXX escapes, so no "</script>" or "<!--" can appear; invalid UTF-8 is replaced.
std::string json_for_script(const nlohmann::json& j);
// A JavaScript library inlined in <script>: "</script" and "<!--" cannot end or disturb the
// element (written as "<\/script" and "<\!--", which mean the same inside JS strings and regexes).
std::string js_for_script(std::string_view js);
// Markdown table cell: '|' escaped, newlines as spaces, HTML-significant characters escaped
// (renderers of pull requests accept inline HTML).
std::string markdown_cell(std::string_view s);

}  // namespace qeval::report
