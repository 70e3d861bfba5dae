// NumPy .npy / .npz files and ONNX TensorProto .pb files <-> ir::Tensor.
//
// .npy: format versions 1-3, little-endian numeric and bool dtypes (f2 f4 f8, i1-i8, u1-u8, b1);
// Fortran-order arrays are converted to C order. Big-endian data is rejected with a clear error.
// .npz: a zip of NAME.npy entries, "stored" (np.savez) or deflate-compressed (np.savez_compressed;
// zlib's libz.so.1 is loaded at first use: no link flag needed, a clear error if it is missing). Zip64 records (numpy writes them) are
// understood. Writers produce .npy v1 (v2 when the header needs it) and stored .npz, atomically.
// Every error is ptq::Error(kInput) (reading) or kOutput (writing) naming the file.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "lib/ir/tensor.h"

namespace ptq::calib {

using NamedTensors = std::vector<std::pair<std::string, ir::Tensor>>;

ir::Tensor readNpy(const std::string& path);
// Parses .npy bytes; `what` names the source in errors.
ir::Tensor parseNpy(const std::string& bytes, const std::string& what);
std::string serializeNpy(const ir::Tensor& t);
void writeNpy(const std::string& path, const ir::Tensor& t);

// Arrays in file order, names without the ".npy" suffix.
NamedTensors readNpz(const std::string& path);
// Parses .npz bytes; `what` names the source in errors.
NamedTensors parseNpz(const std::string& bytes, const std::string& what);
void writeNpz(const std::string& path, const NamedTensors& arrays);
// Whether this build can read deflate-compressed .npz members (zlib linked).
bool npzDeflateAvailable();

// Reads one tensor by extension: .npy or .npz (the member named `preferred_name`, else the only
// member). Throws kInput naming the file otherwise. ONNX TensorProto (.pb) files need the ONNX
// reader, which lib/calib does not know: lib/driver's readTensorFile adds them.
ir::Tensor readTensorFile(const std::string& path, const std::string& preferred_name = "");
// How calibration loading reads a NAME=FILE or DIR/NAME.ext tensor file (path, input name).
using TensorFileReader = std::function<ir::Tensor(const std::string& path, const std::string& preferred_name)>;

}  // namespace ptq::calib
