// BlockRunner: runs a model block by block over many calibration batches, keeping per batch only
// the activations at the current block boundary. A layer-by-layer pass (GPTQ: quantize block i's
// layers, then compute block i's output with the quantized weights and feed it to block i+1) then
// does one forward pass of work in total instead of re-running the prefix for every layer.
//
//   BlockRunner br(session, batches, anchors);   // anchors: e.g. every MatMul with a constant weight
//   for (size_t i = 0; i < br.numBlocks(); ++i) {
//     br.runBlock(i, {{"x_of_layer", observe}});  // taps on values inside block i (or its inputs)
//     ... quantize block i's weights; session.setConstant / reloadConstant ...
//   }
//   auto outputs = br.finish();                    // graph outputs per batch
// observeBlock(i, taps) runs part of block i without moving on (see there).
//
// Boundaries are found from the session's execution order: at every gap between two steps, the
// live set is the non-constant values produced before the gap (or graph inputs) that are read after
// it (subgraph outer-scope reads included) or are graph outputs. Cuts are the gaps between the first
// and the last anchor whose live set is smallest, merged so that every block holds an anchor (on a
// transformer: the residual stream plus shared positional values, once or twice per layer). Values
// produced before the first anchor and read after the median anchor (rotary tables, masks) are not
// counted when comparing gaps (they are shared by the blocks) but are in every boundary they are live at.
// Block i+1 is run by Session::run with block i's boundary as feeds (partial execution), so it sees
// constants changed in between. The Session and the batches' tensors are shared, not copied.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "lib/runtime/session.h"

namespace ptq::runtime {

class BlockRunner {
 public:
  // Throws ptq::Error(kUsage) when `anchors` is empty or holds a node the session does not run.
  BlockRunner(Session& session, std::vector<std::map<std::string, ir::Tensor>> batches,
              std::vector<const ir::Node*> anchors);

  size_t numBlocks() const { return blocks_.size(); }
  // The graph nodes of block i, in execution order.
  const std::vector<const ir::Node*>& blockNodes(size_t i) const { return blocks_.at(i).nodes; }
  // Values handed from block i to block i+1 (the graph outputs for the last block).
  const std::vector<std::string>& blockOutputs(size_t i) const { return blocks_.at(i).outputs; }
  size_t nextBlock() const { return next_; }

  // Runs block `i` (must be nextBlock()) on every batch, calling `taps` (value name -> fn) for values
  // computed in the block or fed to it; its outputs become the new boundary (the old one is freed).
  void runBlock(size_t i, const std::map<std::string, Session::TapFn>& taps = {});
  // The same, with values of block i already known for every batch (`known[b]`, e.g. kept from an
  // observeBlock call after the block's last change) fed so that their producers do not run again.
  // The caller guarantees they are what the block would compute now; the result is then identical.
  void runBlock(size_t i, const std::vector<std::map<std::string, ir::Tensor>>& known,
                const std::map<std::string, Session::TapFn>& taps = {});
  // Runs block `i` (must be nextBlock()) on every batch only as far as the tapped values need, calling
  // `taps`; the boundary is kept, so runBlock(i) still follows. For a pass that changes a layer of the
  // block and then needs a later value of the same block computed with the change (gptq, layer by
  // layer inside a transformer block): each call costs at most one run of the block.
  void observeBlock(size_t i, const std::map<std::string, Session::TapFn>& taps);
  // Runs the remaining blocks and returns the graph outputs per batch.
  std::vector<std::map<std::string, ir::Tensor>> finish();

 private:
  struct Block {
    std::vector<const ir::Node*> nodes;
    std::vector<std::string> outputs;
  };
  Session& session_;
  std::vector<std::map<std::string, ir::Tensor>> boundary_;  // per batch
  std::vector<Block> blocks_;
  size_t next_ = 0;
};

}  // namespace ptq::runtime
