#include "formats/onnx/wire_splice.h"

#include "lib/util/error.h"

namespace ptq::onnx_io::wire {
namespace {

uint64_t readVarint(const std::string& b, size_t* at) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*at >= b.size()) throwInternal("wire: truncated varint in a serialized message");
    const auto byte = static_cast<uint8_t>(b[(*at)++]);
    v |= uint64_t{byte & 0x7Fu} << shift;
    if (!(byte & 0x80u)) return v;
  }
  throwInternal("wire: varint longer than 10 bytes in a serialized message");
}

}  // namespace

std::vector<Field> fields(const std::string& bytes) {
  std::vector<Field> out;
  size_t at = 0;
  while (at < bytes.size()) {
    Field f;
    f.begin = at;
    const uint64_t tag = readVarint(bytes, &at);
    f.number = static_cast<uint32_t>(tag >> 3);
    f.wire_type = static_cast<uint32_t>(tag & 7u);
    switch (f.wire_type) {
      case 0: readVarint(bytes, &at); break;
      case 1: at += 8; break;
      case 5: at += 4; break;
      case 2: {
        const uint64_t n = readVarint(bytes, &at);
        f.payload = at;
        if (n > bytes.size() - at) throwInternal("wire: field longer than its message");
        at += static_cast<size_t>(n);
        break;
      }
      default: throwInternal("wire: unsupported wire type " + std::to_string(f.wire_type));
    }
    if (at > bytes.size()) throwInternal("wire: field runs past the end of its message");
    f.end = at;
    out.push_back(f);
  }
  return out;
}

size_t varintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void appendVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(static_cast<uint8_t>(v) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void Pieces::own(std::string s) {
  if (s.empty()) return;
  size_ += s.size();
  Piece p;
  p.n = s.size();
  p.owned = static_cast<long>(owned_.size());
  owned_.push_back(std::move(s));
  pieces_.push_back(p);
}

void Pieces::borrow(const void* data, size_t n) {
  if (n == 0) return;
  size_ += n;
  Piece p;
  p.data = static_cast<const char*>(data);
  p.n = n;
  pieces_.push_back(p);
}

void Pieces::append(Pieces&& other) {
  const long base = static_cast<long>(owned_.size());
  for (auto& s : other.owned_) owned_.push_back(std::move(s));
  for (Piece p : other.pieces_) {
    if (p.owned >= 0) p.owned += base;
    pieces_.push_back(p);
  }
  size_ += other.size_;
  other = Pieces();
}

Pieces insertField(const std::string& message, uint32_t number, Pieces body) {
  size_t split = message.size();
  for (const Field& f : fields(message)) {
    if (f.number == number) throwInternal("wire: field " + std::to_string(number) + " is already in the message");
    if (f.number > number) {
      split = f.begin;
      break;
    }
  }
  Pieces out;
  out.own(message.substr(0, split));
  std::string header;
  appendVarint(header, lengthTag(number));
  appendVarint(header, body.size());
  out.own(std::move(header));
  out.append(std::move(body));
  out.own(message.substr(split));
  return out;
}

}  // namespace ptq::onnx_io::wire
