// The graph IR: Model -> Graph -> Node / Value.
//
// Ownership: a Graph owns its Nodes and Values (std::list of unique_ptr, so pointers stay stable
// while other nodes/values are added or removed). Node inputs/outputs and Graph inputs/outputs are
// raw pointers into that storage.
// Invalidation: a Node* or Value* stays valid until that node/value is erased from its Graph
// (eraseNode / eraseValue / removeDeadCode) or the Graph is destroyed. Adding nodes or values never
// invalidates anything. Use lists (Value::uses) are kept up to date by Node::setInput / Graph::addNode
// / Graph::eraseNode; do not edit Node::inputs directly.
//
// Constants: a Value with `initializer` set is a weight. The ONNX reader turns `Constant` nodes into
// such values too (marked from_constant_node) so passes see one kind of weight; the writer turns them
// back into Constant nodes.
// Subgraphs (If/Loop/Scan bodies) are Graphs held by attributes; a name they use but do not define
// is an outer-scope reference: a Value with kind kOuterScope, resolved by name at run time.
#pragma once
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib/ir/attribute.h"
#include "lib/ir/tensor.h"
#include "lib/quant/grid.h"

namespace ptq::ir {

class Node;
class Graph;

// One dimension of a value's static shape: a number, a symbol ("batch"), or unknown.
struct Dim {
  int64_t value = -1;   // >= 0 when known
  std::string symbol;   // dim_param when not known
  bool known() const { return value >= 0; }
};

// Quantized form of a weight, attached by a quantization pass (rtn, gptq, ...) and lowered by a
// writer (DequantizeLinear, MatMulNBits or the packed file). Codes are one per byte (int8 or uint8
// tensor with the weight's shape) whatever `bits` is; writers pack them.
//   value = (code - zero_point) * scale
// The granularities (quant::Granularity) are exactly ONNX DequantizeLinear's forms:
//   kTensor:  scales shape [] (scalar).
//   kChannel: `axis` is the channel axis; scales shape [dim(axis)].
//   kGroup:   `axis` is the blocked (reduction) axis; scales have the weight's shape with
//             dim(axis) replaced by ceil(dim(axis) / block_size).
// bits == 32 marks an int32 bias (codes int32, symmetric, no zero point; scale s_x * s_w), attached
// by the qdq pass so that the executor and the writers see the same bias the file will hold.
struct QuantizedWeight {
  using Granularity = quant::Granularity;
  int bits = 8;            // 2..8, or 32 (int32 bias)
  bool is_signed = true;   // codes in [-2^(b-1), 2^(b-1)-1] (int8 bytes) vs [0, 2^b-1] (uint8 bytes)
  bool symmetric = true;   // zero point fixed (0 signed, 2^(b-1) unsigned); zero_points may be omitted
  Granularity granularity = Granularity::kChannel;
  int64_t axis = 0;
  int64_t block_size = 0;  // kGroup only
  Tensor codes;            // int8 / uint8, the weight's shape
  Tensor scales;           // float32
  Tensor zero_points;      // int8 / uint8 like codes, scales' shape
  // Error figures of the dequantized weight against the float one, for the report.
  double mse = 0;
  double sqnr_db = 0;
  std::string method;      // "rtn", "gptq", ...
};

// Activation quantization parameters for a value (per-tensor or per-axis), attached by the qdq pass.
// Static: `scale` and `zero_point` hold the calibrated parameters. Dynamic: they are empty; the
// parameters are computed from the tensor itself at run time, over the whole tensor or (per_token)
// over each row of the last axis, on the grid of `dtype`: unsigned dtypes are asymmetric
// (range [min(x,0), max(x,0)], as DynamicQuantizeLinear), signed ones symmetric (max|x|, zero 0).
// How each form is written and simulated: lib/ir/dynamic_quant.h.
struct ActivationQuant {
  DType dtype = DType::kUInt8;
  int64_t axis = -1;
  Tensor scale;
  Tensor zero_point;
  bool dynamic = false;
  bool per_token = false;  // dynamic only
};

class Value {
 public:
  enum class Kind { kIntermediate, kGraphInput, kInitializer, kOuterScope };
  struct Use {
    Node* node;
    int index;  // input slot
  };

