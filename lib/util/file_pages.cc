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

namespace {

// Runs advise(first page, end) with the registry locked when [p, p + n) lies inside one registered
// mapping (the lock keeps it from being unmapped meanwhile); false, and nothing done, otherwise.
template <class Advise>
bool withinMapping(const void* p, size_t n, Advise&& advise) {
  if (!p || n == 0) return false;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + n;
  if (end < begin) return false;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.mappings.upper_bound(begin);
  if (it == r.mappings.begin()) return false;
  --it;
  if (end > it->first + it->second) return false;  // not inside one registered mapping
  advise(begin, end);
  return true;
}

uintptr_t pageSize() {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

}  // namespace

size_t releaseFilePages(const void* p, size_t n) {
  size_t released = 0;
  withinMapping(p, n, [&](uintptr_t begin, uintptr_t end) {
    // Only pages wholly inside the range: a partial page may hold a neighbour's bytes.
    const uintptr_t first = (begin + pageSize() - 1) / pageSize() * pageSize(), last = end / pageSize() * pageSize();
    if (last > first && ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) == 0) released = last - first;
  });
  return released;
}

void prefaultFilePages(const void* p, size_t n) {
#ifndef MADV_POPULATE_READ
  constexpr int MADV_POPULATE_READ = 22;  // Linux 5.14; older headers lack the name
#endif
  withinMapping(p, n, [](uintptr_t begin, uintptr_t end) {
    const uintptr_t first = begin / pageSize() * pageSize();
    (void)::madvise(reinterpret_cast<void*>(first), end - first, MADV_POPULATE_READ);  // a hint: errors ignored
  });
}

void adviseHugePages(void* p, size_t n) {
  if (n < kHugePageAdviceMin) return;
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) / kHuge * kHuge;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / kHuge * kHuge;
  if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
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
