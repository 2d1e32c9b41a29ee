#pragma once
// SHA-256 (FIPS 180-4) of byte strings and files, for result provenance: a result names the
// exact model, task and dataset files it came from.
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace qeval::store {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<uint8_t, 32> digest();  // finalizes; the object must not be updated afterwards
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(std::string_view bytes);
// Streams the file; throws qeval::Error "<path>: cannot read" when it cannot be opened.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace qeval::store
