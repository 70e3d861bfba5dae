// Structural checks on a Graph, runnable after any pass (--verify-each): nodes in topological order,
// one producer per value, every input defined (graph input, initializer, earlier node output or
// outer-scope name), graph outputs produced, known dtypes on initializers, use lists consistent.
#pragma once
#include <string>
#include <vector>

#include "lib/ir/graph.h"

namespace ptq::ir {

// Returns the problems found (empty = valid). Each names the node or value.
std::vector<std::string> verifyGraph(const Graph& g);
// Throws ptq::Error (kInternal) listing the problems, prefixed by `context` (e.g. the pass name).
void verifyOrThrow(const Graph& g, const std::string& context);

}  // namespace ptq::ir
