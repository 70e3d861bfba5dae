#include "lib/ir/dtype.h"

namespace ptq::ir {

int dtypeBits(DType t) {
  switch (t) {
    case DType::kFloat32: case DType::kInt32: case DType::kUInt32: return 32;
    case DType::kUInt8: case DType::kInt8: case DType::kBool:
    case DType::kFloat8E4M3FN: case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2: case DType::kFloat8E5M2FNUZ: return 8;
    case DType::kUInt16: case DType::kInt16: case DType::kFloat16: case DType::kBFloat16: return 16;
    case DType::kInt64: case DType::kUInt64: case DType::kFloat64: case DType::kComplex64: return 64;
    case DType::kComplex128: return 128;
    case DType::kUInt4: case DType::kInt4: return 4;
    case DType::kString: case DType::kUndefined: return 0;
  }
  return 0;
}

size_t dtypeStorageBytes(DType t, int64_t count) {
  const int bits = dtypeBits(t);
  return static_cast<size_t>((count * bits + 7) / 8);
}

std::string dtypeName(DType t) {
  switch (t) {
    case DType::kUndefined: return "undefined";
    case DType::kFloat32: return "float32";
    case DType::kUInt8: return "uint8";
    case DType::kInt8: return "int8";
    case DType::kUInt16: return "uint16";
    case DType::kInt16: return "int16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kString: return "string";
    case DType::kBool: return "bool";
    case DType::kFloat16: return "float16";
    case DType::kFloat64: return "float64";
    case DType::kUInt32: return "uint32";
    case DType::kUInt64: return "uint64";
    case DType::kComplex64: return "complex64";
    case DType::kComplex128: return "complex128";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat8E4M3FN: return "float8e4m3fn";
    case DType::kFloat8E4M3FNUZ: return "float8e4m3fnuz";
    case DType::kFloat8E5M2: return "float8e5m2";
    case DType::kFloat8E5M2FNUZ: return "float8e5m2fnuz";
    case DType::kUInt4: return "uint4";
    case DType::kInt4: return "int4";
  }
  return "dtype(" + std::to_string(static_cast<int>(t)) + ")";
}

bool dtypeIsKnown(int32_t v) { return v >= 1 && v <= 22; }

bool dtypeIsFloat(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kFloat64 || t == DType::kBFloat16;
}

bool dtypeIsInteger(DType t) {
  switch (t) {
    case DType::kUInt8: case DType::kInt8: case DType::kUInt16: case DType::kInt16: case DType::kInt32:
    case DType::kInt64: case DType::kUInt32: case DType::kUInt64: case DType::kUInt4: case DType::kInt4:
      return true;
    default: return false;
  }
}

}  // namespace ptq::ir
