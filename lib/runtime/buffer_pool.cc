#include "lib/runtime/buffer_pool.h"

#include <cstdlib>
#include <new>

namespace ptq::runtime {

namespace {
constexpr size_t kAlign = 64;

std::shared_ptr<uint8_t> newBuffer(size_t cap) {
  size_t rounded = (cap + kAlign - 1) / kAlign * kAlign;
  if (rounded == 0) rounded = kAlign;
  void* p = std::aligned_alloc(kAlign, rounded);
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}
}  // namespace

ir::Tensor BufferPool::alloc(ir::DType dtype, ir::Shape shape) {
  const size_t need = ir::dtypeStorageBytes(dtype, ir::shapeNumel(shape));
  // Best fit among free buffers, but never hand a huge buffer to a tiny tensor.
  Buf* best = nullptr;
  for (Buf& b : bufs_)
    if (b.mem.use_count() == 1 && b.cap >= need && b.cap <= 2 * need + 4096 && (!best || b.cap < best->cap))
      best = &b;
  if (!best) {
    bufs_.push_back(Buf{newBuffer(need), need});
    best = &bufs_.back();
  }
  ir::Tensor t = ir::Tensor::view(dtype, std::move(shape), best->mem.get(), need, best->mem);
  const size_t used = in_use_now();
  if (used > peak_in_use_) peak_in_use_ = used;
  return t;
}

bool BufferPool::reuse(ir::Tensor& donor, ir::DType dtype, const ir::Shape& shape, ir::Tensor* out) {
  if (donor.empty() || donor.dtype() == ir::DType::kString) return false;
  const size_t need = ir::dtypeStorageBytes(dtype, ir::shapeNumel(shape));
  for (Buf& b : bufs_) {
    if (b.mem.get() != donor.data()) continue;
    // The pool's reference + the donor's: nothing else can observe the buffer.
    if (b.mem.use_count() != 2 || b.cap < need) return false;
    donor = ir::Tensor();
    *out = ir::Tensor::view(dtype, shape, b.mem.get(), need, b.mem);
    return true;
  }
  return false;
}

size_t BufferPool::in_use_now() const {
  size_t n = 0;
  for (const Buf& b : bufs_)
    if (b.mem.use_count() > 1) n += b.cap;
  return n;
}

void BufferPool::endRun() {
  std::vector<Buf> keep;
  keep.reserve(bufs_.size());
  for (Buf& b : bufs_)
    if (b.mem.use_count() == 1) keep.push_back(std::move(b));
  bufs_ = std::move(keep);
}

size_t BufferPool::bytesHeld() const {
  size_t n = 0;
  for (const Buf& b : bufs_) n += b.cap;
  return n;
}

}  // namespace ptq::runtime
