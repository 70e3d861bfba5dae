#include "lib/calib/npy.h"

#include <dlfcn.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "lib/util/atomic_file.h"
#include "lib/util/error.h"


namespace ptq::calib {

namespace {
using ir::DType;

[[noreturn]] void bad(const std::string& what, const std::string& msg) { throwInput(what + ": " + msg); }

std::string readFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throwInput(path + ": cannot open file");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throwInput(path + ": read error");
  return ss.str();
}

struct Descr {
  const char* code;
  DType dtype;
};
constexpr Descr kDescrs[] = {
    {"f4", DType::kFloat32}, {"f8", DType::kFloat64}, {"f2", DType::kFloat16}, {"i8", DType::kInt64},
    {"i4", DType::kInt32},   {"i2", DType::kInt16},   {"i1", DType::kInt8},    {"u8", DType::kUInt64},
    {"u4", DType::kUInt32},  {"u2", DType::kUInt16},  {"u1", DType::kUInt8},   {"b1", DType::kBool},
};

DType dtypeOfDescr(const std::string& what, const std::string& descr) {
  if (descr.size() < 3) bad(what, "unsupported .npy dtype '" + descr + "'");
  const char order = descr[0];
  const std::string code = descr.substr(1);
  if (order == '>' && code != "i1" && code != "u1" && code != "b1")
    bad(what, "big-endian .npy data ('" + descr + "') is not supported; save it little-endian (astype('<...'))");
  if (order != '<' && order != '|' && order != '=' && order != '>') bad(what, "unsupported .npy dtype '" + descr + "'");
  for (const Descr& d : kDescrs)
    if (code == d.code) return d.dtype;
  bad(what, "unsupported .npy dtype '" + descr + "' (supported: float16/32/64, int8-64, uint8-64, bool)");
}

std::string descrOf(DType t) {
  for (const Descr& d : kDescrs)
    if (d.dtype == t) return std::string(ir::dtypeBits(t) == 8 ? "|" : "<") + d.code;
  throwOutput("cannot write a " + ir::dtypeName(t) + " tensor as .npy");
}

// Value of 'key' in the header dict, as raw text up to the next top-level comma or brace.
std::string headerField(const std::string& what, const std::string& h, const std::string& key) {
  size_t p = h.find("'" + key + "'");
  if (p == std::string::npos) p = h.find("\"" + key + "\"");
  if (p == std::string::npos) bad(what, "malformed .npy header (no '" + key + "'): " + h);
  p = h.find(':', p);
  if (p == std::string::npos) bad(what, "malformed .npy header: " + h);
  ++p;
  while (p < h.size() && h[p] == ' ') ++p;
  if (p < h.size() && h[p] == '(') {
    const size_t e = h.find(')', p);
    if (e == std::string::npos) bad(what, "malformed .npy header: " + h);
    return h.substr(p, e - p + 1);
  }
  size_t e = p;
  while (e < h.size() && h[e] != ',' && h[e] != '}') ++e;
  std::string v = h.substr(p, e - p);
  while (!v.empty() && v.back() == ' ') v.pop_back();
  if (v.size() >= 2 && (v[0] == '\'' || v[0] == '"')) v = v.substr(1, v.size() - 2);
  return v;
}
}  // namespace

