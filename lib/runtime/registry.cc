// The one table of operators the executor runs. A factory that serves several op types reads
// node.opType(); opset-dependent behaviour (attributes that became inputs, changed defaults) is
// decided inside the factory from NodeInfo::opset.
#include "lib/runtime/registry.h"

#include <unordered_map>

#include "lib/runtime/ops/ops.h"

namespace ptq::runtime {

namespace {
using namespace ops;
constexpr const char* kMs = "com.microsoft";

const std::vector<OpEntry>& table() {
  static const std::vector<OpEntry> t = {
      // unary.cc
      {"", "Abs", makeUnary}, {"", "Acos", makeUnary}, {"", "Acosh", makeUnary}, {"", "Asin", makeUnary},
      {"", "Asinh", makeUnary}, {"", "Atan", makeUnary}, {"", "Atanh", makeUnary}, {"", "Ceil", makeUnary},
      {"", "Celu", makeUnary}, {"", "Cos", makeUnary}, {"", "Cosh", makeUnary}, {"", "Elu", makeUnary},
      {"", "Erf", makeUnary}, {"", "Exp", makeUnary}, {"", "Floor", makeUnary}, {"", "Gelu", makeUnary},
      {"", "HardSigmoid", makeUnary}, {"", "HardSwish", makeUnary}, {"", "IsInf", makeUnary},
      {"", "IsNaN", makeUnary}, {"", "LeakyRelu", makeUnary}, {"", "Log", makeUnary}, {"", "Mish", makeUnary},
      {"", "Neg", makeUnary}, {"", "Not", makeUnary}, {"", "Reciprocal", makeUnary}, {"", "Relu", makeUnary},
      {"", "Round", makeUnary}, {"", "Selu", makeUnary}, {"", "Shrink", makeUnary}, {"", "Sigmoid", makeUnary},
      {"", "Sign", makeUnary}, {"", "Sin", makeUnary}, {"", "Sinh", makeUnary}, {"", "Softplus", makeUnary},
      {"", "Softsign", makeUnary}, {"", "Sqrt", makeUnary}, {"", "Tan", makeUnary}, {"", "Tanh", makeUnary},
      {"", "ThresholdedRelu", makeUnary}, {kMs, "Gelu", makeUnary}, {kMs, "FastGelu", makeUnary},
      {"", "Clip", makeClip},
      // binary.cc
      {"", "Add", makeBinary}, {"", "Sub", makeBinary}, {"", "Mul", makeBinary}, {"", "Div", makeBinary},
      {"", "Pow", makeBinary}, {"", "Mod", makeBinary}, {"", "PRelu", makeBinary}, {"", "Equal", makeBinary},
      {"", "Less", makeBinary}, {"", "LessOrEqual", makeBinary}, {"", "Greater", makeBinary},
      {"", "GreaterOrEqual", makeBinary}, {"", "And", makeBinary}, {"", "Or", makeBinary}, {"", "Xor", makeBinary},
      {"", "BitShift", makeBinary}, {"", "Max", makeVariadic}, {"", "Min", makeVariadic},
      {"", "Sum", makeVariadic}, {"", "Mean", makeVariadic}, {"", "Where", makeWhere},
      // cast.cc
      {"", "Cast", makeCast}, {"", "CastLike", makeCastLike},
      // matmul_gemm.cc
      {"", "MatMul", makeMatMul}, {"", "Gemm", makeGemm},
      // conv.cc
      {"", "Conv", makeConv}, {"", "ConvTranspose", makeConvTranspose},
      // pool.cc
      {"", "MaxPool", makePool}, {"", "AveragePool", makePool}, {"", "LpPool", makePool},
      {"", "GlobalMaxPool", makeGlobalPool}, {"", "GlobalAveragePool", makeGlobalPool},
      {"", "GlobalLpPool", makeGlobalPool},
      // norm.cc
      {"", "BatchNormalization", makeBatchNorm}, {"", "LayerNormalization", makeLayerNorm},
      {"", "InstanceNormalization", makeInstanceNorm}, {kMs, "SimplifiedLayerNormalization", makeSimplifiedLayerNorm},
      {"", "SimplifiedLayerNormalization", makeSimplifiedLayerNorm}, {kMs, "SkipLayerNormalization", makeLayerNorm},
      // softmax.cc
      {"", "Softmax", makeSoftmax}, {"", "LogSoftmax", makeSoftmax}, {"", "Hardmax", makeSoftmax},
      // reduce.cc
      {"", "ReduceMean", makeReduce}, {"", "ReduceSum", makeReduce}, {"", "ReduceMax", makeReduce},
      {"", "ReduceMin", makeReduce}, {"", "ReduceProd", makeReduce}, {"", "ReduceL1", makeReduce},
      {"", "ReduceL2", makeReduce}, {"", "ReduceSumSquare", makeReduce}, {"", "ReduceLogSum", makeReduce},
      {"", "ReduceLogSumExp", makeReduce}, {"", "ArgMax", makeArgMinMax}, {"", "ArgMin", makeArgMinMax},
      // shape_ops.cc
      {"", "Shape", makeShape}, {"", "Size", makeSize}, {"", "Reshape", makeReshape}, {"", "Flatten", makeFlatten},
      {"", "Squeeze", makeSqueeze}, {"", "Unsqueeze", makeUnsqueeze}, {"", "Identity", makeIdentity},
      {"", "Dropout", makeIdentity}, {"", "Expand", makeExpand}, {"", "ConstantOfShape", makeConstantOfShape},
      {"", "Constant", makeConstant}, {"", "Range", makeRange},
      // layout.cc
      {"", "Transpose", makeTranspose}, {"", "Concat", makeConcat}, {"", "Split", makeSplit}, {"", "Tile", makeTile},
      {"", "DepthToSpace", makeDepthToSpace}, {"", "SpaceToDepth", makeDepthToSpace},
      // gather_slice.cc
      {"", "Gather", makeGather}, {"", "GatherElements", makeGatherElements}, {"", "Slice", makeSlice},
      {"", "Trilu", makeTrilu},
      // resize_pad.cc
      {"", "Resize", makeResize}, {"", "Pad", makePad},
      // control_flow.cc
      {"", "If", makeIf}, {"", "Loop", makeLoop},
      // rnn.cc
      {"", "LSTM", makeLSTM},
      // index_ops.cc
      {"", "CumSum", makeCumSum}, {"", "TopK", makeTopK}, {"", "NonZero", makeNonZero}, {"", "OneHot", makeOneHot},
      {"", "EyeLike", makeEyeLike}, {"", "GatherND", makeGatherND}, {"", "ScatterND", makeScatter},
      {"", "ScatterElements", makeScatter},
      // quant_ops.cc
      {"", "QuantizeLinear", makeQuantizeLinear}, {"", "DequantizeLinear", makeDequantizeLinear},
      {"", "DynamicQuantizeLinear", makeDynamicQuantizeLinear},
      {kMs, "MatMulNBits", makeMatMulNBits},
      // integer_ops.cc
      {"", "MatMulInteger", makeMatMulInteger}, {"", "ConvInteger", makeConvInteger},
  };
  return t;
}

std::string key(const std::string& domain, const std::string& op) {
  return (domain == "ai.onnx" ? std::string() : domain) + "::" + op;
}
}  // namespace

KernelFactory findKernelFactory(const std::string& domain, const std::string& op_type) {
  static const std::unordered_map<std::string, KernelFactory> index = [] {
    std::unordered_map<std::string, KernelFactory> m;
    for (const OpEntry& e : table()) m[key(e.domain, e.op_type)] = e.make;
    return m;
  }();
  auto it = index.find(key(domain, op_type));
  return it == index.end() ? nullptr : it->second;
}

const std::vector<OpEntry>& registeredOps() { return table(); }

}  // namespace ptq::runtime
