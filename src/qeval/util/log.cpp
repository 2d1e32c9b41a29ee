#include "qeval/util/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace qeval {
namespace {
std::atomic<bool> g_verbose{false};
std::mutex g_mutex;
}  // namespace

void warn(std::string_view message) {
  std::lock_guard lock(g_mutex);
  std::fprintf(stderr, "qeval: warning: %.*s\n", static_cast<int>(message.size()), message.data());
}

void info(std::string_view message) {
  if (!g_verbose) return;
  std::lock_guard lock(g_mutex);
  std::fprintf(stderr, "qeval: %.*s\n", static_cast<int>(message.size()), message.data());
}

void set_verbose(bool on) { g_verbose = on; }
bool verbose() { return g_verbose; }

}  // namespace qeval
