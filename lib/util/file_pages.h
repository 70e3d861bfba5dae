// Giving back the pages of read-only file mappings once their bytes have been used.
//
// A weight read from an external-data file is a view into a read-only private mapping of that file
// (formats/onnx). Its pages count towards the process's resident memory from the first read until the
// mapping goes away, so quantizing a model touched every float weight once and ended with the whole
// file resident. A page of such a mapping that was never written holds exactly the file's bytes, so the
// kernel may drop it at any time and read it back from the file on the next touch: releasing is always
// safe, for every view of those bytes and every thread, and costs only a re-read if they are used again.
#pragma once
#include <cstddef>
#include <memory>

namespace ptq::util {

// Declares [base, base + size) a read-only, private, file-backed mapping (PROT_READ, MAP_PRIVATE).
void registerFileMapping(const void* base, size_t size);
// Forgets the mapping starting at `base` (call it before munmap).
void unregisterFileMapping(const void* base);
// Drops the resident pages that lie wholly inside [p, p + n) when that range is part of a registered
// mapping; anything else (heap buffers, partial pages shared with a neighbour) is left alone. Returns
// the bytes given back (0 for memory that is not a registered mapping).
size_t releaseFilePages(const void* p, size_t n);

// Maps the pages of [p, p + n) in one call (madvise MADV_POPULATE_READ) when that range is part of a
// registered mapping, before a scan reads all of it: touching them one by one costs a page fault per
// 64 KB (fault-around), which in a virtual machine is most of a weight's scan time. No-op elsewhere,
// and on kernels before 5.14 (which lack it).
void prefaultFilePages(const void* p, size_t n);

// Asks for transparent huge pages (madvise MADV_HUGEPAGE) on the 2 MB-aligned part of [p, p + n), a
// fresh heap buffer of at least kHugePageAdviceMin bytes that is about to be written whole (quantized
// codes, packed weights): a 4 KB page fault costs about a microsecond in a virtual machine, and the
// first writes to such buffers were a fifth of quantizing a model. A hint: no-op where THP is off,
// errors ignored.
inline constexpr size_t kHugePageAdviceMin = size_t{4} << 20;
void adviseHugePages(void* p, size_t n);

// Maps `size` bytes of the open file `fd` read-only and private, registered as above; the mapping is
// unregistered and unmapped when the last copy of the returned pointer goes. Null when mmap fails
// (errno says why); `fd` may be closed afterwards either way.
std::shared_ptr<const void> mapFileReadOnly(int fd, size_t size);

}  // namespace ptq::util