ir::Tensor parseNpy(const std::string& b, const std::string& what) {
  if (b.size() < 10 || static_cast<unsigned char>(b[0]) != 0x93 || b.compare(1, 5, "NUMPY") != 0)
    bad(what, "not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(b[6]);
  size_t hlen, off;
  if (major == 1) {
    hlen = static_cast<unsigned char>(b[8]) | (static_cast<size_t>(static_cast<unsigned char>(b[9])) << 8);
    off = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) bad(what, "truncated .npy header");
    hlen = 0;
    for (int i = 0; i < 4; ++i) hlen |= static_cast<size_t>(static_cast<unsigned char>(b[8 + i])) << (8 * i);
    off = 12;
  } else {
    bad(what, "unsupported .npy version " + std::to_string(major));
  }
  if (off + hlen > b.size()) bad(what, "truncated .npy header");
  const std::string h = b.substr(off, hlen);
  const DType dtype = dtypeOfDescr(what, headerField(what, h, "descr"));
  const bool fortran = headerField(what, h, "fortran_order") == "True";
  const std::string shape_s = headerField(what, h, "shape");
  if (shape_s.size() < 2 || shape_s.front() != '(' || shape_s.back() != ')')
    bad(what, "bad shape in .npy header (expected a tuple): " + shape_s);
  ir::Shape shape;
  {
    std::string inner = shape_s.substr(1, shape_s.size() - 2);
    std::stringstream ss(inner);
    std::string item;
    while (std::getline(ss, item, ',')) {
      size_t a = item.find_first_not_of(" L");
      if (a == std::string::npos) continue;
      item = item.substr(a);
      while (!item.empty() && (item.back() == ' ' || item.back() == 'L')) item.pop_back();
      if (item.empty()) continue;
      char* end = nullptr;
      errno = 0;
      const long long v = std::strtoll(item.c_str(), &end, 10);
      if (*end || v < 0 || errno == ERANGE) bad(what, "bad shape in .npy header: " + shape_s);
      shape.push_back(v);
    }
  }
  // Work per element grows with the rank (Fortran order): keep it to what real arrays use.
  if (shape.size() > 64) bad(what, "shape in .npy header has rank " + std::to_string(shape.size()) + " (at most 64)");
  int64_t numel = 0;
  if (!ir::checkedNumel(shape, &numel)) bad(what, "shape " + ir::shapeToString(shape) + " in .npy header has too many elements");
  const size_t data_off = off + hlen;
  const size_t need = ir::dtypeStorageBytes(dtype, numel);
  if (b.size() - data_off < need)
    bad(what, "truncated .npy data: " + ir::dtypeName(dtype) + ir::shapeToString(shape) + " needs " + std::to_string(need) +
                  " bytes, the file has " + std::to_string(b.size() - data_off));
  ir::Tensor t = ir::Tensor::fromBytes(dtype, shape, b.data() + data_off, need);
  if (fortran && shape.size() > 1) {  // column-major -> row-major
    const size_t eb = static_cast<size_t>(ir::dtypeBits(dtype) / 8);
    const int64_t n = numel, r = static_cast<int64_t>(shape.size());
    ir::Tensor c(dtype, shape);
    auto* dst = static_cast<uint8_t*>(c.mutableData());
    const auto* src = static_cast<const uint8_t*>(t.data());
    std::vector<int64_t> idx(r, 0);
    for (int64_t i = 0; i < n; ++i) {
      int64_t off_f = 0, stride = 1;
      for (int64_t d = 0; d < r; ++d) { off_f += idx[d] * stride; stride *= shape[d]; }
      std::memcpy(dst + i * eb, src + off_f * eb, eb);
      for (int64_t d = r - 1; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
    t = c;
  }
  return t;
}

ir::Tensor readNpy(const std::string& path) { return parseNpy(readFile(path), path); }

std::string serializeNpy(const ir::Tensor& t) {
  std::string shape = "(";
  for (size_t i = 0; i < t.shape().size(); ++i) shape += std::to_string(t.shape()[i]) + (t.shape().size() == 1 ? "," : (i + 1 < t.shape().size() ? ", " : ""));
  shape += ")";
  std::string h = "{'descr': '" + descrOf(t.dtype()) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const bool v2 = h.size() + 11 > 65535;
  const size_t pre = v2 ? 12 : 10;
  const size_t total = (pre + h.size() + 1 + 63) / 64 * 64;
  h.append(total - pre - h.size() - 1, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  const size_t hl = h.size();
  out += static_cast<char>(hl & 0xff);
  out += static_cast<char>((hl >> 8) & 0xff);
  if (v2) {
    out += static_cast<char>((hl >> 16) & 0xff);
    out += static_cast<char>((hl >> 24) & 0xff);
  }
  out += h;
  out.append(static_cast<const char*>(t.data()), t.nbytes());
  return out;
}

void writeNpy(const std::string& path, const ir::Tensor& t) { writeFileAtomically(path, serializeNpy(t)); }

// ---------------------------------------------------------------- zip

namespace {
uint32_t rd32(const std::string& b, size_t p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(b[p + i])) << (8 * i);
  return v;
}
uint16_t rd16(const std::string& b, size_t p) {
  return static_cast<uint16_t>(static_cast<unsigned char>(b[p]) | (static_cast<unsigned char>(b[p + 1]) << 8));
}
uint64_t rd64(const std::string& b, size_t p) { return rd32(b, p) | (static_cast<uint64_t>(rd32(b, p + 4)) << 32); }
void wr16(std::string& s, uint32_t v) { s += static_cast<char>(v & 0xff); s += static_cast<char>((v >> 8) & 0xff); }
void wr32(std::string& s, uint32_t v) { wr16(s, v & 0xffff); wr16(s, v >> 16); }

uint32_t crc32Of(const std::string& data) {
  static uint32_t table[256];
  static bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  uint32_t c = 0xffffffffu;
  for (unsigned char ch : data) c = table[(c ^ ch) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

// zlib, loaded at first use (libz.so.1 is on every Debian system), so the build needs no link flag.
struct Zlib {
  decltype(&::inflateInit2_) init = nullptr;
  decltype(&::inflate) inflate = nullptr;
  decltype(&::inflateEnd) end = nullptr;
};
const Zlib& zlib() {
  static const Zlib z = [] {
    Zlib r;
    void* h = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libz.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) return r;
    r.init = reinterpret_cast<decltype(r.init)>(dlsym(h, "inflateInit2_"));
    r.inflate = reinterpret_cast<decltype(r.inflate)>(dlsym(h, "inflate"));
    r.end = reinterpret_cast<decltype(r.end)>(dlsym(h, "inflateEnd"));
    if (!r.init || !r.inflate || !r.end) r = Zlib();
    return r;
  }();
  return z;
}

std::string inflateRaw(const std::string& what, const char* data, size_t n, size_t out_size) {
  const Zlib& z = zlib();
  if (!z.init)
    bad(what, "compressed .npz (np.savez_compressed) needs zlib (libz.so.1), which is not installed; save with np.savez");
  std::string out(out_size, '\0');
  z_stream zs{};
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
  zs.avail_in = static_cast<uInt>(n);
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out_size);
  if (z.init(&zs, -15, ZLIB_VERSION, static_cast<int>(sizeof(z_stream))) != Z_OK) bad(what, "zlib init failed");
  const int rc = z.inflate(&zs, Z_FINISH);
  z.end(&zs);
  if (rc != Z_STREAM_END || zs.total_out != out_size) bad(what, "corrupt compressed member");
  return out;
}
}  // namespace

bool npzDeflateAvailable() { return zlib().init != nullptr; }

NamedTensors parseNpz(const std::string& b, const std::string& path) {
  // Every read below is bounds-checked: fits(p, n) says bytes [p, p + n) are inside the file.
  auto fits = [&](uint64_t p, uint64_t n) { return p <= b.size() && n <= b.size() - p; };
  if (b.size() < 22) bad(path, "not a .npz (zip) file");
  size_t eocd = std::string::npos;
  for (size_t p = b.size() - 22 + 1; p-- > 0 && b.size() - p <= 22 + 65535;)
    if (rd32(b, p) == 0x06054b50u) { eocd = p; break; }
  if (eocd == std::string::npos) bad(path, "not a .npz (zip) file: no end-of-central-directory record");
  uint64_t count = rd16(b, eocd + 10), cd_off = rd32(b, eocd + 16);
  if ((count == 0xffff || cd_off == 0xffffffffu) && eocd >= 20 && rd32(b, eocd - 20) == 0x07064b50u) {
    const uint64_t z64 = rd64(b, eocd - 20 + 8);
    if (!fits(z64, 56) || rd32(b, z64) != 0x06064b50u) bad(path, "corrupt zip64 directory");
    count = rd64(b, z64 + 32);
    cd_off = rd64(b, z64 + 48);
  }
  NamedTensors out;
  uint64_t p = cd_off;
  for (uint64_t i = 0; i < count; ++i) {
    if (!fits(p, 46) || rd32(b, p) != 0x02014b50u) bad(path, "corrupt zip central directory");
    const uint16_t method = rd16(b, p + 10);
    uint64_t csize = rd32(b, p + 20), usize = rd32(b, p + 24);
    const uint16_t nlen = rd16(b, p + 28), xlen = rd16(b, p + 30), clen = rd16(b, p + 32);
    uint64_t loff = rd32(b, p + 42);
    if (!fits(p + 46, uint64_t{nlen} + xlen + clen)) bad(path, "corrupt zip central directory (entry runs past the end)");
    const std::string name = b.substr(p + 46, nlen);
    const uint64_t xend = p + 46 + nlen + xlen;
    for (uint64_t x = p + 46 + nlen; x + 4 <= xend;) {  // zip64 extra
      const uint16_t id = rd16(b, x), sz = rd16(b, x + 2);
      if (x + 4 + sz > xend) bad(path, "corrupt zip extra field in entry '" + name + "'");
      if (id == 0x0001) {
        uint64_t q = x + 4;
        auto next = [&](uint64_t* v) {
          if (q + 8 > x + 4 + sz) bad(path, "corrupt zip64 extra field in entry '" + name + "'");
          *v = rd64(b, q);
          q += 8;
        };
        if (usize == 0xffffffffu) next(&usize);
        if (csize == 0xffffffffu) next(&csize);
        if (loff == 0xffffffffu) next(&loff);
      }
      x += 4 + sz;
    }
    p += 46 + uint64_t{nlen} + xlen + clen;
    if (!fits(loff, 30) || rd32(b, loff) != 0x04034b50u) bad(path, "corrupt zip entry '" + name + "'");
    const uint64_t data = loff + 30 + rd16(b, loff + 26) + rd16(b, loff + 28);
    if (!fits(data, csize)) bad(path, "truncated zip entry '" + name + "'");
    std::string bytes;
    if (method == 0) {
      bytes = b.substr(data, csize);
    } else if (method == 8) {
      // Deflate expands at most ~1032:1; a larger declared size is a corrupt (or hostile) entry, and
      // must not decide how much is allocated.
      if (usize > csize * 1032 + 1024)
        bad(path, "zip entry '" + name + "' declares " + std::to_string(usize) + " bytes from " + std::to_string(csize) +
                      " compressed ones, more than deflate can produce");
      bytes = inflateRaw(path + ":" + name, b.data() + data, csize, usize);
    } else {
      bad(path, "zip entry '" + name + "' uses compression method " + std::to_string(method) + " (only stored and deflate)");
    }
    std::string key = name;
    if (key.size() > 4 && key.compare(key.size() - 4, 4, ".npy") == 0) key.resize(key.size() - 4);
    out.emplace_back(key, parseNpy(bytes, path + ":" + name));
  }
  return out;
}

NamedTensors readNpz(const std::string& path) { return parseNpz(readFile(path), path); }

void writeNpz(const std::string& path, const NamedTensors& arrays) {
  std::string zip, cd;
  uint32_t n = 0;
  for (const auto& [name, t] : arrays) {
    const std::string body = serializeNpy(t);
    const std::string fname = name + ".npy";
    if (zip.size() + body.size() > 0xffffffffu) throwOutput(path + ": .npz over 4 GiB is not supported by this writer");
    const uint32_t crc = crc32Of(body), off = static_cast<uint32_t>(zip.size()), sz = static_cast<uint32_t>(body.size());
    wr32(zip, 0x04034b50u); wr16(zip, 20); wr16(zip, 0); wr16(zip, 0); wr16(zip, 0); wr16(zip, 0x21);
    wr32(zip, crc); wr32(zip, sz); wr32(zip, sz); wr16(zip, static_cast<uint32_t>(fname.size())); wr16(zip, 0);
    zip += fname;
    zip += body;
    wr32(cd, 0x02014b50u); wr16(cd, 20); wr16(cd, 20); wr16(cd, 0); wr16(cd, 0); wr16(cd, 0); wr16(cd, 0x21);
    wr32(cd, crc); wr32(cd, sz); wr32(cd, sz); wr16(cd, static_cast<uint32_t>(fname.size()));
    wr16(cd, 0); wr16(cd, 0); wr16(cd, 0); wr16(cd, 0); wr32(cd, 0); wr32(cd, off);
    cd += fname;
    ++n;
  }
  const uint32_t cd_off = static_cast<uint32_t>(zip.size());
  zip += cd;
  wr32(zip, 0x06054b50u); wr16(zip, 0); wr16(zip, 0); wr16(zip, n); wr16(zip, n);
  wr32(zip, static_cast<uint32_t>(cd.size())); wr32(zip, cd_off); wr16(zip, 0);
  writeFileAtomically(path, zip);
}

ir::Tensor readTensorFile(const std::string& path, const std::string& preferred_name) {
  auto ends = [&](const char* ext) {
    const size_t n = std::strlen(ext);
    return path.size() >= n && path.compare(path.size() - n, n, ext) == 0;
  };
  if (ends(".npy")) return readNpy(path);
  if (ends(".pb")) throwInput(path + ": ONNX TensorProto (.pb) files are read by the driver's reader (driver::readTensorFile)");
  if (ends(".npz")) {
    NamedTensors all = readNpz(path);
    for (auto& [name, t] : all)
      if (name == preferred_name) return t;
    if (all.size() == 1) return all[0].second;
    std::string names;
    for (const auto& e : all) names += (names.empty() ? "" : ", ") + e.first;
    throwInput(path + ": holds " + std::to_string(all.size()) + " arrays (" + names + ") and none is named '" +
               preferred_name + "'");
  }
  throwInput(path + ": unknown tensor file type (expected .npy, .npz or .pb)");
}

}  // namespace ptq::calib
