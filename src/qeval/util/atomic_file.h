#pragma once
// Output files are written to "<path>.tmp.<pid>" and renamed into place on commit(), so a
// failure or a kill never leaves a half-written file under the final name.
#include <cstdio>
#include <string>
#include <string_view>

namespace qeval {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // removes the temporary file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void pad_to(uint64_t offset);  // zero bytes up to an absolute offset
  uint64_t offset() const { return offset_; }
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_path_;
  std::FILE* f_ = nullptr;
  uint64_t offset_ = 0;
  bool committed_ = false;
};

// Whole-file convenience wrapper.
void write_file_atomic(const std::string& path, std::string_view contents);

}  // namespace qeval
