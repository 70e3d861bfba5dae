// .ptq reader (format: ptq_file.h): maps the file, checks every size and checksum, rebuilds the IR.
// Everything in the header is untrusted: each key is read through Header, which turns a missing key or
// a wrong type into an input error naming the file and the key path, and every quantized entry is
// checked against its blobs (sizes, axis, scale shape) before anything is allocated or indexed.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <sstream>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "formats/onnx/onnx_io.h"
#include "formats/packed/ptq_file.h"
#include "lib/quant/bitpack.h"
#include "lib/util/error.h"
#include "lib/util/hash.h"

namespace ptq::packed {

using nlohmann::json;

namespace {

struct MappedFile {
  std::shared_ptr<const void> base;
  size_t size = 0;
};

MappedFile mapFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throwInput(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throwInput(path + ": not a regular file");
  }
  MappedFile m;
  m.size = static_cast<size_t>(st.st_size);
  if (m.size == 0) {
    ::close(fd);
    throwInput(path + ": empty file, not a .ptq file");
  }
  void* p = ::mmap(nullptr, m.size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throwInput(path + ": mmap failed: " + std::strerror(errno));
  const size_t size = m.size;
  m.base = std::shared_ptr<const void>(p, [size](const void* q) { ::munmap(const_cast<void*>(q), size); });
  return m;
}

// Typed access to the JSON header: a missing key or a wrong type is an input error naming the file
// and the key path, e.g. "m.ptq: .ptq header: quantized[2].bits: must be an integer, got "8"".
class Header {
 public:
  explicit Header(std::string path) : path_(std::move(path)) {}
  [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
    throwInput(path_ + ": .ptq header: " + key + ": " + msg);
  }
  const json& at(const json& obj, const std::string& where, const char* key) const {
    if (!obj.is_object()) fail(where.empty() ? "(top level)" : where, "must be an object, got " + shortDump(obj));
    const auto it = obj.find(key);
    if (it == obj.end()) fail(join(where, key), "missing");
    return *it;
  }
  bool has(const json& obj, const char* key) const { return obj.is_object() && obj.contains(key); }
  const json& object(const json& obj, const std::string& where, const char* key) const {
    const json& v = at(obj, where, key);
    if (!v.is_object()) fail(join(where, key), "must be an object, got " + shortDump(v));
    return v;
  }
  const json& array(const json& obj, const std::string& where, const char* key) const {
    const json& v = at(obj, where, key);
    if (!v.is_array()) fail(join(where, key), "must be an array, got " + shortDump(v));
    return v;
  }
  std::string string(const json& obj, const std::string& where, const char* key) const {
    const json& v = at(obj, where, key);
    if (!v.is_string()) fail(join(where, key), "must be a string, got " + shortDump(v));
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const std::string& where, const char* key) const {
    const json& v = at(obj, where, key);
    if (!v.is_boolean()) fail(join(where, key), "must be true or false, got " + shortDump(v));
    return v.get<bool>();
  }
  double number(const json& obj, const std::string& where, const char* key) const {
    const json& v = at(obj, where, key);
    if (!v.is_number()) fail(join(where, key), "must be a number, got " + shortDump(v));
    return v.get<double>();
  }
  // A figure the writer may have stored as null (JSON has no NaN): NaN then.
  double figure(const json& obj, const std::string& where, const char* key) const {
    const json& v = at(obj, where, key);
    if (v.is_null()) return std::nan("");
    if (!v.is_number()) fail(join(where, key), "must be a number or null, got " + shortDump(v));
    return v.get<double>();
  }
  int64_t integer(const json& obj, const std::string& where, const char* key, int64_t lo, int64_t hi) const {
    return checkInteger(at(obj, where, key), join(where, key), lo, hi);
  }
  int64_t checkInteger(const json& v, const std::string& key, int64_t lo, int64_t hi) const {
    bool ok = false;
    int64_t x = 0;
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      ok = u <= static_cast<uint64_t>(INT64_MAX);
      x = static_cast<int64_t>(u);
    } else if (v.is_number_integer()) {
      ok = true;
      x = v.get<int64_t>();
    }
    if (!ok) fail(key, "must be an integer, got " + shortDump(v));
    if (x < lo || x > hi) fail(key, "must be in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " + std::to_string(x));
    return x;
  }
  // A shape: an array of non-negative integers whose product fits (ir::checkedNumel).
  ir::Shape shape(const json& obj, const std::string& where, const char* key, int64_t* numel) const {
    const json& v = array(obj, where, key);
    const std::string k = join(where, key);
    if (v.size() > 64) fail(k, "has rank " + std::to_string(v.size()) + " (at most 64)");
    ir::Shape s;
    for (size_t i = 0; i < v.size(); ++i) s.push_back(checkInteger(v[i], k + "[" + std::to_string(i) + "]", 0, INT64_MAX));
    if (!ir::checkedNumel(s, numel)) fail(k, ir::shapeToString(s) + " has too many elements");
    return s;
  }
  static std::string join(const std::string& where, const char* key) { return where.empty() ? key : where + "." + key; }
  static std::string shortDump(const json& v) {
    const std::string d = v.dump();
    return d.size() > 40 ? d.substr(0, 37) + "..." : d;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Blob {
  std::string name;
  uint64_t offset = 0, bytes = 0;
  std::string xxh64;
};

// The parsed preamble and header, with every blob's bounds checked.
struct Layout {
  MappedFile file;
  json header;
  std::string header_text;
  uint64_t data_start = 0;
  std::vector<Blob> blobs;
  const uint8_t* bytes() const { return static_cast<const uint8_t*>(file.base.get()); }
};

Layout openLayout(const std::string& path) {
  Layout l;
  l.file = mapFile(path);
  const uint8_t* b = l.bytes();
  if (l.file.size < 32 || std::memcmp(b, kPtqMagic, 8) != 0) throwInput(path + ": not a .ptq file (bad magic)");
  uint32_t version;
  uint64_t header_bytes, header_hash;
  std::memcpy(&version, b + 8, 4);
  std::memcpy(&header_bytes, b + 16, 8);
  std::memcpy(&header_hash, b + 24, 8);
  if (version < kPtqVersionStatic || version > kPtqVersion)
    throwInput(path + ": .ptq version " + std::to_string(version) + " is not supported (this tool reads versions " +
               std::to_string(kPtqVersionStatic) + ".." + std::to_string(kPtqVersion) + ")");
  if (header_bytes > l.file.size - 32) throwInput(path + ": truncated: the JSON header runs past the end of the file");
  l.header_text.assign(reinterpret_cast<const char*>(b + 32), header_bytes);
  if (XXH64(l.header_text.data(), l.header_text.size(), 0) != header_hash)
    throwInput(path + ": corrupted: the JSON header's checksum does not match");
  try {
    l.header = json::parse(l.header_text);
  } catch (const std::exception& e) {
    throwInput(path + ": corrupted JSON header: " + e.what());
  }
  l.data_start = (32 + header_bytes + kPtqAlign - 1) / kPtqAlign * kPtqAlign;
  const Header h(path);
  const json& blobs = h.array(l.header, "", "blobs");
  const uint64_t avail = l.file.size > l.data_start ? l.file.size - l.data_start : 0;
  for (size_t i = 0; i < blobs.size(); ++i) {
    const std::string where = "blobs[" + std::to_string(i) + "]";
    Blob blob;
    blob.name = h.string(blobs[i], where, "name");
    blob.offset = static_cast<uint64_t>(h.integer(blobs[i], where, "offset", 0, INT64_MAX));
    blob.bytes = static_cast<uint64_t>(h.integer(blobs[i], where, "bytes", 0, INT64_MAX));
    blob.xxh64 = h.string(blobs[i], where, "xxh64");
    // Scales are read in place as floats: an offset off the format's alignment would be a misaligned load.
    if (blob.offset % kPtqAlign != 0)
      h.fail(where + ".offset", std::to_string(blob.offset) + " is not a multiple of " + std::to_string(kPtqAlign) +
                                    " (blobs are " + std::to_string(kPtqAlign) + "-byte aligned)");
    if (blob.offset > avail || blob.bytes > avail - blob.offset)
      throwInput(path + ": truncated: blob '" + blob.name + "' needs bytes up to " + std::to_string(l.data_start) + " + " +
                 std::to_string(blob.offset) + " + " + std::to_string(blob.bytes) + ", the file has " +
                 std::to_string(l.file.size));
    l.blobs.push_back(std::move(blob));
  }
  return l;
}

void verifyChecksums(const Layout& l, const std::string& path) {
  for (const Blob& blob : l.blobs)
    if (hex64(XXH64(l.bytes() + l.data_start + blob.offset, blob.bytes, 0)) != blob.xxh64)
      throwInput(path + ": corrupted: checksum mismatch in blob '" + blob.name + "'");
}

// The blob index stored under `key` of `obj`, checked against the blob list.
size_t blobIndex(const Layout& l, const Header& h, const json& obj, const std::string& where, const char* key) {
  if (l.blobs.empty()) h.fail(Header::join(where, key), "refers to a blob, but the file has none");
  return static_cast<size_t>(h.integer(obj, where, key, 0, static_cast<int64_t>(l.blobs.size()) - 1));
}

// Bytes of blob i (a view into the mapping).
std::pair<const uint8_t*, uint64_t> blobBytes(const Layout& l, size_t i) {
  const Blob& blob = l.blobs.at(i);
  return {l.bytes() + l.data_start + blob.offset, blob.bytes};
}

ir::Tensor unpackCodes(const Layout& l, size_t blob, const ir::Shape& shape, int64_t count, int bits, bool is_signed,
                       const std::string& what) {
  auto [p, n] = blobBytes(l, blob);
  // Checked before allocating: the blob must hold exactly `count` codes of `bits` bits.
  const int64_t need = quant::packedBytes(count, bits);
  if (n != static_cast<uint64_t>(need))
    throwInput(what + ": the blob has " + std::to_string(n) + " bytes, " + std::to_string(count) + " codes of " +
               std::to_string(bits) + " bits need " + std::to_string(need));
  ir::Tensor t(is_signed ? ir::DType::kInt8 : ir::DType::kUInt8, shape);
  uint8_t* out = t.mutableData<uint8_t>();
  quant::unpackBits(p, count, bits, out);
  if (is_signed)
    for (int64_t i = 0; i < count; ++i) out[i] = static_cast<uint8_t>(quant::signExtend(out[i], bits));
  return t;
}

// value = (code - zero) * scale over the weight, for each granularity (parameters checked by readQuantized).
ir::Tensor dequantize(const ir::QuantizedWeight& q) {
  const ir::Shape& shape = q.codes.shape();
  ir::Tensor out(ir::DType::kFloat32, shape);
  float* o = out.mutableData<float>();
  const int64_t n = q.codes.numel();
  const float* s = q.scales.data<float>();
  const uint8_t* zp = q.zero_points.empty() ? nullptr : q.zero_points.data<uint8_t>();
  const uint8_t* c = q.codes.data<uint8_t>();
  auto val = [&](uint8_t byte) { return q.is_signed ? static_cast<int32_t>(static_cast<int8_t>(byte)) : static_cast<int32_t>(byte); };
  const int64_t rank = static_cast<int64_t>(shape.size());
  // stride of the axis and the size of everything after it
  int64_t inner = 1;
  if (q.granularity != quant::Granularity::kTensor)
    for (int64_t d = q.axis + 1; d < rank; ++d) inner *= shape[static_cast<size_t>(d)];
  for (int64_t i = 0; i < n; ++i) {
    int64_t si = 0;
    if (q.granularity == quant::Granularity::kChannel) {
      si = (i / inner) % shape[static_cast<size_t>(q.axis)];
    } else if (q.granularity == quant::Granularity::kGroup) {
      const int64_t dim = shape[static_cast<size_t>(q.axis)];
      const int64_t blocks = (dim + q.block_size - 1) / q.block_size;
      const int64_t outer = i / (inner * dim), along = (i / inner) % dim, in = i % inner;
      si = (outer * blocks + along / q.block_size) * inner + in;
    }
    const int32_t z = zp ? val(zp[si]) : 0;
    o[i] = static_cast<float>(val(c[i]) - z) * s[si];
  }
  return out;
}

quant::Granularity parseGranularity(const std::string& g, const Header& h, const std::string& where) {
  if (g == "tensor") return quant::Granularity::kTensor;
  if (g == "channel") return quant::Granularity::kChannel;
  if (g == "block") return quant::Granularity::kGroup;
  h.fail(where + ".granularity", "unknown granularity '" + g + "' (tensor, channel, block)");
}

// The scale shape each granularity implies (ir::QuantizedWeight); a file must carry exactly it.
ir::Shape expectedScaleShape(const ir::QuantizedWeight& q, const ir::Shape& shape) {
  if (q.granularity == quant::Granularity::kTensor) return {};
  if (q.granularity == quant::Granularity::kChannel) return {shape[static_cast<size_t>(q.axis)]};
  ir::Shape s = shape;
  s[static_cast<size_t>(q.axis)] = (s[static_cast<size_t>(q.axis)] + q.block_size - 1) / q.block_size;
  return s;
}

// One "quantized" entry, every field checked against the others and against its blobs.
std::shared_ptr<ir::QuantizedWeight> readQuantized(const Layout& l, const Header& h, const json& e, const std::string& where,
                                                   std::string* name) {
  *name = h.string(e, where, "name");
  const std::string what = h.path() + ": quantized tensor '" + *name + "'";
  auto q = std::make_shared<ir::QuantizedWeight>();
  q->bits = static_cast<int>(h.integer(e, where, "bits", 2, 8));
  q->is_signed = h.boolean(e, where, "signed");
  q->symmetric = h.boolean(e, where, "symmetric");
  q->granularity = parseGranularity(h.string(e, where, "granularity"), h, where);
  int64_t numel = 0, scale_numel = 0;
  const ir::Shape shape = h.shape(e, where, "shape", &numel);
  const int64_t rank = static_cast<int64_t>(shape.size());
  q->axis = h.integer(e, where, "axis", -1, INT64_MAX);
  q->block_size = h.integer(e, where, "block_size", 0, INT64_MAX);
  if (q->granularity != quant::Granularity::kTensor) {
    if (q->axis < 0 || q->axis >= rank)
      h.fail(where + ".axis", std::to_string(q->axis) + " is not an axis of '" + *name + "' (rank " + std::to_string(rank) +
                                  ", shape " + ir::shapeToString(shape) + ")");
    if (q->granularity == quant::Granularity::kGroup && q->block_size < 1)
      h.fail(where + ".block_size", "must be >= 1 for block granularity, got " + std::to_string(q->block_size));
  }
  q->method = h.string(e, where, "method");
  q->mse = h.figure(e, where, "mse");
  q->sqnr_db = h.figure(e, where, "sqnr_db");
  const ir::Shape scale_shape = h.shape(e, where, "scale_shape", &scale_numel);
  const ir::Shape expected = expectedScaleShape(*q, shape);
  if (scale_shape != expected)
    h.fail(where + ".scale_shape", ir::shapeToString(scale_shape) + " does not fit " + quant::granularityName(q->granularity) +
                                      " granularity of shape " + ir::shapeToString(shape) + " (expected " +
                                      ir::shapeToString(expected) + ")");
  q->codes = unpackCodes(l, blobIndex(l, h, e, where, "codes"), shape, numel, q->bits, q->is_signed, what + " codes");
  auto [sp, sn] = blobBytes(l, blobIndex(l, h, e, where, "scales"));
  if (sn != static_cast<uint64_t>(scale_numel) * sizeof(float))
    throwInput(what + ": the scales blob has " + std::to_string(sn) + " bytes, scale shape " +
               ir::shapeToString(scale_shape) + " needs " + std::to_string(scale_numel * 4));
  q->scales = ir::Tensor::view(ir::DType::kFloat32, scale_shape, sp, sn, l.file.base);
  if (!h.at(e, where, "zero_points").is_null())
    q->zero_points = unpackCodes(l, blobIndex(l, h, e, where, "zero_points"), scale_shape, scale_numel, q->bits,
                                 q->is_signed, what + " zero points");
  return q;
}

// One "activations" entry (the graph is loaded: the value must exist).
void readActivation(const Header& h, const json& a, const std::string& where, ir::Graph& g) {
  const std::string name = h.string(a, where, "name");
  ir::Value* v = g.findValue(name);
  if (!v) h.fail(where + ".name", "activation '" + name + "' is not in the graph");
  auto q = std::make_shared<ir::ActivationQuant>();
  q->dtype = static_cast<ir::DType>(h.integer(a, where, "dtype", 0, 64));
  if (q->dtype != ir::DType::kUInt8 && q->dtype != ir::DType::kInt8 && q->dtype != ir::DType::kUInt16 &&
      q->dtype != ir::DType::kInt16 && q->dtype != ir::DType::kUInt4 && q->dtype != ir::DType::kInt4)
    h.fail(where + ".dtype", std::to_string(static_cast<int>(q->dtype)) + " is not an activation code type ((u)int4/8/16)");
  if (h.has(a, "dynamic") && h.boolean(a, where, "dynamic")) {
    q->dynamic = true;
    q->per_token = h.has(a, "per_token") && h.boolean(a, where, "per_token");
    v->act_quant = q;
    return;
  }
  const double scale = h.number(a, where, "scale");
  if (!(scale > 0.0 && scale <= 3.4e38)) h.fail(where + ".scale", "must be a positive finite float");
  q->scale = ir::Tensor::fromFloats({}, {static_cast<float>(scale)});
  q->zero_point = ir::Tensor(q->dtype, {});
  const int64_t z = h.integer(a, where, "zero_point", INT32_MIN, INT32_MAX);
  if (q->dtype == ir::DType::kInt16 || q->dtype == ir::DType::kUInt16)
    *q->zero_point.mutableData<uint16_t>() = static_cast<uint16_t>(z);
  else
    *q->zero_point.mutableData<uint8_t>() = static_cast<uint8_t>(z & (ir::dtypeBits(q->dtype) == 4 ? 0xf : 0xff));
  v->act_quant = q;
}

}  // namespace

bool isPackedFile(const std::string& path) {
  char magic[8] = {};
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  const size_t got = std::fread(magic, 1, 8, f);
  std::fclose(f);
  return got == 8 && std::memcmp(magic, kPtqMagic, 8) == 0;
}

PackedModel readPacked(const std::string& path) {
  Layout l = openLayout(path);
  verifyChecksums(l, path);
  const Header h(path);
  PackedModel pm;
  pm.header_json = l.header_text;
  try {
    pm.output_form = h.string(l.header, "", "output_form");
    std::vector<std::pair<std::string, std::shared_ptr<ir::QuantizedWeight>>> weights;
    const json& quantized = h.array(l.header, "", "quantized");
    for (size_t i = 0; i < quantized.size(); ++i) {
      std::string name;
      auto q = readQuantized(l, h, quantized[i], "quantized[" + std::to_string(i) + "]", &name);
      weights.emplace_back(name, q);
    }
    auto [gp, gn] = blobBytes(l, blobIndex(l, h, h.object(l.header, "", "graph"), "graph", "blob"));
    onnx_io::EmbeddedLoadOptions opts;
    opts.external_data_file = path;
    opts.external_data_base = l.data_start;
    opts.add_initializers = [&](ir::Graph& g) {
      for (auto& [name, q] : weights) {
        ir::Value* v = g.addInitializer(name, dequantize(*q));
        v->quant = q;
      }
    };
    pm.model = onnx_io::loadEmbeddedModel(std::string(reinterpret_cast<const char*>(gp), gn), path, opts);
    if (h.has(l.header, "activations")) {
      const json& acts = h.array(l.header, "", "activations");
      for (size_t i = 0; i < acts.size(); ++i)
        readActivation(h, acts[i], "activations[" + std::to_string(i) + "]", *pm.model.graph);
    }
  } catch (const nlohmann::json::exception& e) {
    throwInput(path + ": malformed .ptq header: " + e.what());
  }
  return pm;
}

std::string describePacked(const std::string& path, bool as_json) {
  Layout l = openLayout(path);
  verifyChecksums(l, path);
  if (as_json) return l.header.dump(2);
  const Header h(path);
  std::ostringstream o;
  try {
    const json& prov = h.object(l.header, "", "provenance");
    uint64_t payload = 0, codes = 0;
    for (const Blob& b : l.blobs) payload += b.bytes;
    const json& config = h.object(prov, "provenance", "config");
    const std::string config_name = h.has(config, "name") ? h.string(config, "provenance.config", "name") : "";
    o << "file:         " << path << " (" << l.file.size << " bytes; .ptq version " << kPtqVersion << ", checksums ok)\n";
    o << "made by:      ptq-tool " << h.string(prov, "provenance", "tool_version") << " from "
      << h.string(prov, "provenance", "source") << ", seed " << h.integer(prov, "provenance", "seed", 0, INT64_MAX)
      << ", config '" << config_name << "'\n";
    o << "unpacks to:   " << h.string(l.header, "", "output_form") << "\n";
    o << "graph:        " << h.integer(h.object(l.header, "", "graph"), "graph", "nodes", 0, INT64_MAX) << " nodes\n";
    const json& quantized = h.array(l.header, "", "quantized");
    o << "quantized:    " << quantized.size() << " tensors\n";
    for (size_t i = 0; i < quantized.size(); ++i) {
      const json& e = quantized[i];
      const std::string where = "quantized[" + std::to_string(i) + "]";
      codes += blobBytes(l, blobIndex(l, h, e, where, "codes")).second;
      const std::string granularity = h.string(e, where, "granularity");
      int64_t numel = 0;
      h.shape(e, where, "shape", &numel);
      o << "  " << h.string(e, where, "name") << " " << h.at(e, where, "shape").dump() << " "
        << h.integer(e, where, "bits", 2, 8) << "-bit " << granularity
        << (granularity == "block" ? " " + std::to_string(h.integer(e, where, "block_size", 0, INT64_MAX)) : "")
        << (h.boolean(e, where, "symmetric") ? " sym" : " asym") << ", sqnr " << h.figure(e, where, "sqnr_db") << " dB\n";
    }
    o << "payload:      " << payload << " bytes in " << l.blobs.size() << " blobs (" << codes
      << " of packed codes); file overhead " << (l.file.size - std::min<uint64_t>(payload, l.file.size)) << " bytes\n";
  } catch (const nlohmann::json::exception& e) {
    throwInput(path + ": malformed .ptq header: " + e.what());
  }
  return o.str();
}

}  // namespace ptq::packed
