// The contract between the executor (plan.cc) and the operator kernels (ops/*.cc).
//
// A kernel factory runs once, when a Session is planned: it reads the node's attributes, checks the
// input dtypes it is given (kUndefined = omitted optional input or not known statically), fills in
// the output dtypes and returns the Kernel, a callable that runs the node on one batch. Everything a
// factory rejects is an error at plan time, naming the node ("node 'x' (Conv): unsupported ...").
//
// At run time a kernel receives its inputs by value (an omitted optional input is an empty Tensor)
// and writes its outputs. Output buffers come from ExecContext::alloc (uninitialised, pooled) and
// are written through outData<T>(); a kernel may also return an input or a reshaped() alias of it
// (zero-copy Reshape/Squeeze/Identity). An input the graph no longer needs after this node is
// *moved* in, so ExecContext::reuse() can hand its buffer to the output (in-place elementwise ops).
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "lib/ir/graph.h"

namespace ptq::runtime {

using ir::DType;
using ir::Shape;
using ir::Tensor;
using TensorList = std::vector<Tensor>;

class BufferPool;
class Plan;
struct Frame;
struct PlanScope;
struct PlanOptions;

// Run-time services for kernels. Not thread-safe: call alloc/reuse outside OpenMP regions.
class ExecContext {
 public:
  ExecContext(BufferPool& pool, int threads) : pool_(pool), threads_(threads) {}
  int threads() const { return threads_; }
  // Uninitialised pooled buffer (64-byte aligned). Write it with outData<T>().
  Tensor alloc(DType dtype, Shape shape);
  Tensor allocZeroed(DType dtype, Shape shape);
  // `donor`'s buffer when nothing else holds it and it is large enough (donor is then emptied),
  // else a fresh alloc(). Lets elementwise kernels write in place.
  Tensor reuse(Tensor& donor, DType dtype, Shape shape);
  BufferPool& pool() { return pool_; }
  // Enclosing scopes' values, for subgraph kernels (If/Loop).
  const Frame* frame = nullptr;

 private:
  BufferPool& pool_;
  int threads_;
};

// Writable pointer into a tensor obtained from ExecContext::alloc/reuse.
template <typename T>
inline T* outData(Tensor& t) { return static_cast<T*>(const_cast<void*>(t.data())); }

using Kernel = std::function<void(ExecContext& ctx, TensorList& in, TensorList& out)>;

// What a factory knows about its node when the session is planned.
struct NodeInfo {
  explicit NodeInfo(const ir::Node& n) : node(n) {}
  const ir::Node& node;
  int64_t opset = 0;                          // version of the node's domain
  std::vector<DType> in_types;                // per input slot; kUndefined = omitted / unknown
  std::vector<const Tensor*> in_consts;       // initializer behind each input, or nullptr
  const PlanScope* scope = nullptr;           // enclosing plan, for subgraph kernels
  const PlanOptions* options = nullptr;
  std::vector<std::string>* problems = nullptr;  // inspect mode: subgraph plans collect, not throw

  size_t numInputs() const { return in_types.size(); }
  bool hasInput(size_t i) const { return i < node.numInputs() && node.input(i) != nullptr; }
  DType inType(size_t i) const { return i < in_types.size() ? in_types[i] : DType::kUndefined; }
  const Tensor* constInput(size_t i) const { return i < in_consts.size() ? in_consts[i] : nullptr; }
  // Throws ptq::Error(kInput) "node 'n' (Op): unsupported: <why>".
  [[noreturn]] void unsupported(const std::string& why) const;
  // Input i must have one of `allowed` dtypes (unknown passes; checked again at run time by kernels).
  void requireType(size_t i, std::initializer_list<DType> allowed) const;
  // Inputs in [first, last] (present ones) must share input `first`'s dtype.
  void requireSameType(size_t first, size_t last) const;
  void requireInputs(size_t min_count, size_t max_count) const;
  // Attribute readers with opset-independent defaults.
  int64_t attrInt(const std::string& n, int64_t dflt) const { return node.attrInt(n, dflt); }
  float attrFloat(const std::string& n, float dflt) const { return node.attrFloat(n, dflt); }
  std::string attrString(const std::string& n, const std::string& dflt) const { return node.attrString(n, dflt); }
  std::vector<int64_t> attrInts(const std::string& n) const { return node.attrInts(n); }
  std::vector<float> attrFloats(const std::string& n) const;
};

using KernelFactory = Kernel (*)(const NodeInfo& info, std::vector<DType>& out_types);

// "node 'name' (Op)", or "node <output 'y'> (Op)" when the node has no name.
std::string describeNode(const ir::Node& n);

// Throws ptq::Error(kInput) with the message (kernels' run-time checks: shapes, values).
[[noreturn]] void runError(const std::string& msg);

}  // namespace ptq::runtime
