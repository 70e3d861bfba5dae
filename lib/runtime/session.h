// Reference CPU executor: runs an IR Graph on batches of inputs for calibration and evaluation.
//
//   ptq::runtime::Session s(*model.graph, model.opsetVersion(), {.threads = 2});   // plans; throws
//   s.tap("x", [&](const std::string& name, const ir::Tensor& t) { observer.add(t); });
//   auto out = s.run({{"input_ids", ids}});                          // graph outputs by name
//
// Planning happens once, in the constructor: topological order, dtype inference, one kernel per
// node. An op, attribute or dtype the executor cannot run is a ptq::Error(kInput) then, naming the
// node ("node 'conv3' (Conv): unsupported: ..."), never halfway through a batch.
// run() computes only the nodes needed for the requested outputs and taps, frees every value after
// its last use and reuses activation buffers, so peak memory is the weights (shared with the Graph,
// not copied) plus the live activations. A tap callback receives a const reference to the value as
// it is produced; copying the ir::Tensor inside the callback is cheap (shared bytes) and keeps the
// value's buffer out of reuse.
// Same inputs => bit-identical outputs at any thread count. The Graph must outlive the Session and
// stay unchanged while it exists. A Session is not safe to run from two threads at once.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lib/ir/graph.h"

namespace ptq::runtime {

class Plan;
class BufferPool;
struct Taps;

struct SessionOptions {
  int threads = 0;  // 0 = OpenMP default (OMP_NUM_THREADS or the core count)
  // Other domains' opset versions (e.g. {"com.microsoft", 1}); unknown domains default to 1.
  std::map<std::string, int64_t> domain_opsets;
  // Run the model as it will be written (simulate_quant.h): weights with ir::Value::quant run as
  // their dequantization, values with ir::Value::act_quant are fake-quantized for their readers
  // (graph outputs and taps on the value keep the float value). Also inside If/Loop bodies.
  // Annotations are read at planning (act_quant) or planning/reloadConstant (quant).
  bool simulate_quantization = false;
  // Run with denormal floats flushed to zero (FTZ+DAZ, lib/util/denormals.h): results differ by
  // less than FLT_MIN per operation, and Intel cores run several times faster on graphs whose
  // Softmax or Sigmoid tails underflow. The caller's own flags are restored when run() returns.
  bool flush_denormals = true;
};

class Session {
 public:
  using TapFn = std::function<void(const std::string& value_name, const ir::Tensor& value)>;

  Session(const ir::Graph& graph, int64_t default_opset, SessionOptions options = {});
  // Opsets taken from the model's imports.
  explicit Session(const ir::Model& model, SessionOptions options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Calls `fn` whenever value `value_name` (graph input, initializer or node output of the main
  // graph) is available during run(); the value is computed even when no output needs it.
  // Throws ptq::Error(kUsage) when the graph has no such value.
  void tap(const std::string& value_name, TapFn fn);
  // Calls `fn` just before node `node_name` runs, with its input `input_index`. The node runs on
  // every run() from now on. Throws kUsage for an unknown node or input index.
  void tapNodeInput(const std::string& node_name, int input_index, TapFn fn);
  void clearTaps();

  // Feeds by value name: graph inputs (float16/float64 feeds for float32 inputs and int32 feeds for
  // int64 inputs are converted) or any node output of the main graph (partial execution: the
  // producers of a fed value are not run; its dtype must be the planned one). `outputs` names any
  // values to return; empty = the graph outputs. `run_taps` are taps for this call only.
  // Wrong dtype/shape of a feed: ptq::Error(kInput) naming it; unknown names or constants: kUsage;
  // a graph input the run still needs but was not given: kUsage.
  // In a partial run (some fed value is not a graph input), taps whose value would need a graph
  // input that was not given are skipped instead of failing the run.
  std::map<std::string, ir::Tensor> run(const std::map<std::string, ir::Tensor>& feeds,
                                        const std::vector<std::string>& outputs = {},
                                        const std::map<std::string, TapFn>& run_taps = {});

  // Replaces the data of constant (initializer) `name` of the main graph without re-planning: only
  // the kernels reading it are re-created. Same dtype and shape required (else kUsage).
  void setConstant(const std::string& name, ir::Tensor t);
  // Re-reads the graph's Value `name`: its initializer, or with simulate_quantization its `quant`
  // annotation when it has one. For a pass that changed a weight or attached Value::quant.
  void reloadConstant(const std::string& name);
  // Kernel invocations of top-level graph nodes since construction (fake-quant steps not counted).
  int64_t nodeExecutions() const { return node_executions_; }

  std::vector<std::string> inputNames() const;   // graph inputs to feed (not initializer-inputs)
  std::vector<std::string> outputNames() const;  // graph outputs
  // Dtype inferred at planning for a value of the main graph (kUndefined if unknown).
  ir::DType valueType(const std::string& name) const;
  int threads() const { return threads_; }
  // Largest amount of pooled activation memory in use at once so far.
  size_t peakActivationBytes() const;

 private:
  const ir::Graph& graph_;
  int threads_ = 1;
  bool flush_denormals_ = true;
  std::unique_ptr<Plan> plan_;
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<Taps> taps_;
  friend class BlockRunner;
  const Plan& plan() const { return *plan_; }
  std::vector<int> extra_steps_;  // steps forced by node-input taps
  std::vector<int> tapped_slots_;
  int64_t node_executions_ = 0;
  struct CachedSchedule;
  // Keyed by (fed slots, output slots, run-tap slots).
  using ScheduleKey = std::vector<std::vector<int>>;
  std::map<ScheduleKey, std::shared_ptr<CachedSchedule>> schedules_;
};

// Messages ("node 'x' (Op): unsupported: ...") for every node of `graph` (and its subgraphs) the
// executor cannot run, for `ptq-tool inspect`. Empty = the whole graph runs.
std::vector<std::string> unsupportedNodes(const ir::Graph& graph, int64_t default_opset,
                                          const std::map<std::string, int64_t>& domain_opsets = {});
std::vector<std::string> unsupportedNodes(const ir::Model& model);

}  // namespace ptq::runtime
