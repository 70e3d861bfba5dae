#include "lib/ir/verifier.h"

#include <unordered_set>

#include "lib/util/error.h"

namespace ptq::ir {

namespace {

void verifyInto(const Graph& g, const std::string& where, std::vector<std::string>& problems) {
  std::unordered_set<const Value*> defined;
  for (Value* v : g.inputs()) defined.insert(v);
  for (Value* v : g.initializers()) {
    defined.insert(v);
    if (v->initializer.empty() || !dtypeIsKnown(static_cast<int32_t>(v->initializer.dtype())))
      problems.push_back(where + "initializer '" + v->name() + "' has no data or an unknown dtype");
    else if (v->initializer.dtype() != DType::kString &&
             v->initializer.nbytes() != dtypeStorageBytes(v->initializer.dtype(), v->initializer.numel()))
      problems.push_back(where + "initializer '" + v->name() + "' holds " + std::to_string(v->initializer.nbytes()) +
                         " bytes for shape " + shapeToString(v->initializer.shape()));
  }
  for (Node* n : g.nodes()) {
    if (n->graph() != &g) problems.push_back(where + n->describe() + " points to another graph");
    for (size_t i = 0; i < n->numInputs(); ++i) {
      Value* in = n->input(i);
      if (!in) continue;
      if (in->kind() == Value::Kind::kOuterScope) continue;
      if (!defined.count(in))
        problems.push_back(where + n->describe() + " input " + std::to_string(i) + " '" + in->name() +
                           "' is used before it is defined (not topologically sorted, or never produced)");
      bool listed = false;
      for (const auto& u : in->uses())
        if (u.node == n && u.index == static_cast<int>(i)) listed = true;
      if (!listed) problems.push_back(where + "use list of '" + in->name() + "' misses " + n->describe());
    }
    for (size_t i = 0; i < n->numOutputs(); ++i) {
      Value* out = n->output(i);
      if (!out) continue;
      if (out->producer() != n)
        problems.push_back(where + "value '" + out->name() + "' is an output of " + n->describe() +
                           " but names another producer");
      if (!defined.insert(out).second)
        problems.push_back(where + "value '" + out->name() + "' is produced twice");
    }
    for (const auto& [key, attr] : n->attrs) {
      if (attr.g) verifyInto(*attr.g, where + n->describe() + "/" + key + ": ", problems);
      for (const auto& sub : attr.graphs)
        if (sub) verifyInto(*sub, where + n->describe() + "/" + key + ": ", problems);
    }
  }
  for (Value* out : g.outputs())
    if (!defined.count(out) && out->kind() != Value::Kind::kOuterScope)
      problems.push_back(where + "graph output '" + out->name() + "' is never produced");
}

}  // namespace

std::vector<std::string> verifyGraph(const Graph& g) {
  std::vector<std::string> problems;
  verifyInto(g, "", problems);
  return problems;
}

void verifyOrThrow(const Graph& g, const std::string& context) {
  auto problems = verifyGraph(g);
  if (problems.empty()) return;
  std::string msg = context + ": the graph is invalid:";
  for (size_t i = 0; i < problems.size() && i < 20; ++i) msg += "\n  " + problems[i];
  if (problems.size() > 20) msg += "\n  ... " + std::to_string(problems.size() - 20) + " more";
  throwInternal(msg);
}

}  // namespace ptq::ir
