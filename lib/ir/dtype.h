// Element types. The numeric values are ONNX's TensorProto.DataType so that the ONNX reader and
// writer convert by cast; the IR itself never includes ONNX headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ptq::ir {

enum class DType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kComplex64 = 14,
  kComplex128 = 15,
  kBFloat16 = 16,
  kFloat8E4M3FN = 17,
  kFloat8E4M3FNUZ = 18,
  kFloat8E5M2 = 19,
  kFloat8E5M2FNUZ = 20,
  kUInt4 = 21,
  kInt4 = 22,
};

// Bits per element (4 for int4/uint4, 0 for string/undefined).
int dtypeBits(DType t);
// Bytes needed to store `count` elements densely (int4 packs two per byte, rounded up).
size_t dtypeStorageBytes(DType t, int64_t count);
// "float32", "int4", ...; "dtype(N)" for values this build does not name.
std::string dtypeName(DType t);
// True for the values listed above except kUndefined.
bool dtypeIsKnown(int32_t onnx_value);
bool dtypeIsFloat(DType t);
bool dtypeIsInteger(DType t);

}  // namespace ptq::ir
