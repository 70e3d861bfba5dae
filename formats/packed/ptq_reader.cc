// .ptq reader (format: ptq_file.h): maps the file, checks every size and checksum, rebuilds the IR.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throwInput(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
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

// The parsed preamble and header, with blob bounds checked.
struct Layout {
  MappedFile file;
  json header;
  std::string header_text;
  uint64_t data_start = 0;
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
  for (const auto& blob : l.header.at("blobs")) {
    const uint64_t off = blob.at("offset"), n = blob.at("bytes");
    if (l.data_start + off + n > l.file.size)
      throwInput(path + ": truncated: blob '" + blob.at("name").get<std::string>() + "' needs bytes up to " +
                 std::to_string(l.data_start + off + n) + ", the file has " + std::to_string(l.file.size));
  }
  return l;
}

void verifyChecksums(const Layout& l, const std::string& path) {
  for (const auto& blob : l.header.at("blobs")) {
    const uint64_t off = blob.at("offset"), n = blob.at("bytes");
    if (hex64(XXH64(l.bytes() + l.data_start + off, n, 0)) != blob.at("xxh64").get<std::string>())
      throwInput(path + ": corrupted: checksum mismatch in blob '" + blob.at("name").get<std::string>() + "'");
  }
}

// Bytes of blob i (a view into the mapping).
std::pair<const uint8_t*, uint64_t> blobBytes(const Layout& l, size_t i) {
  const auto& blob = l.header.at("blobs").at(i);
  return {l.bytes() + l.data_start + blob.at("offset").get<uint64_t>(), blob.at("bytes").get<uint64_t>()};
}

ir::Tensor unpackCodes(const Layout& l, size_t blob, const ir::Shape& shape, int bits, bool is_signed, const std::string& what) {
  auto [p, n] = blobBytes(l, blob);
  const int64_t count = ir::shapeNumel(shape);
  if (static_cast<int64_t>(n) != quant::packedBytes(count, bits)) throwInput(what + ": wrong size");
  ir::Tensor t(is_signed ? ir::DType::kInt8 : ir::DType::kUInt8, shape);
  uint8_t* out = t.mutableData<uint8_t>();
  quant::unpackBits(p, count, bits, out);
  if (is_signed)
    for (int64_t i = 0; i < count; ++i) out[i] = static_cast<uint8_t>(quant::signExtend(out[i], bits));
  return t;
}

// value = (code - zero) * scale over the weight, for each granularity.
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

quant::Granularity parseGranularity(const std::string& g, const std::string& what) {
  if (g == "tensor") return quant::Granularity::kTensor;
  if (g == "channel") return quant::Granularity::kChannel;
  if (g == "block") return quant::Granularity::kGroup;
  throwInput(what + ": unknown granularity '" + g + "'");
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
  PackedModel pm;
  pm.header_json = l.header_text;
  try {
    pm.output_form = l.header.at("output_form").get<std::string>();
    std::vector<std::pair<std::string, std::shared_ptr<ir::QuantizedWeight>>> weights;
    for (const auto& e : l.header.at("quantized")) {
      const std::string name = e.at("name");
      const std::string what = path + ": quantized tensor '" + name + "'";
      auto q = std::make_shared<ir::QuantizedWeight>();
      q->bits = e.at("bits");
      q->is_signed = e.at("signed");
      q->symmetric = e.at("symmetric");
      q->granularity = parseGranularity(e.at("granularity"), what);
      q->axis = e.at("axis");
      q->block_size = e.at("block_size");
      q->method = e.at("method");
      q->mse = e.at("mse");
      q->sqnr_db = e.at("sqnr_db");
      const ir::Shape shape = e.at("shape").get<ir::Shape>();
      const ir::Shape scale_shape = e.at("scale_shape").get<ir::Shape>();
      q->codes = unpackCodes(l, e.at("codes"), shape, q->bits, q->is_signed, what + " codes");
      auto [sp, sn] = blobBytes(l, e.at("scales"));
      q->scales = ir::Tensor::view(ir::DType::kFloat32, scale_shape, sp, sn, l.file.base);
      if (sn != q->scales.numel() * sizeof(float)) throwInput(what + ": scales have the wrong size");
      if (!e.at("zero_points").is_null())
        q->zero_points = unpackCodes(l, e.at("zero_points"), scale_shape, q->bits, q->is_signed, what + " zero points");
      weights.emplace_back(name, q);
    }
    auto [gp, gn] = blobBytes(l, l.header.at("graph").at("blob"));
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
    for (const auto& a : l.header.value("activations", json::array())) {
      const std::string name = a.at("name");
      ir::Value* v = pm.model.graph->findValue(name);
      if (!v) throwInput(path + ": activation '" + name + "' is not in the graph");
      auto q = std::make_shared<ir::ActivationQuant>();
      q->dtype = static_cast<ir::DType>(a.at("dtype").get<int>());
      if (a.value("dynamic", false)) {
        q->dynamic = true;
        q->per_token = a.value("per_token", false);
        v->act_quant = q;
        continue;
      }
      q->scale = ir::Tensor::fromFloats({}, {a.at("scale").get<float>()});
      q->zero_point = ir::Tensor(q->dtype, {});
      const int64_t z = a.at("zero_point");
      if (q->dtype == ir::DType::kInt16 || q->dtype == ir::DType::kUInt16)
        *q->zero_point.mutableData<uint16_t>() = static_cast<uint16_t>(z);
      else
        *q->zero_point.mutableData<uint8_t>() = static_cast<uint8_t>(z & (ir::dtypeBits(q->dtype) == 4 ? 0xf : 0xff));
      v->act_quant = q;
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
  std::ostringstream o;
  const auto& prov = l.header.at("provenance");
  uint64_t payload = 0, codes = 0;
  for (const auto& b : l.header.at("blobs")) payload += b.at("bytes").get<uint64_t>();
  o << "file:         " << path << " (" << l.file.size << " bytes; .ptq version " << kPtqVersion << ", checksums ok)\n";
  o << "made by:      ptq-tool " << prov.at("tool_version").get<std::string>() << " from " << prov.at("source").get<std::string>()
    << ", seed " << prov.at("seed") << ", config '" << prov.at("config").value("name", "") << "'\n";
  o << "unpacks to:   " << l.header.at("output_form").get<std::string>() << "\n";
  o << "graph:        " << l.header.at("graph").at("nodes") << " nodes\n";
  o << "quantized:    " << l.header.at("quantized").size() << " tensors\n";
  for (const auto& e : l.header.at("quantized")) {
    auto [p, n] = blobBytes(l, e.at("codes"));
    (void)p;
    codes += n;
    o << "  " << e.at("name").get<std::string>() << " " << e.at("shape").dump() << " " << e.at("bits") << "-bit "
      << e.at("granularity").get<std::string>() << (e.at("granularity") == "block" ? " " + e.at("block_size").dump() : "")
      << (e.at("symmetric").get<bool>() ? " sym" : " asym") << ", sqnr " << e.at("sqnr_db") << " dB\n";
  }
  o << "payload:      " << payload << " bytes in " << l.header.at("blobs").size() << " blobs (" << codes
    << " of packed codes); file overhead " << (l.file.size - payload) << " bytes\n";
  return o.str();
}

}  // namespace ptq::packed
