// The integer program of mixed-precision bit allocation (HAWQ-v3), solved exactly with GLPK.
//
//   minimise   sum_i sum_c cost[i][c] * x[i][c]
//   subject to sum_c x[i][c] = 1                              every layer takes one candidate
//              sum_i sum_c weight[k][i][c] * x[i][c] <= limit[k]   every budget k (bytes, bits, BOPs, ...)
//              x[i][c] = x[j][c'] where key[i][c] == key[j][c']  layers of one tie group (readers of one tensor)
//              x[i][c] = 0 for a key a tied partner lacks
//              x[i][pin] = 1                              pinned layers
//              x binary
//
// Candidates are named by an integer key (bits: 2, 3, 4, 8; 32 = keep float) so that tie groups can
// match candidates of layers whose candidate lists differ. Nothing here knows a graph: the pass
// (bit_allocation.h) builds the problem from the plan.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ptq::passes {

struct IlpLayer {
  std::string name;                         // for messages
  std::vector<int> keys;                    // candidate keys, distinct
  std::vector<double> cost;                 // per candidate, >= 0 (sensitivity)
  std::vector<std::vector<double>> weight;  // [budget][candidate], >= 0
  int pinned = -1;                          // candidate index the layer must take, or -1
};

struct IlpBudget {
  std::string name;   // "bytes", "bits", "bops", "activations" (messages and the report)
  double limit = 0;   // sum of the layers' weights must not exceed it
};

struct IlpProblem {
  std::vector<IlpLayer> layers;
  std::vector<IlpBudget> budgets;
  std::vector<std::vector<size_t>> ties;  // groups of layer indices that take the same key
};

struct IlpSolution {
  std::vector<int> choice;    // candidate index per layer
  double objective = 0;       // sum of the chosen costs
  std::vector<double> used;   // per budget: sum of the chosen weights
  int64_t columns = 0, rows = 0;  // size of the program GLPK solved
};

// Solves the program exactly (glp_intopt: presolve, branch and cut, no gap). Throws ptq::Error(kUsage)
// when it is infeasible, naming the budget and the smallest value that budget could take under the
// other constraints (pins, ties; other budgets dropped): "budget bytes <= 100 cannot be met: the
// smallest feasible is 160 (every layer at its cheapest candidate)". Throws kInternal for a malformed
// problem (sizes that do not match, negative weights, a pin out of range).
IlpSolution solveBitIlp(const IlpProblem& problem);

// The least sum of budget k's weights any assignment meeting the pins and ties reaches (an ILP of its
// own; without pins and ties, the sum of the per-layer minima). Throws kUsage when pins and ties alone
// conflict.
double smallestFeasibleBudget(const IlpProblem& problem, size_t k);

}  // namespace ptq::passes
