#include "lib/runtime/block_runner.h"

#include <algorithm>

#include "lib/runtime/plan.h"
#include "lib/util/error.h"

namespace ptq::runtime {

BlockRunner::BlockRunner(Session& session, std::vector<std::map<std::string, ir::Tensor>> batches,
                         std::vector<const ir::Node*> anchors)
    : session_(session), boundary_(std::move(batches)) {
  const Plan& plan = session.plan();
  // Only the steps a full run executes: a dead node's inputs must not keep values live.
  const std::vector<int>& order = plan.defaultSchedule().steps;
  const int n = static_cast<int>(order.size());
  if (anchors.empty()) throwUsage("block runner: no anchor nodes");
  std::vector<int> pos_of_step(plan.steps().size(), -1);
  for (int p = 0; p < n; ++p) pos_of_step[order[p]] = p;
  std::vector<int> anchor_pos;
  for (const ir::Node* a : anchors) {
    const int st = a ? plan.stepOf(a) : -1;
    if (st < 0 || pos_of_step[st] < 0)
      throwUsage("block runner: anchor " + (a ? describeNode(*a) : std::string("<null>")) +
                 " is not a node the session runs for the graph outputs");
    anchor_pos.push_back(pos_of_step[st]);
  }
  std::sort(anchor_pos.begin(), anchor_pos.end());

  // Liveness by value (a fake-quant shadow counts as its float value, which is what gets fed).
  const int nslots = plan.numSlots();
  std::vector<int> def(nslots, n), last_read(nslots, -1);
  for (int s : plan.inputSlots()) def[plan.baseSlot(s)] = -1;
  for (int p = 0; p < n; ++p) {
    const Plan::Step& st = plan.steps()[order[p]];
    for (int s : st.out_slots)
      if (s >= 0) def[plan.baseSlot(s)] = std::min(def[plan.baseSlot(s)], p);
    for (int s : st.in_slots)
      if (s >= 0) last_read[plan.baseSlot(s)] = p;
    for (int s : st.implicit_in) last_read[plan.baseSlot(s)] = p;
  }
  for (int s : plan.outputSlots()) last_read[plan.baseSlot(s)] = n;
  // Gap g sits before position g (1 <= g < n); value s is live at gaps def+1 .. last_read.
  // Values produced before the first anchor and still read after the median anchor (rotary tables,
  // masks, graph inputs read late) are context shared by the blocks: carried in every boundary they
  // are live at, but not counted when comparing gaps, else on a rotary LM only the gap after the
  // last rotary read would have the smallest live set. (An early value that dies within the first
  // layers, like the embedding output, is counted: it is that layer's residual stream.)
  const int first = anchor_pos.front(), last = anchor_pos.back();
  const int median = anchor_pos[anchor_pos.size() / 2];
  std::vector<int> live(static_cast<size_t>(n) + 1, 0);
  for (int s = 0; s < nslots; ++s) {
    if (plan.baseSlot(s) != s || plan.isConstantSlot(s) || def[s] >= n || last_read[s] < 0) continue;
    if (def[s] < first && last_read[s] > median) continue;
    const int lo = std::max(def[s] + 1, 1), hi = std::min(last_read[s], n - 1);
    for (int g = lo; g <= hi; ++g) ++live[g];
  }
  std::vector<int> cuts;
  if (first < last) {
    int best = live[first + 1];
    for (int g = first + 1; g <= last; ++g) best = std::min(best, live[g]);
    int prev = 0;
    for (int g = first + 1; g <= last; ++g) {
      if (live[g] != best) continue;
      // Keep the cut only when the block it closes holds an anchor; otherwise it merges on.
      if (std::lower_bound(anchor_pos.begin(), anchor_pos.end(), prev) == std::lower_bound(anchor_pos.begin(), anchor_pos.end(), g))
        continue;
      cuts.push_back(g);
      prev = g;
    }
  }
  cuts.push_back(n);
  int begin = 0;
  for (int c : cuts) {
    Block b;
    for (int p = begin; p < c; ++p)
      if (const ir::Node* node = plan.steps()[order[p]].node) b.nodes.push_back(node);
    if (c == n) {
      b.outputs = session.outputNames();
    } else {
      for (int s = 0; s < nslots; ++s)
        if (plan.baseSlot(s) == s && !plan.isConstantSlot(s) && def[s] < c && last_read[s] >= c)
          b.outputs.push_back(plan.slotName(s));
    }
    blocks_.push_back(std::move(b));
    begin = c;
  }
}

void BlockRunner::runBlock(size_t i, const std::map<std::string, Session::TapFn>& taps) { runBlock(i, {}, taps); }

void BlockRunner::runBlock(size_t i, const std::vector<std::map<std::string, ir::Tensor>>& known,
                           const std::map<std::string, Session::TapFn>& taps) {
  if (i != next_ || i >= blocks_.size())
    throwUsage("block runner: block " + std::to_string(i) + " requested, next is " + std::to_string(next_) + " of " +
               std::to_string(blocks_.size()));
  if (!known.empty() && known.size() != boundary_.size())
    throwUsage("block runner: known values for " + std::to_string(known.size()) + " batches, the runner has " +
               std::to_string(boundary_.size()));
  for (size_t b = 0; b < boundary_.size(); ++b) {
    std::map<std::string, ir::Tensor>& feeds = boundary_[b];
    if (!known.empty())
      for (const auto& [name, t] : known[b]) feeds.emplace(name, t);
    std::map<std::string, ir::Tensor> out = session_.run(feeds, blocks_[i].outputs, taps);
    feeds = std::move(out);  // frees the old boundary of this batch
  }
  ++next_;
}

void BlockRunner::observeBlock(size_t i, const std::map<std::string, Session::TapFn>& taps) {
  if (i != next_ || i >= blocks_.size())
    throwUsage("block runner: block " + std::to_string(i) + " observed, next is " + std::to_string(next_) + " of " +
               std::to_string(blocks_.size()));
  if (taps.empty()) return;
  std::vector<std::string> wanted;
  for (const auto& [name, fn] : taps) wanted.push_back(name);
  for (const auto& feeds : boundary_) session_.run(feeds, wanted, taps);
}

std::vector<std::map<std::string, ir::Tensor>> BlockRunner::finish() {
  while (next_ < blocks_.size()) runBlock(next_);
  return std::move(boundary_);
}

}  // namespace ptq::runtime