  const std::string& name() const { return name_; }
  Kind kind() const { return kind_; }
  Node* producer() const { return producer_; }
  int producerOutputIndex() const { return producer_index_; }
  const std::vector<Use>& uses() const { return uses_; }
  bool isConstant() const { return kind_ == Kind::kInitializer; }

  // Static type information (from graph inputs/outputs/value_info, or set by passes).
  DType dtype = DType::kUndefined;
  std::optional<std::vector<Dim>> shape;  // nullopt = unknown rank
  bool has_type = false;                   // whether to write a type for this value
  std::string type_opaque;                 // serialized TypeProto for non-tensor types (sequence, map, optional)
  std::string doc_string;
  bool in_value_info = false;              // listed in the graph's value_info

  // Weight data (kind == kInitializer).
  Tensor initializer;
  bool from_constant_node = false;          // came from a Constant node; written back as one
  bool external_data = false;               // the file kept its bytes in an external-data file
  std::string constant_node_name;           // that node's name
  std::string constant_node_attr;           // its attribute (value, value_float, value_ints, ...)
  std::shared_ptr<QuantizedWeight> quant;   // set by weight quantization passes
  std::shared_ptr<ActivationQuant> act_quant;  // set by activation quantization passes

 private:
  friend class Graph;
  friend class Node;
  std::string name_;
  Kind kind_ = Kind::kIntermediate;
  Node* producer_ = nullptr;
  int producer_index_ = -1;
  std::vector<Use> uses_;
};

class Node {
 public:
  const std::string& opType() const { return op_type_; }
  const std::string& domain() const { return domain_; }  // "" for ai.onnx
  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& outputs() const { return outputs_; }
  Value* input(size_t i) const { return i < inputs_.size() ? inputs_[i] : nullptr; }
  Value* output(size_t i) const { return i < outputs_.size() ? outputs_[i] : nullptr; }
  size_t numInputs() const { return inputs_.size(); }
  size_t numOutputs() const { return outputs_.size(); }
  Graph* graph() const { return graph_; }

  // Rewires input slot i (nullptr = omitted optional input), keeping use lists right.
  void setInput(size_t i, Value* v);
  void addInput(Value* v);

  std::string name;
  std::string doc_string;
  std::string overload;  // NodeProto.overload (functions); kept as-is
  std::map<std::string, Attribute> attrs;  // ordered: the writer emits them sorted, deterministically

  bool hasAttr(const std::string& n) const { return attrs.count(n) != 0; }
  int64_t attrInt(const std::string& n, int64_t dflt) const;
  float attrFloat(const std::string& n, float dflt) const;
  std::string attrString(const std::string& n, const std::string& dflt) const;
  std::vector<int64_t> attrInts(const std::string& n) const;  // empty when absent
  // "node 'name' (OpType)", or "node <output 'y'> (OpType)" for an unnamed node, for error messages.
  std::string describe() const;

 private:
  friend class Graph;
  std::string op_type_;
  std::string domain_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  Graph* graph_ = nullptr;
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  std::string name;
  std::string doc_string;
  // Serialized SparseTensorProto initializers, kept as-is.
  std::vector<std::string> sparse_initializers_opaque;
  Graph* parent = nullptr;  // enclosing graph for subgraphs

