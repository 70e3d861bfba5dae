// Flush-to-zero (FTZ) and denormals-are-zero (DAZ) for the executor.
//
// Intel cores take a microcode assist, ~100+ cycles, for every multiply that reads or makes a
// denormal float; AMD Zen does not. A Softmax row whose tail underflows to 1e-39 made the
// attention-times-V GEMM of the zoo's LLaMA-style LM run at 1.5 GFLOP/s instead of 100 on an
// AVX-512 Xeon core (the whole model 3.6x slower than with FTZ+DAZ). Flushing changes a result
// by less than FLT_MIN (1.2e-38) per operation; it is what TensorFlow's thread pools do by default
// and ONNX Runtime's session.set_denormal_as_zero. The flags are per thread: parallelFor hands the
// caller's flags to its workers so that every tile is computed the same way at any thread count.
#pragma once

#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace ptq {

#if defined(__SSE2__) || defined(_M_X64)
// MXCSR bit 15 is FTZ, bit 6 DAZ.
constexpr unsigned kDenormalBits = 0x8040u;
inline unsigned denormalFlags() { return _mm_getcsr() & kDenormalBits; }
inline void setDenormalFlags(unsigned flags) { _mm_setcsr((_mm_getcsr() & ~kDenormalBits) | (flags & kDenormalBits)); }
#elif defined(__aarch64__)
// FPCR bit 24 (FZ) flushes both inputs and results.
constexpr unsigned kDenormalBits = 1u << 24;
inline unsigned denormalFlags() { return static_cast<unsigned>(__builtin_aarch64_get_fpcr()) & kDenormalBits; }
inline void setDenormalFlags(unsigned flags) {
  __builtin_aarch64_set_fpcr((__builtin_aarch64_get_fpcr() & ~kDenormalBits) | (flags & kDenormalBits));
}
#else
constexpr unsigned kDenormalBits = 0u;
inline unsigned denormalFlags() { return 0; }
inline void setDenormalFlags(unsigned) {}
#endif

// Sets the calling thread's flags for its lifetime and restores them after (also on an exception).
class ScopedDenormalFlags {
 public:
  explicit ScopedDenormalFlags(unsigned flags) : saved_(denormalFlags()) {
    if (flags != saved_) setDenormalFlags(flags);
  }
  ~ScopedDenormalFlags() {
    if (denormalFlags() != saved_) setDenormalFlags(saved_);
  }
  ScopedDenormalFlags(const ScopedDenormalFlags&) = delete;
  ScopedDenormalFlags& operator=(const ScopedDenormalFlags&) = delete;

 private:
  unsigned saved_;
};

}  // namespace ptq
