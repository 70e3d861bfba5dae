#include "lib/util/file_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <mutex>

namespace ptq::util {
namespace {

struct Registry {
  std::mutex mu;
  std::map<uintptr_t, size_t> mappings;  // base -> size
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void registerFileMapping(const void* base, size_t size) {
  if (!base || size == 0) return;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.mappings[reinterpret_cast<uintptr_t>(base)] = size;
}

void unregisterFileMapping(const void* base) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.mappings.erase(reinterpret_cast<uintptr_t>(base));
}

size_t releaseFilePages(const void* p, size_t n) {
  if (!p || n == 0) return 0;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + n;
  if (end < begin) return 0;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);  // held across madvise: the mapping cannot be unmapped meanwhile
  auto it = r.mappings.upper_bound(begin);
  if (it == r.mappings.begin()) return 0;
  --it;
  if (end > it->first + it->second) return 0;  // not inside one registered mapping
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (last <= first) return 0;
  if (::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) != 0) return 0;
  return last - first;
}

void prefaultFilePages(const void* p, size_t n) {
#ifndef MADV_POPULATE_READ
  constexpr int MADV_POPULATE_READ = 22;  // Linux 5.14; older headers lack the name
#endif
  if (!p || n == 0) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + n;
  if (end < begin) return;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);  // as in releaseFilePages: the mapping stays while advised
  auto it = r.mappings.upper_bound(begin);
  if (it == r.mappings.begin()) return;
  --it;
  if (end > it->first + it->second) return;
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = begin / page * page;
  (void)::madvise(reinterpret_cast<void*>(first), end - first, MADV_POPULATE_READ);  // a hint: errors ignored
}

std::shared_ptr<const void> mapFileReadOnly(int fd, size_t size) {
  if (size == 0) return nullptr;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return nullptr;
  registerFileMapping(p, size);
  return std::shared_ptr<const void>(p, [size](const void* q) {
    unregisterFileMapping(q);
    ::munmap(const_cast<void*>(q), size);
  });
}

}  // namespace ptq::util
