// Parsing a serialized model without copying its weights.
//
// Protobuf's parser copies every bytes field into a std::string, so parsing a model with inline weights
// held each weight twice (the file's bytes and the copy) and spent most of loading in memcpy and in
// zeroing the copies' pages. A message is the concatenation of its fields, and parsing is defined as
// merging them one after another, so a model can be parsed in pieces: everything but the top-level
// graph's initializers' large raw_data fields goes through protobuf as usual, and those fields are
// left where they are in the caller's buffer (an mmap of the file) for the tensors to view.
#pragma once
#include <cstddef>
#include <vector>

#include <onnx/onnx_pb.h>

namespace ptq::onnx_io {

// Where initializer i's raw data lies in the parsed buffer; size 0 = not taken out (the
// TensorProto kept whatever raw_data it had).
struct RawDataRange {
  const char* data = nullptr;
  size_t size = 0;
};

// Parses the ModelProto in [bytes, bytes + n) into `mp` (cleared first), leaving out the raw_data of
// every top-level graph initializer whose raw_data is at least `min_bytes` long; ranges[i] says where
// that of initializer i is. The result is what protobuf's own parse gives, minus those fields.
// Returns false when the bytes are not a well-formed message of the shape this expects (e.g. the
// graph field appears twice, or a tensor's raw_data does): the caller then parses them whole, which
// also produces the error for a bad file.
bool parseModelWithoutRawData(const char* bytes, size_t n, size_t min_bytes, onnx::ModelProto& mp,
                              std::vector<RawDataRange>& ranges);

}  // namespace ptq::onnx_io
