#include "lib/driver/tensor_files.h"

#include "formats/onnx/onnx_io.h"
#include "lib/calib/npy.h"

namespace ptq::driver {

ir::Tensor readTensorFile(const std::string& path, const std::string& preferred_name) {
  const std::string ext = ".pb";
  if (path.size() >= ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0)
    return onnx_io::loadTensorProtoFile(path);
  return calib::readTensorFile(path, preferred_name);
}

}  // namespace ptq::driver
