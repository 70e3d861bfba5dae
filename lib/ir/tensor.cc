#include "lib/ir/tensor.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <type_traits>

#include "lib/util/error.h"
#include "lib/util/file_pages.h"

namespace ptq::ir {

int64_t shapeNumel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

namespace {
// Element i of a tensor's bytes at any alignment (memcpy compiles to a plain load): the scans below
// read unaligned views in place instead of making their aligned copies.
template <typename T>
T loadAt(const Tensor& t, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const unsigned char*>(t.bytes()) + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return v;
}
}  // namespace

namespace {
// First element of [0, n) whose bits, masked, equal the mask (an all-ones exponent: Inf or NaN). Blocks
// of 256 are tested branch-free (the loop vectorizes over unaligned bytes) and only a block that holds
// one is searched element by element, so a scan of a finite weight runs at memory speed. A tensor viewed
// in a file mapping is scanned in chunks of 16 MB whose pages are mapped in one call before and given
// back after (file_pages.h), so a weight larger than memory is never resident whole.
template <typename U>
int64_t firstAllOnes(const Tensor& t, int64_t n, U mask) {
  constexpr int64_t kBlock = 256;
  constexpr int64_t kChunk = (int64_t{16} << 20) / static_cast<int64_t>(sizeof(U)) / kBlock * kBlock;
  const auto* bytes = static_cast<const unsigned char*>(t.bytes());
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = n - c0 < kChunk ? n : c0 + kChunk;
    const unsigned char* p = bytes + c0 * static_cast<int64_t>(sizeof(U));
    const auto size = static_cast<size_t>(c1 - c0) * sizeof(U);
    util::prefaultFilePages(p, size);
    for (int64_t b = c0; b < c1; b += kBlock) {
      const int64_t m = c1 - b < kBlock ? c1 - b : kBlock;
      unsigned bad = 0;
      for (int64_t i = 0; i < m; ++i) bad |= (loadAt<U>(t, b + i) & mask) == mask;
      if (!bad) continue;
      for (int64_t i = 0; i < m; ++i)
        if ((loadAt<U>(t, b + i) & mask) == mask) return b + i;
    }
    util::releaseFilePages(p, size);
  }
  return -1;
}
}  // namespace

int64_t firstNonFinite(const Tensor& t) {
  const int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::kFloat32: return firstAllOnes<uint32_t>(t, n, 0x7f800000u);
    case DType::kFloat64: return firstAllOnes<uint64_t>(t, n, 0x7ff0000000000000ull);
    case DType::kFloat16: return firstAllOnes<uint16_t>(t, n, 0x7c00);
    case DType::kBFloat16: return firstAllOnes<uint16_t>(t, n, 0x7f80);
    default: return -1;
  }
}

std::string describeNonFinite(const Tensor& t, int64_t i) {
  double v = 0;
  if (t.dtype() == DType::kFloat32) v = loadAt<float>(t, i);
  else if (t.dtype() == DType::kFloat64) v = loadAt<double>(t, i);
  else if (t.dtype() == DType::kFloat16) v = halfToFloat(loadAt<uint16_t>(t, i));
  else if (t.dtype() == DType::kBFloat16) v = bfloat16ToFloat(loadAt<uint16_t>(t, i));
  return std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf");
}

std::string indexToString(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.size(), 0);
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] > 0) {
      idx[d] = flat % shape[d];
      flat /= shape[d];
    }
  }
  return shapeToString(idx);
}

bool checkedNumel(const Shape& s, int64_t* numel) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) return false;
    if (d != 0 && n > kMaxTensorElements / d) {
      // A zero dim later still makes the product 0, but such a shape is refused as well: the
      // reader would have to trust the other dims.
      return false;
    }
    n *= d;
  }
  *numel = n;
  return true;
}

std::string shapeToString(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

namespace {
std::shared_ptr<uint8_t> allocBytes(size_t n) {
  // Zero bytes; at least one so data() is never null for empty tensors. Large buffers get huge pages
  // before the zeroing touches them (util::adviseHugePages).
  std::shared_ptr<uint8_t> buf(new uint8_t[n ? n : 1], std::default_delete<uint8_t[]>());
  util::adviseHugePages(buf.get(), n);
  std::memset(buf.get(), 0, n ? n : 1);
  return buf;
}
}  // namespace

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  if (dtype_ == DType::kString) {
    strings_.resize(static_cast<size_t>(numel()));
    return;
  }
  nbytes_ = dtypeStorageBytes(dtype_, numel());
  auto buf = allocBytes(nbytes_);
  data_ = buf.get();
  owner_ = std::move(buf);
}

