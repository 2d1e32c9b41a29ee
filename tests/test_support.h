#pragma once
// Shared helpers for tests: where the real assets in ../shared are, and a temp directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <cstdint>
#include <string>
#include <vector>

namespace qeval::test {

// $QEVAL_SHARED, else the build's default (the folder beside the checkout).
std::filesystem::path shared_dir();
// Path inside shared/; the test is skipped with a clear message when it is absent.
std::filesystem::path shared_path(const std::string& relative);
bool have_shared(const std::string& relative);

// A fresh directory removed at the end of the test.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::string read_text(const std::filesystem::path& p);
void write_bytes(const std::filesystem::path& p, const std::string& bytes);
// n standard-normal floats from std::mt19937(seed).
std::vector<float> random_normal(size_t n, uint32_t seed);

}  // namespace qeval::test

// Skips the current test unless the shared asset exists.
#define QEVAL_REQUIRE_SHARED(rel)                                                              \
  do {                                                                                         \
    if (!::qeval::test::have_shared(rel))                                                      \
      GTEST_SKIP() << "shared asset '" << (rel) << "' not found under "                        \
                   << ::qeval::test::shared_dir() << " (set QEVAL_SHARED to the shared/ folder)"; \
  } while (0)
