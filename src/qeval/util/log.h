#pragma once
// Minimal diagnostics to stderr: warnings are always shown, info only when verbose.
#include <string_view>

namespace qeval {

void warn(std::string_view message);   // "qeval: warning: <message>"
void info(std::string_view message);   // printed only when set_verbose(true)
void set_verbose(bool on);
bool verbose();

}  // namespace qeval