Tensor Tensor::fromBytes(DType dtype, Shape shape, const void* bytes, size_t nbytes) {
  Tensor t(dtype, std::move(shape));
  if (nbytes != t.nbytes_)
    throwInternal("Tensor::fromBytes: " + std::to_string(nbytes) + " bytes for " + dtypeName(dtype) +
                  shapeToString(t.shape_) + " which needs " + std::to_string(t.nbytes_));
  if (nbytes) std::memcpy(const_cast<void*>(t.data_), bytes, nbytes);
  return t;
}

Tensor Tensor::fromByteVector(DType dtype, Shape shape, std::vector<uint8_t>&& bytes) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.nbytes_ = dtypeStorageBytes(dtype, shapeNumel(t.shape_));
  if (bytes.size() != t.nbytes_)
    throwInternal("Tensor::fromByteVector: " + std::to_string(bytes.size()) + " bytes for " + dtypeName(dtype) +
                  shapeToString(t.shape_) + " which needs " + std::to_string(t.nbytes_));
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  t.data_ = owned->data();
  t.owner_ = std::shared_ptr<const void>(owned, owned->data());  // sole owner: mutableData writes in place
  return t;
}

// The aligned copy of an unaligned view, shared by every Tensor that shares the view. Made under the
// lock on first use; `ptr` lets later readers skip the lock.
class AlignedCopy {
 public:
  std::mutex mu;
  std::atomic<const void*> ptr{nullptr};
  std::shared_ptr<uint8_t> buf;
};

namespace {
// The alignment a typed read of one element needs (complex types are read as pairs of their parts).
size_t elementAlignment(DType dtype) {
  const int bits = dtypeBits(dtype);
  size_t a = bits >= 8 ? static_cast<size_t>(bits / 8) : 1;
  if (dtype == DType::kComplex64 || dtype == DType::kComplex128) a /= 2;
  return a > 8 ? 8 : a;
}
}  // namespace

Tensor Tensor::view(DType dtype, Shape shape, const void* bytes, size_t nbytes, std::shared_ptr<const void> keepalive) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.nbytes_ = nbytes;
  t.data_ = bytes;
  t.owner_ = std::move(keepalive);
  t.is_view_ = true;
  if (reinterpret_cast<uintptr_t>(bytes) % elementAlignment(dtype) != 0) t.lazy_ = std::make_shared<AlignedCopy>();
  return t;
}

const void* Tensor::lazyData() const {
  if (const void* p = lazy_->ptr.load(std::memory_order_acquire)) return p;
  std::lock_guard<std::mutex> lock(lazy_->mu);
  if (!lazy_->buf) {
    auto buf = allocBytes(nbytes_);
    if (nbytes_) std::memcpy(buf.get(), data_, nbytes_);
    util::releaseFilePages(data_, nbytes_);  // the copy is what is read from now on
    lazy_->buf = std::move(buf);
    lazy_->ptr.store(lazy_->buf.get(), std::memory_order_release);
  }
  return lazy_->buf.get();
}

void Tensor::releaseMemory() const {
  if (lazy_) {
    std::lock_guard<std::mutex> lock(lazy_->mu);
    lazy_->ptr.store(nullptr, std::memory_order_release);
    lazy_->buf.reset();
  }
  if (is_view_) util::releaseFilePages(data_, nbytes_);
}

Tensor Tensor::fromFloats(Shape shape, const std::vector<float>& v) {
  return fromBytes(DType::kFloat32, std::move(shape), v.data(), v.size() * sizeof(float));
}

Tensor Tensor::fromInt64s(Shape shape, const std::vector<int64_t>& v) {
  return fromBytes(DType::kInt64, std::move(shape), v.data(), v.size() * sizeof(int64_t));
}

Tensor Tensor::fromStrings(Shape shape, std::vector<std::string> v) {
  Tensor t;
  t.dtype_ = DType::kString;
  t.shape_ = std::move(shape);
  t.strings_ = std::move(v);
  return t;
}

