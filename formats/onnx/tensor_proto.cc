#include "formats/onnx/tensor_proto.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "lib/util/error.h"
#include "lib/util/file_pages.h"

namespace ptq::onnx_io {

using ir::DType;

namespace {

// ONNX Runtime's rule for external data: a location is a relative path inside the model's folder.
// Refused: empty, absolute, any ".." component, a NUL byte; and (checked after resolving symlinks)
// anything whose real path lies outside the model's folder.
void checkLocation(const std::string& model_path, const std::string& tensor_name, const std::string& location) {
  auto refuse = [&](const std::string& why) {
    throwInput(model_path + ": tensor '" + tensor_name + "' has external data location '" + location + "', " + why);
  };
  if (location.empty()) refuse("which is empty");
  if (location.find('\0') != std::string::npos) refuse("which holds a NUL byte");
  if (location[0] == '/') refuse("which must be a path relative to the model's folder, not an absolute path");
  size_t start = 0;
  while (start <= location.size()) {
    const size_t slash = std::min(location.find('/', start), location.size());
    if (location.compare(start, slash - start, "..") == 0 && slash - start == 2)
      refuse("which leaves the model's folder ('..' is not allowed)");
    start = slash + 1;
  }
}

std::string realPath(const std::string& p) {
  char* r = ::realpath(p.c_str(), nullptr);
  if (!r) return "";
  std::string out(r);
  std::free(r);
  return out;
}

}  // namespace

const ExternalDataResolver::Mapping& ExternalDataResolver::open(const std::string& tensor_name,
                                                                const std::string& location) {
  auto it = files_.find(location);
  if (it != files_.end()) return it->second;
  if (forced_file_.empty()) checkLocation(model_path_, tensor_name, location);
  const std::string path = forced_file_.empty() ? model_dir_ + "/" + location : forced_file_;
  if (forced_file_.empty()) {
    // A symlink (the file itself or a folder on the way) may still point outside the folder.
    const std::string dir = realPath(model_dir_), real = realPath(path);
    if (!real.empty() && !dir.empty() && real.compare(0, dir.size() + 1, dir == "/" ? dir : dir + "/") != 0)
      throwInput(model_path_ + ": tensor '" + tensor_name + "' has external data location '" + location +
                 "', which resolves (through a symlink) to '" + real + "', outside the model's folder '" + dir + "'");
  }
  Mapping m;
  // O_NONBLOCK: a FIFO must not hang the reader (it is refused below as not a regular file).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    throwInput(model_path_ + ": external data file '" + path + "' of tensor '" + tensor_name +
               "' cannot be opened: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throwInput(model_path_ + ": external data file '" + path + "' of tensor '" + tensor_name + "' is not a regular file");
  }
  m.size = static_cast<size_t>(st.st_size);
  if (use_mmap_ && m.size > 0) {
    // Registered so that passes and the writer can give back the pages of weights they are done with.
    m.base = util::mapFileReadOnly(fd, m.size);
    const int err = errno;
    ::close(fd);
    if (!m.base) throwInput(path + ": mmap failed: " + std::strerror(err));
  } else {
    auto buf = std::shared_ptr<std::vector<char>>(new std::vector<char>(m.size));
    size_t got = 0;
    while (got < m.size) {
      const ssize_t r = ::read(fd, buf->data() + got, m.size - got);
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    ::close(fd);
    if (got != m.size) throwInput(path + ": short read");
    m.base = std::shared_ptr<const void>(buf, buf->data());
  }
  return files_.emplace(location, std::move(m)).first->second;
}

ir::Tensor ExternalDataResolver::read(const std::string& tensor_name, DType dtype, ir::Shape shape,
                                      const std::string& location, int64_t offset, int64_t length) {
  int64_t numel = 0;
  if (!ir::checkedNumel(shape, &numel))
    throwInput(model_path_ + ": tensor '" + tensor_name + "' has dims " + ir::shapeToString(shape) +
               " whose element count is negative or too large");
  const size_t expected = ir::dtypeStorageBytes(dtype, numel);
  const Mapping& m = open(tensor_name, location);
  if (offset < 0) throwInput(model_path_ + ": tensor '" + tensor_name + "' has a negative external data offset");
  if (static_cast<uint64_t>(offset) > UINT64_MAX - base_offset_ ||
      static_cast<uint64_t>(offset) + base_offset_ > m.size)
    throwInput(model_path_ + ": tensor '" + tensor_name + "' starts at offset " + std::to_string(offset) +
               " past the end of external data file '" + location + "' (" + std::to_string(m.size) + " bytes)");
  const size_t start = static_cast<size_t>(offset) + static_cast<size_t>(base_offset_);
  const size_t len = length < 0 ? m.size - start : static_cast<size_t>(length);
  if (len != expected)
    throwInput(model_path_ + ": tensor '" + tensor_name + "' has " + std::to_string(len) + " bytes of external data in '" +
               location + "' but its shape " + ir::shapeToString(shape) + " needs " + std::to_string(expected));
  if (len > m.size - start)
    throwInput(model_path_ + ": external data file '" + location + "' is truncated: tensor '" + tensor_name +
               "' needs bytes up to " + std::to_string(start) + " + " + std::to_string(len) + ", the file has " +
               std::to_string(m.size));
  const char* p = static_cast<const char*>(m.base.get()) + start;
  return ir::Tensor::view(dtype, std::move(shape), p, len, m.base);
}

namespace {

// The value count is checked before the tensor is allocated: the dims alone must never make the
// reader allocate more than the file holds.
template <typename Src, typename Dst>
ir::Tensor fromRepeated(DType dtype, ir::Shape shape, int64_t numel, const Src& field, const std::string& what,
                        size_t per_elem = 1) {
  const size_t n = static_cast<size_t>(numel) * per_elem;
  if (static_cast<size_t>(field.size()) != n)
    throwInput(what + " has " + std::to_string(field.size()) + " values for " + std::to_string(n) + " elements");
  ir::Tensor t(dtype, std::move(shape));
  Dst* out = static_cast<Dst*>(t.mutableData());
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<Dst>(field.Get(static_cast<int>(i)));
  return t;
}

}  // namespace

ir::Tensor tensorFromProto(onnx::TensorProto& proto, const std::string& what, ExternalDataResolver* resolver,
                           const RawDataView* raw) {
  if (!proto.has_data_type() || !ir::dtypeIsKnown(proto.data_type()))
    throwInput(what + " has unsupported data type " + std::to_string(proto.data_type()));
  const DType dtype = static_cast<DType>(proto.data_type());
  if (proto.has_segment()) throwInput(what + " is a segmented tensor, which is not supported");
  ir::Shape shape(proto.dims().begin(), proto.dims().end());
  for (int64_t d : shape)
    if (d < 0) throwInput(what + " has a negative dimension");
  int64_t numel = 0;
  if (!ir::checkedNumel(shape, &numel))
    throwInput(what + " has dims " + ir::shapeToString(shape) + " whose element count overflows");
  const size_t expected = ir::dtypeStorageBytes(dtype, numel);

  if (proto.data_location() == onnx::TensorProto::EXTERNAL) {
    if (!resolver) throwInput(what + " uses external data, which is not allowed here");
    std::string location;
    int64_t offset = 0, length = -1;
    auto number = [&](const std::string& key, const std::string& text) {
      int64_t v = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || end != text.data() + text.size() || v < 0)
        throwInput(what + ": external_data " + key + " '" + text + "' is not a non-negative integer");
      return v;
    };
    for (const auto& kv : proto.external_data()) {
      if (kv.key() == "location") location = kv.value();
      else if (kv.key() == "offset") offset = number("offset", kv.value());
      else if (kv.key() == "length") length = number("length", kv.value());
    }
    return resolver->read(proto.name(), dtype, std::move(shape), location, offset, length);
  }
  if (dtype == DType::kString) {
    std::vector<std::string> v(proto.string_data().begin(), proto.string_data().end());
    if (static_cast<int64_t>(v.size()) != numel)
      throwInput(what + " has " + std::to_string(v.size()) + " strings for shape " + ir::shapeToString(shape));
    return ir::Tensor::fromStrings(std::move(shape), std::move(v));
  }
  if (raw || proto.has_raw_data()) {
    // Zero copy either way: a view of the bytes left in the file's buffer, or the protobuf's string
    // taken over and kept alive with the tensor.
    RawDataView bytes;
    if (raw) {
      bytes = *raw;
    } else {
      auto owned = std::make_shared<std::string>(std::move(*proto.mutable_raw_data()));
      proto.clear_raw_data();
      bytes = {owned->data(), owned->size(), std::shared_ptr<const void>(owned, owned->data())};
    }
    if (bytes.size != expected)
      throwInput(what + " has " + std::to_string(bytes.size) + " bytes of raw data but " + ir::dtypeName(dtype) +
                 ir::shapeToString(shape) + " needs " + std::to_string(expected));
    return ir::Tensor::view(dtype, std::move(shape), bytes.data, expected, std::move(bytes.keepalive));
  }
  switch (dtype) {
    case DType::kFloat32: return fromRepeated<decltype(proto.float_data()), float>(dtype, shape, numel, proto.float_data(), what);
    case DType::kComplex64: return fromRepeated<decltype(proto.float_data()), float>(dtype, shape, numel, proto.float_data(), what, 2);
    case DType::kFloat64: return fromRepeated<decltype(proto.double_data()), double>(dtype, shape, numel, proto.double_data(), what);
    case DType::kComplex128: return fromRepeated<decltype(proto.double_data()), double>(dtype, shape, numel, proto.double_data(), what, 2);
    case DType::kInt64: return fromRepeated<decltype(proto.int64_data()), int64_t>(dtype, shape, numel, proto.int64_data(), what);
    case DType::kUInt32: return fromRepeated<decltype(proto.uint64_data()), uint32_t>(dtype, shape, numel, proto.uint64_data(), what);
    case DType::kUInt64: return fromRepeated<decltype(proto.uint64_data()), uint64_t>(dtype, shape, numel, proto.uint64_data(), what);
    case DType::kInt32: return fromRepeated<decltype(proto.int32_data()), int32_t>(dtype, shape, numel, proto.int32_data(), what);
    case DType::kInt16: return fromRepeated<decltype(proto.int32_data()), int16_t>(dtype, shape, numel, proto.int32_data(), what);
    case DType::kUInt16: case DType::kFloat16: case DType::kBFloat16:
      return fromRepeated<decltype(proto.int32_data()), uint16_t>(dtype, shape, numel, proto.int32_data(), what);
    case DType::kInt8: return fromRepeated<decltype(proto.int32_data()), int8_t>(dtype, shape, numel, proto.int32_data(), what);
    case DType::kUInt8: case DType::kBool: case DType::kFloat8E4M3FN: case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2: case DType::kFloat8E5M2FNUZ:
      return fromRepeated<decltype(proto.int32_data()), uint8_t>(dtype, shape, numel, proto.int32_data(), what);
    case DType::kInt4: case DType::kUInt4: {
      // int32_data holds one value per element; store packed, low nibble first.
      const int64_t n = numel;
      if (proto.int32_data_size() != n)
        throwInput(what + " has " + std::to_string(proto.int32_data_size()) + " int4 values for " + std::to_string(n) + " elements");
      ir::Tensor t(dtype, shape);
      uint8_t* out = t.mutableData<uint8_t>();
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t nib = static_cast<uint8_t>(proto.int32_data(static_cast<int>(i)) & 0xf);
        out[i / 2] |= (i % 2) ? static_cast<uint8_t>(nib << 4) : nib;
      }
      return t;
    }
    default: break;
  }
  throwInput(what + " has data type " + ir::dtypeName(dtype) + " stored in a way this tool cannot read");
}

void tensorToProto(const ir::Tensor& t, const std::string& name, onnx::TensorProto& proto) {
  proto.set_name(name);
  proto.set_data_type(static_cast<int32_t>(t.dtype()));
  for (int64_t d : t.shape()) proto.add_dims(d);
  if (t.dtype() == DType::kString) {
    for (const auto& s : t.strings()) proto.add_string_data(s);
    return;
  }
  proto.set_raw_data(t.bytes(), t.nbytes());
}

}  // namespace ptq::onnx_io
