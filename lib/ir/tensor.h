// Tensor: dtype + shape + bytes. The bytes are either owned (a heap buffer) or a read-only view into
// a memory-mapped model or external-data file; both are reference counted, so copying a Tensor is cheap
// and shares the bytes. Mutation goes through mutableData(), which copies first when the bytes are shared
// or mapped (copy-on-write), so a pass never writes into another tensor or into a mapped file.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lib/ir/dtype.h"

namespace ptq::ir {

class AlignedCopy;  // tensor.cc: the aligned copy of an unaligned view

using Shape = std::vector<int64_t>;

int64_t shapeNumel(const Shape& s);
// The most elements a tensor read from a file may have: numel * 128 bits (complex128, the widest
// dtype) still fits int64, so byte counts computed from it cannot overflow.
inline constexpr int64_t kMaxTensorElements = INT64_MAX / 128;
// prod(s) when every dim is >= 0 and the product stays <= kMaxTensorElements; false otherwise
// (*numel untouched). Readers call it before trusting a shape from a file.
bool checkedNumel(const Shape& s, int64_t* numel);
std::string shapeToString(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled owned tensor.
  Tensor(DType dtype, Shape shape);
  // Owned copy of `bytes` (must be dtypeStorageBytes(dtype, numel) long).
  static Tensor fromBytes(DType dtype, Shape shape, const void* bytes, size_t nbytes);
  // Takes `bytes` over without copying (its size must be dtypeStorageBytes(dtype, numel)).
  static Tensor fromByteVector(DType dtype, Shape shape, std::vector<uint8_t>&& bytes);
  // Non-owning view kept alive by `keepalive` (e.g. an mmap of the model or its external data). The
  // bytes may lie at any address: raw data inside a protobuf file mostly is not aligned for its type,
  // and reading a float through a misaligned pointer is undefined. An unaligned view therefore hands
  // out an aligned copy from data(), made on first use and dropped again by releaseMemory(); bytes()
  // never copies.
  static Tensor view(DType dtype, Shape shape, const void* bytes, size_t nbytes, std::shared_ptr<const void> keepalive);
  static Tensor fromFloats(Shape shape, const std::vector<float>& v);
  static Tensor fromInt64s(Shape shape, const std::vector<int64_t>& v);
  static Tensor fromStrings(Shape shape, std::vector<std::string> v);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t numel() const { return shapeNumel(shape_); }
  size_t nbytes() const { return nbytes_; }
  bool empty() const { return dtype_ == DType::kUndefined; }
  bool isView() const { return is_view_; }

  // The elements, aligned for the dtype (see view()).
  const void* data() const { return lazy_ ? lazyData() : data_; }
  template <typename T> const T* data() const { return static_cast<const T*>(data()); }
  // The same bytes where they lie, possibly unaligned: for consumers that only copy or hash bytes
  // (writers), so that writing a weight never makes an aligned copy of it.
  const void* bytes() const { return data_; }
  // Done with the bytes for now: the pages of a view into a mapped file go back to the kernel, and an
  // unaligned view drops its aligned copy (data() makes it again when asked). Call it only when no
  // pointer that data() returned for this tensor is still in use (a pass finished with a weight):
  // that pointer would dangle.
  void releaseMemory() const;
  // Writable bytes; copies first when shared with another Tensor or a mapped file.
  void* mutableData();
  template <typename T> T* mutableData() { return static_cast<T*>(mutableData()); }

  const std::vector<std::string>& strings() const { return strings_; }

  // Same bytes, new shape (numel must match).
  Tensor reshaped(Shape shape) const;
  // Elements converted to float32 (float16/bfloat16/float64/integers/bool); throws for strings.
  std::vector<float> toFloats() const;
  // Elements converted to int64 (integer and bool types).
  std::vector<int64_t> toInt64s() const;
  // Bytewise equality of dtype, shape and contents.
  bool sameAs(const Tensor& o) const;

 private:
  const void* lazyData() const;

  DType dtype_ = DType::kUndefined;
  Shape shape_;
  std::shared_ptr<const void> owner_;  // keeps data_ alive
  const void* data_ = nullptr;
  size_t nbytes_ = 0;
  bool is_view_ = false;
  std::shared_ptr<AlignedCopy> lazy_;  // set for a view whose bytes are not aligned for the dtype
  std::vector<std::string> strings_;  // only for DType::kString
};

// Index of the first NaN or Inf of a float tensor (float32/16, bfloat16, float64) in row-major order;
// -1 when every value is finite or the tensor is not floating point. The pages of a view into a file
// mapping are given back as the scan passes them (file_pages.h).
int64_t firstNonFinite(const Tensor& t);
// "NaN", "+Inf" or "-Inf" for element `i` of a float tensor (what firstNonFinite found).
std::string describeNonFinite(const Tensor& t, int64_t i);
// Flat row-major index -> "[i0, i1, ...]" in `shape`.
std::string indexToString(const Shape& shape, int64_t flat);

// float16 / bfloat16 conversions (round-to-nearest-even).
float halfToFloat(uint16_t h);
uint16_t floatToHalf(float f);
float bfloat16ToFloat(uint16_t h);

}  // namespace ptq::ir
