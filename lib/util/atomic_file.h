// A file written under a temporary name in the target folder and renamed into place on commit(),
// so readers never see a half-written output and a failure leaves nothing behind.
//
// Temporary names are ".<name>.ptq-tmp.<pid>.<random>" beside the target. A process killed with
// SIGKILL cannot remove its temporary file, so every AtomicFile first removes the temporaries of the
// same target whose writing process no longer exists (the next run cleans up after a killed one;
// concurrent writers of the same path leave each other's files alone).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

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
  // Throws Error(kOutput) naming the final path on any failure (ENOSPC, EFBIG, EIO, ...).
  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  // Flushes, closes and renames onto the final path.
  void commit();
  // Flushes and closes without renaming (for a caller that commits several files in an order of its
  // own); commit() afterwards only renames.
  void finish();
  const std::string& path() const { return path_; }
  const std::string& tempPath() const { return tmp_; }

 private:
  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  bool finished_ = false;
  bool committed_ = false;
};

// Writes a whole file atomically.
void writeFileAtomically(const std::string& path, const std::string& contents);
// True when both paths name the same existing file (same device and inode).
bool sameFile(const std::string& a, const std::string& b);
// Fault injection for the crash tests: when the environment variable PTQ_TEST_CRASH_AT equals
// `point`, the process kills itself with SIGKILL right there (as `kill -9` would). A no-op otherwise.
void crashPoint(const char* point);
// Temporary files of `path` (see AtomicFile) left by processes that no longer run; removes them and
// returns their names. Called by every AtomicFile; exposed for tests.
std::vector<std::string> removeStaleTemporaries(const std::string& path);

}  // namespace ptq
