// Pooled activation buffers. A buffer is free when the pool holds the only reference to it: a value
// that is still live, a tap callback that kept a copy of a Tensor, or an output handed to the caller
// all keep their buffer out of circulation, so reuse can never overwrite visible data.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "lib/ir/tensor.h"

namespace ptq::runtime {

class BufferPool {
 public:
  // Tensor viewing a free (or new) buffer of at least dtypeStorageBytes(dtype, numel) bytes.
  ir::Tensor alloc(ir::DType dtype, ir::Shape shape);
  // If `donor` views the start of a pool buffer that nothing but the pool and `donor` holds, and the
  // buffer is big enough, empties `donor` and returns a tensor on that buffer. Else returns false.
  bool reuse(ir::Tensor& donor, ir::DType dtype, const ir::Shape& shape, ir::Tensor* out);
  // Forgets buffers still referenced elsewhere (outputs given to the caller now own them) and frees
  // spare ones beyond what the last run needed. Called at the end of Session::run.
  void endRun();
  size_t bytesHeld() const;
  size_t peakBytesInUse() const { return peak_in_use_; }

 private:
  struct Buf {
    std::shared_ptr<uint8_t> mem;
    size_t cap = 0;
  };
  std::vector<Buf> bufs_;
  size_t peak_in_use_ = 0;
  size_t in_use_now() const;
};

}  // namespace ptq::runtime
