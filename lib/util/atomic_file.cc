#include "lib/util/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "lib/util/error.h"

namespace ptq {

namespace {

struct Split {
  std::string dir, base;
};

Split splitPath(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

std::string tempPrefix(const std::string& base) { return "." + base + ".ptq-tmp."; }

// A process with this id exists (EPERM: it exists but belongs to someone else).
bool processAlive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

void syncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // best effort: the rename is already visible; this makes it durable
  ::close(fd);
}

}  // namespace

std::vector<std::string> removeStaleTemporaries(const std::string& path) {
  std::vector<std::string> removed;
  const Split sp = splitPath(path);
  const std::string prefix = tempPrefix(sp.base);
  DIR* d = ::opendir(sp.dir.c_str());
  if (!d) return removed;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    if (end == name.c_str() + prefix.size() || *end != '.') continue;  // not one of ours
    if (processAlive(pid)) continue;
    const std::string full = sp.dir + "/" + name;
    if (::unlink(full.c_str()) == 0) removed.push_back(full);
  }
  ::closedir(d);
  return removed;
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  const Split sp = splitPath(path_);
  if (sp.base.empty()) throwOutput(path_ + ": output path names a folder, not a file");
  struct stat st {};
  if (::stat(sp.dir.c_str(), &st) != 0) throwOutput(path_ + ": output folder '" + sp.dir + "' does not exist");
  if (::stat(path_.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) throwOutput(path_ + ": output path is a folder");
  removeStaleTemporaries(path_);
  std::string templ = sp.dir + "/" + tempPrefix(sp.base) + std::to_string(::getpid()) + ".XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  if (fd_ < 0) throwOutput(path_ + ": cannot create output file in '" + sp.dir + "': " + std::strerror(errno));
  ::fchmod(fd_, 0644);
  tmp_ = buf.data();
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throwOutput(path_ + ": write failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::finish() {
  if (finished_) return;
  // ENOSPC/EDQUOT can surface only here on some file systems (delayed allocation, NFS).
  if (::fsync(fd_) != 0 && errno != EINVAL) throwOutput(path_ + ": fsync failed: " + std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) throwOutput(path_ + ": close failed: " + std::strerror(errno));
  finished_ = true;
}

void AtomicFile::commit() {
  finish();
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    throwOutput(path_ + ": cannot move the finished file into place: " + std::strerror(errno));
  committed_ = true;
  syncDir(splitPath(path_).dir);
}

void crashPoint(const char* point) {
  static const char* at = std::getenv("PTQ_TEST_CRASH_AT");
  if (at && std::strcmp(at, point) == 0) ::kill(::getpid(), SIGKILL);
}

void writeFileAtomically(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

bool sameFile(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace ptq
