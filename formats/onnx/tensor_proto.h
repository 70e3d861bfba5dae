// TensorProto <-> ir::Tensor (internal to formats/onnx; includes the ONNX protobuf classes).
#pragma once
#include <map>
#include <memory>
#include <string>

#include <onnx/onnx_pb.h>

#include "lib/ir/tensor.h"

namespace ptq::onnx_io {

// Resolves external-data files for one model: maps each file once (read-only) and hands out views.
class ExternalDataResolver {
 public:
  ExternalDataResolver(std::string model_dir, std::string model_path, bool use_mmap)
      : model_dir_(std::move(model_dir)), model_path_(std::move(model_path)), use_mmap_(use_mmap) {}
  // Reads every external tensor from `path` (an absolute or working-directory path), whatever its
  // location, with offsets counted from `base_offset`.
  void forceFile(std::string path, uint64_t base_offset) {
    forced_file_ = std::move(path);
    base_offset_ = base_offset;
  }
  // Bytes [offset, offset+length) of `location` (relative to the model's folder).
  // length < 0 means "to the end of the file". Throws kInput naming the tensor and the file.
  ir::Tensor read(const std::string& tensor_name, ir::DType dtype, ir::Shape shape, const std::string& location,
                  int64_t offset, int64_t length);

 private:
  struct Mapping {
    std::shared_ptr<const void> base;
    size_t size = 0;
  };
  const Mapping& open(const std::string& tensor_name, const std::string& location);
  std::string model_dir_;
  std::string model_path_;
  bool use_mmap_;
  std::string forced_file_;
  uint64_t base_offset_ = 0;
  std::map<std::string, Mapping> files_;
};

// Raw data that stayed in the model file's buffer (raw_data_scan.h), kept alive by `keepalive`.
struct RawDataView {
  const void* data = nullptr;
  size_t size = 0;
  std::shared_ptr<const void> keepalive;
};

// Converts a TensorProto; `what` names it in errors (e.g. "initializer 'w'"). `resolver` may be null
// when external data is not allowed (attribute tensors of text-parsed models).
// The proto's raw_data is moved out (zero-copy), so the proto is left without its data. `raw`, when
// given, is the raw_data the proto was parsed without: the tensor views it in place.
ir::Tensor tensorFromProto(onnx::TensorProto& proto, const std::string& what, ExternalDataResolver* resolver,
                           const RawDataView* raw = nullptr);
// Fills `proto` with name, dims, dtype and inline raw data (string_data for strings).
void tensorToProto(const ir::Tensor& t, const std::string& name, onnx::TensorProto& proto);

}  // namespace ptq::onnx_io