void* Tensor::mutableData() {
  if (dtype_ == DType::kString) throwInternal("mutableData() on a string tensor");
  if (is_view_ || owner_.use_count() > 1) {
    auto buf = allocBytes(nbytes_);
    if (nbytes_) std::memcpy(buf.get(), data_, nbytes_);  // memcpy: data_ may be unaligned
    data_ = buf.get();
    owner_ = std::move(buf);
    is_view_ = false;
    lazy_.reset();
  }
  return const_cast<void*>(data_);
}

Tensor Tensor::reshaped(Shape shape) const {
  if (shapeNumel(shape) != numel())
    throwInternal("reshape " + shapeToString(shape_) + " -> " + shapeToString(shape) + " changes the element count");
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

float halfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) { mant <<= 1; --exp; }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow to inf
  if (absx < 0x38800000u) {  // half subnormal (or zero): value / 2^-24, rounded to nearest even
    float a;
    std::memcpy(&a, &absx, 4);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(a * 16777216.0f)));
  }
  uint32_t h = ((absx - 0x38000000u) >> 13);
  const uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float bfloat16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

namespace {
template <typename Out, typename Fn>
std::vector<Out> convertAll(const Tensor& t, Fn&& fromDouble) {
  const int64_t n = t.numel();
  std::vector<Out> out(static_cast<size_t>(n));
  const void* p = t.data();
  for (int64_t i = 0; i < n; ++i) {
    double v = 0;
    switch (t.dtype()) {
      case DType::kFloat32: v = static_cast<const float*>(p)[i]; break;
      case DType::kFloat64: v = static_cast<const double*>(p)[i]; break;
      case DType::kFloat16: v = halfToFloat(static_cast<const uint16_t*>(p)[i]); break;
      case DType::kBFloat16: v = bfloat16ToFloat(static_cast<const uint16_t*>(p)[i]); break;
      case DType::kInt8: v = static_cast<const int8_t*>(p)[i]; break;
      case DType::kUInt8: case DType::kBool: v = static_cast<const uint8_t*>(p)[i]; break;
      case DType::kInt16: v = static_cast<const int16_t*>(p)[i]; break;
      case DType::kUInt16: v = static_cast<const uint16_t*>(p)[i]; break;
      case DType::kInt32: v = static_cast<const int32_t*>(p)[i]; break;
      case DType::kUInt32: v = static_cast<const uint32_t*>(p)[i]; break;
      case DType::kInt64: {
        // int64 -> int64 must not go through double.
        if constexpr (std::is_same_v<Out, int64_t>) { out[static_cast<size_t>(i)] = static_cast<const int64_t*>(p)[i]; continue; }
        v = static_cast<double>(static_cast<const int64_t*>(p)[i]);
        break;
      }
      case DType::kUInt64: v = static_cast<double>(static_cast<const uint64_t*>(p)[i]); break;
      case DType::kInt4: case DType::kUInt4: {
        const uint8_t byte = static_cast<const uint8_t*>(p)[i / 2];
        int nib = (i % 2) ? (byte >> 4) : (byte & 0xf);
        if (t.dtype() == DType::kInt4 && nib >= 8) nib -= 16;
        v = nib;
        break;
      }
      default:
        throwInternal("cannot convert a " + dtypeName(t.dtype()) + " tensor to numbers");
    }
    out[static_cast<size_t>(i)] = fromDouble(v);
  }
  return out;
}
}  // namespace

std::vector<float> Tensor::toFloats() const {
  if (dtype_ == DType::kFloat32) {
    const float* p = data<float>();
    return std::vector<float>(p, p + numel());
  }
  return convertAll<float>(*this, [](double v) { return static_cast<float>(v); });
}

std::vector<int64_t> Tensor::toInt64s() const {
  if (dtypeIsFloat(dtype_)) throwInternal("toInt64s() on a " + dtypeName(dtype_) + " tensor");
  return convertAll<int64_t>(*this, [](double v) { return static_cast<int64_t>(v); });
}

bool Tensor::sameAs(const Tensor& o) const {
  if (dtype_ != o.dtype_ || shape_ != o.shape_) return false;
  if (dtype_ == DType::kString) return strings_ == o.strings_;
  return nbytes_ == o.nbytes_ && (nbytes_ == 0 || std::memcmp(data_, o.data_, nbytes_) == 0);
}

}  // namespace ptq::ir
