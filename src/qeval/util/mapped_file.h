#pragma once
// Read-only memory mapping of a whole file. Tensors point into the mapping, so model weights
// are paged in by the OS only when a tensor is first read.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qeval {

class MappedFile {
 public:
  // Throws qeval::Error naming the path when the file cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  // The same interface over bytes held in memory (fuzzers, tests, generated files);
  // `label` stands for the path in error messages.
  static std::shared_ptr<const MappedFile> from_memory(std::string label, std::vector<uint8_t> bytes);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::vector<uint8_t> owned_;
};

}  // namespace qeval
