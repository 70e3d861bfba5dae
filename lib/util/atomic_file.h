// A file written under a temporary name in the target folder and renamed into place on commit(),
// so readers never see a half-written output and a failure leaves nothing behind.
#pragma once
#include <cstddef>
#include <string>

namespace ptq {

class AtomicFile {
 public:
  // Creates the temporary file; throws Error(kOutput) naming `path` when the folder is missing or
  // not writable.
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // removes the temporary file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  int fd() const { return fd_; }
  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  // Flushes, closes and renames onto the final path.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes a whole file atomically.
void writeFileAtomically(const std::string& path, const std::string& contents);
// True when both paths name the same existing file (same device and inode).
bool sameFile(const std::string& a, const std::string& b);

}  // namespace ptq
