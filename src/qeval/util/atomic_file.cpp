#include "qeval/util/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "qeval/util/error.h"

namespace qeval {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid());
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (f_ == nullptr) fail_file(path_, std::string("cannot create: ") + std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (f_ != nullptr) std::fclose(f_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  if (n == 0) return;
  if (std::fwrite(data, 1, n, f_) != n) fail_file(path_, std::string("write failed: ") + std::strerror(errno));
  offset_ += n;
}

void AtomicFile::pad_to(uint64_t offset) {
  if (offset < offset_) fail_file(path_, "internal error: padding backwards");
  static const std::vector<char> zeros(4096, 0);
  while (offset_ < offset) write(zeros.data(), static_cast<size_t>(std::min<uint64_t>(zeros.size(), offset - offset_)));
}

void AtomicFile::commit() {
  if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0) fail_file(path_, std::string("flush failed: ") + std::strerror(errno));
  std::fclose(f_);
  f_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) fail_file(path_, std::string("rename failed: ") + std::strerror(errno));
  committed_ = true;
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

}  // namespace qeval
