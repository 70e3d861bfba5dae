// ONNX <-> IR. The only place (with onnx_checker) that includes ONNX/protobuf headers.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lib/ir/graph.h"

namespace ptq::onnx_io {

struct LoadOptions {
  // Map the model file and its external-data files read-only and use the weights in place (an
  // initializer's raw data viewed inside the file, see raw_data_scan.h) instead of reading them into
  // memory. Off: protobuf parses the file from a stream and every weight is copied.
  bool mmap_external_data = true;
};

// Reads a .onnx file (any size; external data resolved relative to the model's folder). Large
// weights, inline or external, are views into read-only mappings of the files, not copies.
// Constant nodes become initializer values (from_constant_node = true).
// Throws ptq::Error(kInput) naming the file for: missing file, not ONNX, truncated, missing or short
// external-data file, unsupported dtype, dangling value references.
ir::Model loadModel(const std::string& path, const LoadOptions& opts = {});
// The external-data files a .onnx file refers to (its locations, relative to the model's folder,
// each once, sorted), from every graph and subgraph; the data itself is not read. Throws kInput as
// loadModel does for a file that is not ONNX.
std::vector<std::string> externalDataFiles(const std::string& path);
// Parses a model from bytes (tests; `what` names it in errors).
ir::Model loadModelFromBytes(const std::string& bytes, const std::string& what);

// --- hooks for container formats (the .ptq packer keeps its graph as an ONNX ModelProto) ---
struct EmbeddedLoadOptions {
  // Every external tensor is read from this file (whatever its location says), mapped read-only.
  std::string external_data_file;
  uint64_t external_data_base = 0;  // offsets in the graph are relative to this position of that file
  // Called on the top-level graph after its initializers and inputs exist and before any node is
  // read: the place to add initializers the bytes do not carry.
  std::function<void(ir::Graph&)> add_initializers;
};
ir::Model loadEmbeddedModel(const std::string& bytes, const std::string& what, const EmbeddedLoadOptions& opts);

// Where a container put an initializer's bytes; nullopt from the callback = leave the tensor out.
struct TensorPlacement {
  bool keep_inline = false;  // store the bytes in the serialized graph itself (small tensors)
  std::string location;
  uint64_t offset = 0;
  uint64_t length = 0;
};
using PlaceInitializer = std::function<std::optional<TensorPlacement>(const ir::Value&)>;
// Serializes the model; each top-level initializer (incl. Constant-node weights) goes through
// `place`: stored as external data at the returned placement, or omitted.
std::string serializeModelWithPlacement(const ir::Model& model, const PlaceInitializer& place);
// Parses the ONNX text format (onnx::OnnxParser), e.g. tests:
//   <ir_version: 8, opset_import: ["" : 17]> g (float[2,3] x) => (float[2,3] y) { y = Relu(x) }
ir::Model parseModelText(const std::string& text);

struct SaveOptions {
  enum class ExternalData { kAuto, kAlways, kNever };
  // kAuto: external data when the serialized model would exceed protobuf's 2 GiB limit.
  ExternalData external_data = ExternalData::kAuto;
  // Tensors at least this large go to the external-data file when it is used.
  size_t external_threshold_bytes = 1024;
};

// Writes the model atomically: to temp files in the target folder, then renamed. External data goes
// to "<file name>.data" beside it (location stored relative). Throws kOutput on write errors.
void saveModel(const ir::Model& model, const std::string& path, const SaveOptions& opts = {});
// Serializes to bytes (no external data; throws if over 2 GiB).
std::string serializeModel(const ir::Model& model);

// A TensorProto file (.pb, as in ONNX's test data sets).
ir::Tensor loadTensorProtoFile(const std::string& path, std::string* name = nullptr);

// onnx::checker on a written model file (full check, incl. shape inference when strict). Returns
// an empty string when valid, else the checker's message. Opsets newer than libonnx knows are
// reported as "unchecked: ..." (not an error).
std::string checkModelFile(const std::string& path);
// The highest default-domain opset this build's libonnx knows.
int64_t maxKnownOpset();

}  // namespace ptq::onnx_io