  // --- values ---
  // Creates a value; throws if the name is taken in this graph. Empty name => a fresh unique one.
  Value* addValue(const std::string& name, Value::Kind kind = Value::Kind::kIntermediate);
  Value* addInitializer(const std::string& name, Tensor t);
  Value* addInput(const std::string& name, DType dtype, std::optional<std::vector<Dim>> shape);
  Value* findValue(const std::string& name) const;
  // A name not used by any value in this graph, derived from `base`.
  std::string uniqueName(const std::string& base);
  // Removes a value with no producer and no uses (and not a graph input/output).
  void eraseValue(Value* v);
  // Gives `v` a new name, free in this graph (throws kInternal otherwise). Subgraphs read enclosing
  // values by name: renaming a value they read is how a writer keeps such a read pointing at a
  // replacement (see legalize's lowering of outer-scope weights).
  void renameValue(Value* v, const std::string& new_name);

  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& outputs() const { return outputs_; }
  // Initializers in file order (then ones added by passes).
  std::vector<Value*> initializers() const;
  void addOutput(Value* v) { outputs_.push_back(v); }
  void setOutput(size_t i, Value* v) { outputs_.at(i) = v; }
  // Graph inputs that are not initializers (ONNX allows initializers to also be listed as inputs).
  std::vector<Value*> realInputs() const;
  bool isGraphOutput(const Value* v) const;
  // Marks an initializer as also listed in graph.input (old-IR-version models).
  void markInitializerAsInput(Value* v) { inputs_.push_back(v); }

  // --- nodes ---
  // Creates a node at the end (or before `before`) with new output values named `outputs`
  // (empty name => omitted optional output: nullptr).
  Node* addNode(const std::string& op_type, const std::vector<Value*>& inputs,
                const std::vector<std::string>& outputs, const std::string& name = "",
                const std::string& domain = "", Node* before = nullptr);
  // Creates a node writing to existing values that have no producer yet.
  Node* addNodeWithOutputs(const std::string& op_type, const std::vector<Value*>& inputs,
                           const std::vector<Value*>& outputs, const std::string& name = "",
                           const std::string& domain = "", Node* before = nullptr);
  // Removes a node. Its output values stay (without a producer); erase them or give them a new one.
  void eraseNode(Node* n);
  // Puts a new node in `old`'s place that produces `old`'s output values, and removes `old`.
  Node* replaceNode(Node* old, const std::string& op_type, const std::vector<Value*>& inputs,
                    const std::string& domain = "");
  // Replaces every use of `from` (including graph outputs) with `to`.
  void replaceAllUses(Value* from, Value* to);
  // Node order (kept topological by the reader; passes that insert must respect it).
  std::vector<Node*> nodes() const;
  size_t numNodes() const { return nodes_.size(); }
  // Re-sorts nodes topologically (stable: keeps the existing order where it is valid).
  void topoSort();
  // Removes nodes whose outputs are unused and unused initializers. Returns how many were removed.
  size_t removeDeadCode();
  // The weight tensor behind a value: its initializer, or nullptr.
  static const Tensor* constantOf(const Value* v) { return v && v->isConstant() ? &v->initializer : nullptr; }

 private:
  std::list<std::unique_ptr<Node>> nodes_;
  std::list<std::unique_ptr<Value>> values_;
  std::unordered_map<std::string, Value*> by_name_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  std::vector<Value*> initializer_order_;
  uint64_t name_counter_ = 0;
  std::list<std::unique_ptr<Node>>::iterator findNode(const Node* n);
};

struct OpsetImport {
  std::string domain;  // "" / "ai.onnx" are the default domain
  int64_t version = 0;
};

struct Model {
  int64_t ir_version = 8;
  std::vector<OpsetImport> opsets;
  std::string producer_name;
  std::string producer_version;
  std::string domain;
  int64_t model_version = 0;
  std::string doc_string;
  std::vector<std::pair<std::string, std::string>> metadata_props;
  std::vector<std::string> functions_opaque;      // serialized FunctionProto, kept as-is
  // Name and opset imports of each of those functions (same order), read by the ONNX reader so that
  // IR rewrites (the opset upgrade) can reason about them without protobuf.
  struct FunctionSummary {
    std::string name;
    std::vector<OpsetImport> opset_imports;
  };
  std::vector<FunctionSummary> function_summaries;
  std::vector<std::string> training_info_opaque;  // serialized TrainingInfoProto, kept as-is
  std::unique_ptr<Graph> graph = std::make_unique<Graph>();
  // Where the model was read from (for error messages and external data).
  std::string source_path;

  // Version of the default (ai.onnx) opset; 0 when not imported.
  int64_t opsetVersion(const std::string& domain = "") const;
  void setOpsetVersion(const std::string& domain, int64_t version);
};

}  // namespace ptq::ir
