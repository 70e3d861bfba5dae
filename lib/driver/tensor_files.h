// Tensor files named on the command line (--input, --calib): .npy and .npz through lib/calib, ONNX
// TensorProto .pb files through formats/onnx. The one reader the driver hands to calibration loading
// and to `ptq-tool run`, so that lib/calib needs no ONNX reader.
#pragma once
#include <string>

#include "lib/ir/tensor.h"

namespace ptq::driver {

// By extension: .npy, .npz (member `preferred_name`, else the only member) or .pb. Throws kInput
// naming the file.
ir::Tensor readTensorFile(const std::string& path, const std::string& preferred_name = "");

}  // namespace ptq::driver
