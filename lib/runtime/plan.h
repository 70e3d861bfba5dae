// Plan: one graph (or If/Loop body) compiled for execution. Internal to lib/runtime; callers use
// Session (session.h).
//
// Planning assigns every value a slot, orders the nodes topologically (counting the outer-scope
// reads of their subgraphs as inputs), infers each value's dtype by asking the kernel factories,
// and builds the kernels. A Schedule is the subset of steps needed for some root values, with the
// slots to free after each step (last use), so peak memory stays at the live activations.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib/runtime/kernel.h"

namespace ptq::runtime {

struct PlanOptions {
  int64_t default_opset = 0;
  std::map<std::string, int64_t> domain_opsets;  // other domains (com.microsoft, ...)
  // Weights with Value::quant run dequantized, values with Value::act_quant are fake-quantized for
  // their readers (simulate_quant.h). Carried into If/Loop body plans.
  bool simulate_quantization = false;
  int64_t opsetFor(const std::string& domain) const;
};

// Chain of plans enclosing a subgraph, for resolving outer-scope names while planning.
struct PlanScope {
  const PlanScope* parent = nullptr;
  const Plan* plan = nullptr;
};

// Chain of slot tables enclosing a running subgraph.
struct Frame {
  const Frame* parent = nullptr;
  const TensorList* slots = nullptr;
};

using TapFn = std::function<void(const std::string& value_name, const Tensor& value)>;

// Callbacks while executing: per slot (fired when the value is available) and per (step, input).
struct Taps {
  std::vector<std::vector<TapFn>> by_slot;                        // size numSlots() or empty
  std::map<int, std::vector<std::pair<int, TapFn>>> by_step_input;  // step -> (input index, fn)
  bool empty() const { return by_slot.empty() && by_step_input.empty(); }
};

class Plan {
 public:
  // problems == nullptr: throw on the first unsupported node. Else append "node ...: why" to it and
  // keep planning (for `inspect`).
  Plan(const ir::Graph& g, const PlanOptions& opts, const PlanScope* outer,
       std::vector<std::string>* problems = nullptr);
  ~Plan();
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  // A step runs one node, or (node == nullptr) fake-quantizes value in_slots[0] into its shadow
  // slot out_slots[0], which the value's readers read instead (simulate_quantization).
  struct Step {
    const ir::Node* node = nullptr;
    Kernel kernel;
    std::vector<int> in_slots;     // -1 = omitted optional input
    std::vector<int> out_slots;    // -1 = omitted optional output
    std::vector<int> implicit_in;  // this plan's slots read by the node's subgraphs
  };
  struct Schedule {
    std::vector<int> steps;                    // indices into steps(), in order
    std::vector<std::vector<int>> free_after;  // per position in `steps`
    std::vector<std::vector<int>> move_in;     // per position: input positions whose value dies here
  };

  const ir::Graph& graph() const { return graph_; }
  int numSlots() const { return static_cast<int>(slot_names_.size()); }
  int slotOf(const std::string& name) const;  // -1 when this graph has no such value
  const std::string& slotName(int s) const { return slot_names_[s]; }
  DType slotType(int s) const { return slot_types_[s]; }
  const std::vector<Step>& steps() const { return steps_; }
  int stepOf(const ir::Node* n) const;  // -1 when not found (and for fake-quant steps)
  // "node 'x' (Op)" or "fake quantization of 'v'", for messages.
  std::string describeStep(const Step& st) const;
  // The value a slot holds: itself, or for a shadow slot the value it fake-quantizes.
  int baseSlot(int s) const { return base_of_[s]; }
  bool isConstantSlot(int s) const { return const_index_.count(s) != 0; }
  const Tensor& constantValue(int s) const;
  // The data a constant runs with: its initializer, or under simulate_quantization the
  // dequantized `quant` when the value has one.
  Tensor constantFor(const ir::Value& v) const;
  // Replaces constant slot `s`'s data (same dtype and shape, else kUsage) and re-creates the kernels
  // of the steps reading it, so kernels that captured it at planning (prepacked Conv weights, shape
  // ops) see the new data. Only for a plan without an enclosing scope (the session's main plan).
  void replaceConstant(int s, Tensor t);
  const std::vector<int>& inputSlots() const { return input_slots_; }
  const std::vector<int>& outputSlots() const { return output_slots_; }
  const Schedule& defaultSchedule() const { return default_schedule_; }

  // Steps needed to compute `roots` (plus `extra_steps`), freeing everything else after last use.
  // Slots marked in `fed` (per slot; empty = none) are given by the caller: their producers are not
  // run unless something else needs them.
  Schedule makeSchedule(const std::vector<int>& roots, const std::vector<int>& extra_steps = {},
                        const std::vector<bool>& fed = {}) const;
  // Fresh slot table: constants filled in, outer-scope values bound from `outer`.
  TensorList newSlots(const Frame* outer) const;
  // Runs the schedule on `slots` (inputs already placed). Errors carry the failing node's name.
  void execute(ExecContext& ctx, const Schedule& sched, TensorList& slots, const Frame* outer,
               const Taps* taps = nullptr) const;

 private:
  void plan(const PlanScope* outer, std::vector<std::string>* problems);
  // Runs the step's kernel factory (again); returns the output dtypes it inferred.
  std::vector<DType> buildKernel(Step& step, const PlanScope* scope, std::vector<std::string>* problems);
  void addFakeQuantStep(int slot, const ir::ActivationQuant& aq, std::vector<std::string>* problems);
  // Under simulate_quantization, whether node `n` runs as its integer form (lib/ir/dynamic_quant.h).
  bool simulatesIntegerLayer(const ir::Node& n) const;

  const ir::Graph& graph_;
  PlanOptions opts_;
  bool has_outer_ = false;
  std::vector<std::string> slot_names_;
  std::vector<DType> slot_types_;
  std::unordered_map<std::string, int> slot_of_;
  std::vector<std::pair<int, Tensor>> constants_;  // slot, initializer (shared bytes); fixed size after planning
  std::unordered_map<int, size_t> const_index_;    // slot -> index in constants_
  std::vector<int> base_of_;                        // slot -> slot of the value it holds (shadows)
  struct OuterBinding {
    int slot;
    int depth;  // 1 = enclosing plan
    int outer_slot;
  };
  std::vector<OuterBinding> outer_bindings_;
  std::vector<Step> steps_;
  std::unordered_map<const ir::Node*, int> step_of_;
  std::vector<int> input_slots_;
  std::vector<int> output_slots_;
  Schedule default_schedule_;
};

// Names read from enclosing scopes anywhere inside the subgraphs of `n` (any depth).
std::vector<std::string> subgraphOuterReads(const ir::Node& n);

}  // namespace ptq::runtime
