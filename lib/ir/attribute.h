// Node attributes. Kinds mirror ONNX AttributeProto; sparse tensors and type protos are kept as
// the serialized AttributeProto bytes (`opaque`) so they round-trip without the IR knowing them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lib/ir/tensor.h"

namespace ptq::ir {

class Graph;

struct Attribute {
  enum class Kind { kFloat, kInt, kString, kTensor, kGraph, kFloats, kInts, kStrings, kTensors, kGraphs, kOpaque };
  Kind kind = Kind::kInt;
  float f = 0;
  int64_t i = 0;
  std::string s;  // also holds the serialized AttributeProto for kOpaque
  Tensor t;
  std::shared_ptr<Graph> g;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::vector<Tensor> tensors;
  std::vector<std::shared_ptr<Graph>> graphs;
  std::string doc_string;
  std::string ref_attr_name;  // inside functions: refers to the caller's attribute

  static Attribute ofInt(int64_t v) { Attribute a; a.kind = Kind::kInt; a.i = v; return a; }
  static Attribute ofFloat(float v) { Attribute a; a.kind = Kind::kFloat; a.f = v; return a; }
  static Attribute ofString(std::string v) { Attribute a; a.kind = Kind::kString; a.s = std::move(v); return a; }
  static Attribute ofInts(std::vector<int64_t> v) { Attribute a; a.kind = Kind::kInts; a.ints = std::move(v); return a; }
  static Attribute ofFloats(std::vector<float> v) { Attribute a; a.kind = Kind::kFloats; a.floats = std::move(v); return a; }
  static Attribute ofTensor(Tensor v) { Attribute a; a.kind = Kind::kTensor; a.t = std::move(v); return a; }
};

}  // namespace ptq::ir
