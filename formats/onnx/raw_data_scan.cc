#include "formats/onnx/raw_data_scan.h"

#include <climits>
#include <cstdint>

#include <google/protobuf/io/coded_stream.h>

namespace ptq::onnx_io {
namespace {

constexpr uint32_t kModelGraph = 7, kGraphInitializer = 5, kTensorRawData = 9;

struct Field {
  uint32_t number = 0, wire_type = 0;
  size_t begin = 0, payload = 0, end = 0;  // tag at begin; a length-delimited payload is [payload, end)
};

bool readVarint(const char* b, size_t n, size_t* at, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *at < n; shift += 7) {
    const auto byte = static_cast<uint8_t>(b[(*at)++]);
    *v |= uint64_t{byte & 0x7Fu} << shift;
    if (!(byte & 0x80u)) return true;
  }
  return false;
}

// The top-level fields of [b, b + n); false on anything malformed or a group (wire types 3/4).
bool scanFields(const char* b, size_t n, std::vector<Field>& out) {
  out.clear();
  size_t at = 0;
  while (at < n) {
    Field f;
    f.begin = at;
    uint64_t tag = 0, v = 0;
    if (!readVarint(b, n, &at, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX) return false;
    f.number = static_cast<uint32_t>(tag >> 3);
    f.wire_type = static_cast<uint32_t>(tag & 7u);
    switch (f.wire_type) {
      case 0: if (!readVarint(b, n, &at, &v)) return false; break;
      case 1: if (n - at < 8) return false; at += 8; break;
      case 5: if (n - at < 4) return false; at += 4; break;
      case 2:
        if (!readVarint(b, n, &at, &v) || v > n - at) return false;
        f.payload = at;
        at += static_cast<size_t>(v);
        break;
      default: return false;
    }
    f.end = at;
    out.push_back(f);
  }
  return true;
}

// `depth`: how deep inside the ModelProto `msg` sits, so that nesting is limited exactly as in a
// parse of the whole model.
bool merge(google::protobuf::MessageLite& msg, const char* b, size_t n, int depth) {
  using google::protobuf::io::CodedInputStream;
  if (n == 0) return true;
  if (n > static_cast<size_t>(INT_MAX)) return false;
  CodedInputStream in(reinterpret_cast<const uint8_t*>(b), static_cast<int>(n));
  in.SetTotalBytesLimit(INT_MAX);
  in.SetRecursionLimit(CodedInputStream::GetDefaultRecursionLimit() - depth);
  return msg.MergeFromCodedStream(&in) && in.ConsumedEntireMessage();
}

// Merges the fields of [b, b + n) into `msg` except those for which skip(field) is true, in runs of
// consecutive kept fields (no copies).
template <class Skip>
bool mergeExcept(google::protobuf::MessageLite& msg, const char* b, const std::vector<Field>& fields, int depth,
                 Skip&& skip) {
  size_t run = 0, run_end = 0;
  bool in_run = false;
  for (const Field& f : fields) {
    if (skip(f)) {
      if (in_run && !merge(msg, b + run, run_end - run, depth)) return false;
      in_run = false;
      continue;
    }
    if (!in_run) run = f.begin;
    in_run = true;
    run_end = f.end;
  }
  return !in_run || merge(msg, b + run, run_end - run, depth);
}

}  // namespace

bool parseModelWithoutRawData(const char* bytes, size_t n, size_t min_bytes, onnx::ModelProto& mp,
                              std::vector<RawDataRange>& ranges) {
  mp.Clear();
  ranges.clear();
  std::vector<Field> top, graph, tensor;
  if (!scanFields(bytes, n, top)) return false;
  const Field* graph_field = nullptr;
  for (const Field& f : top) {
    if (f.number != kModelGraph) continue;
    if (graph_field || f.wire_type != 2) return false;  // a second graph merges into the first: leave it to protobuf
    graph_field = &f;
  }
  if (!graph_field) return false;
  const char* g = bytes + graph_field->payload;
  if (!scanFields(g, graph_field->end - graph_field->payload, graph)) return false;

  onnx::GraphProto gp;
  if (!mergeExcept(gp, g, graph, 1, [](const Field& f) { return f.number == kGraphInitializer; })) return false;
  for (const Field& f : graph) {
    if (f.number != kGraphInitializer) continue;
    if (f.wire_type != 2) return false;
    const char* t = g + f.payload;
    const size_t tn = f.end - f.payload;
    if (!scanFields(t, tn, tensor)) return false;
    const Field* raw = nullptr;
    for (const Field& tf : tensor) {
      if (tf.number != kTensorRawData) continue;
      if (raw || tf.wire_type != 2) return false;  // last one wins in protobuf: not worth imitating
      raw = &tf;
    }
    onnx::TensorProto* tp = gp.add_initializer();
    RawDataRange range;
    if (raw && raw->end - raw->payload >= min_bytes) {
      if (!mergeExcept(*tp, t, tensor, 2, [](const Field& tf) { return tf.number == kTensorRawData; })) return false;
      range = {t + raw->payload, raw->end - raw->payload};
    } else if (!merge(*tp, t, tn, 2)) {
      return false;
    }
    ranges.push_back(range);
  }
  if (!mergeExcept(mp, bytes, top, 0, [](const Field& f) { return f.number == kModelGraph; })) return false;
  mp.mutable_graph()->Swap(&gp);
  return true;
}

}  // namespace ptq::onnx_io
