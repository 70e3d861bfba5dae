// Splicing large bytes fields into a serialized protobuf message without copying them.
//
// Protobuf writes a message's fields in field-number order. So a message serialized with one bytes
// field left out can be completed by inserting that field before the first field with a larger
// number, and the result is byte for byte what protobuf would have written with the field set. The
// ONNX writer uses this to stream weights from their buffers: it serializes the model with the
// large initializers' raw_data left out (kilobytes) and writes the rest around the tensors' bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ptq::onnx_io::wire {

// One top-level field of a serialized message: bytes [begin, end) hold its tag and payload;
// for length-delimited fields [payload, end) is the payload.
struct Field {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  size_t begin = 0, payload = 0, end = 0;
};

// The top-level fields of `bytes`, in order. Throws ptq::Error (internal) on malformed input: the
// bytes always come from protobuf's own serializer here.
std::vector<Field> fields(const std::string& bytes);

size_t varintSize(uint64_t v);
void appendVarint(std::string& out, uint64_t v);
// Tag of a length-delimited field.
inline uint64_t lengthTag(uint32_t number) { return (uint64_t{number} << 3) | 2u; }

// A serialized message as a list of pieces: bytes it owns, and borrowed ranges (tensor buffers)
// that stay where they are until written.
class Pieces {
 public:
  void own(std::string s);
  void borrow(const void* data, size_t n);
  void append(Pieces&& other);
  size_t size() const { return size_; }
  // Calls write(data, n) for each piece in order.
  template <class Write>
  void writeTo(Write&& write) const {
    for (const Piece& p : pieces_) {
      const char* data = p.owned >= 0 ? owned_[static_cast<size_t>(p.owned)].data() : p.data;
      if (p.n) write(data, p.n);
    }
  }

 private:
  struct Piece {
    const char* data = nullptr;
    size_t n = 0;
    long owned = -1;  // index into owned_, which may reallocate: no pointers into it are kept
  };
  std::vector<std::string> owned_;
  std::vector<Piece> pieces_;
  size_t size_ = 0;
};

// `message` (serialized, without field `number`) with that length-delimited field inserted where
// protobuf would put it, holding `body`.
Pieces insertField(const std::string& message, uint32_t number, Pieces body);

}  // namespace ptq::onnx_io::wire
