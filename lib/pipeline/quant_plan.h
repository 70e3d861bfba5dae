// The quantization plan: one record per quantizable layer, built once from the config and the graph
// before the first pass, then read and refined by the passes (a bit-allocation pass writes "this
// layer gets 3 bits", gptq/rtn/qdq and the writers obey it) and turned into the report's per-layer
// records at the end. It is the per-tensor policy of the tool in one place (like llama.cpp's
// per-tensor type rules): which layers (MatMul / Gemm / Conv with constant float32 weights, embedding
// Gathers when asked), found in the main graph and inside If / Loop / Scan bodies at any depth; the
// config's skip list, size threshold and overrides; who decided what.
//
// Pointers: `node`, `graph` and `weight` point into the Model the plan was built from and stay valid
// while passes leave those nodes and weights in place (a pass that replaces a layer's node or weight
// updates the record). A weight shared by several layers has one record (its first reader in graph
// order, main graph before subgraphs); `readers` lists them all.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lib/ir/graph.h"
#include "lib/pipeline/config.h"

namespace ptq::pipeline {

// The second moment of a layer's input, H = (2/N) sum_t x_t x_t^T over the N calibration rows x_t
// (tokens of a MatMul/Gemm input; im2col patches of a Conv, one H per conv group): the Hessian of
// ||W X - W^ X||^2 that gptq minimizes and a bit-allocation pass weighs errors with (Tr(H)/n). One
// object per distinct layer input, shared by the layers reading it (q/k/v), computed once by the
// pass that first needs it and left on the plan for the passes after it.
struct LayerHessian {
  int64_t dim = 0;                 // columns of the layer's flattened weight (K, or C/group * kh * kw)
  int64_t groups = 1;              // conv groups: `h` holds `groups` matrices of dim x dim
  std::vector<float> h;            // row-major [groups, dim, dim], symmetric
  int64_t rows = 0;                // N: input rows (tokens, output pixels) summed over
  // "float": the inputs came from the float model; "sequential": from the model with every layer
  // before this one already quantized (gptq's sequential mode).
  std::string source;
  const float* matrix(int64_t g) const { return h.data() + g * dim * dim; }
};

struct LayerPlan {
  // Where the layer is.
  ir::Node* node = nullptr;       // the first reader of the weight
  ir::Graph* graph = nullptr;     // the graph holding `node` (a subgraph for layers in If/Loop/Scan bodies)
  std::string scope;              // "" for the main graph, else "<node>/<attribute>" per level, e.g. "vad_if/then_branch"
  int weight_input = 1;           // which input of `node` is the weight
  ir::Value* weight = nullptr;    // the initializer, in `graph` or in an enclosing graph (outer-scope read)
  std::vector<ir::Node*> readers; // every layer node reading the weight
  int64_t reduce_axis = 0;        // the weight axis summed over (K); groups run along it
  int64_t channel_axis = 1;       // the output-channel axis (per-channel scales)

  // What is decided.
  bool skip = false;              // leave the weight in float
  std::string skip_reason;        // why, when skip
  WeightSettings weights;         // bits, symmetric, granularity, group size, clip search
  bool quantize_activations = false;  // its input and output activations get Q/DQ (the qdq pass)
  // Their grid width: 0 = the config's activations.bits; 4, 8 or 16 as a pass (bit-allocation) decided;
  // 32 = kept float by that pass. A value between layers takes the widest of its layers' choices and
  // stays float when one of them is 32 (passes/qdq.cc).
  int activation_bits = 0;

  // Who decided: "config" or the name of the pass that changed it last, and each change in order.
  std::string decided_by = "config";
  std::vector<std::string> history;

  // Analyses passes leave for later passes and the report.
  std::shared_ptr<const LayerHessian> hessian;  // null unless a pass computed and kept it
  std::map<std::string, double> metrics;        // named per-layer figures ("gptq_loss", ...), in the report

  std::string label() const;      // "node 'x' (MatMul) weight 'w'" (+ " in scope") for messages
};

class QuantPlan {
 public:
  std::vector<LayerPlan>& layers() { return layers_; }
  const std::vector<LayerPlan>& layers() const { return layers_; }
  // The layers that will be quantized (not skipped), in plan order.
  std::vector<LayerPlan*> active();
  LayerPlan* findByWeight(const ir::Value* weight);

  // Mutations a pass makes, recorded in the layer's history with the pass's name.
  void setWeights(LayerPlan& layer, const WeightSettings& w, const std::string& pass, const std::string& why);
  void skip(LayerPlan& layer, const std::string& why, const std::string& pass);
  // A history line that changes no decision (a rewrite's note: "smooth-quant: alpha 0.6 ...").
  void note(LayerPlan& layer, const std::string& pass, const std::string& text);

  // Graph rewrites keep the plan pointing at the right things. These may add records, so they
  // invalidate LayerPlan pointers taken earlier.
  // `reader` stopped reading `old_weight` and reads `new_weight`, a copy a rewrite made to change
  // it alone (untying a shared weight): the reader gets a record of its own with the same settings.
  void untie(const ir::Value* old_weight, ir::Node* reader, ir::Value* new_weight, const std::string& pass);
  // A rewrite gave `n` a constant weight it did not have when the plan was built (a tied head's
  // Transpose(E) materialized): it becomes a layer with the settings `config` gives it.
  void adopt(ir::Node* n, const QuantConfig& config, const std::string& pass);
  // A rewrite put `now` in place of node `old` (e.g. MatMul split from a new bias Add).
  void replaceNode(const ir::Node* old, ir::Node* now);

 private:
  std::vector<LayerPlan> layers_;
  friend QuantPlan buildPlan(ir::Graph& graph, const QuantConfig& config);
};

// Finds every quantizable layer of `graph` and its subgraphs and resolves its settings from the
// config (layers.op_types, quantize_embeddings, skip, min_elements, overrides; activations.op_types
// when the pipeline quantizes activations). Layers the config leaves alone are records with skip set.
QuantPlan buildPlan(ir::Graph& graph, const QuantConfig& config);

// Settings a weight would get under `config` (skip list and overrides applied), or why not:
// nullopt with *why_skipped filled.
std::optional<WeightSettings> resolveSettings(const QuantConfig& config, const std::string& node_name,
                                              const std::string& weight_name, const std::string& op_type,
                                              std::string* why_skipped);

}  // namespace ptq::pipeline
