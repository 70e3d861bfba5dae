// bit-allocation: mixed precision by integer programming (HAWQ-v3). Chooses each layer's weight bits
// (and, with activation candidates, its activations' grid) to minimize the summed sensitivity under a
// budget, and writes the choice into the plan; gptq / rtn / qdq and the writers obey it.
//
// Before:  plan: every layer at weights.bits (e.g. 4), activations at activations.bits
// After:   plan: layer i at b_i in its candidates (2, 3, 4, 8 bits, or kept float), activation_bits a_i in
//          {8, 16, float}; the graph is unchanged (the pass quantizes nothing itself)
//
// Per layer and candidate: a sensitivity (bit_sensitivity.h: Tr(H)/n * ||Q_b(W) - W||^2 from the float
// model's layer-input Hessian, or the measured output error with only that layer changed) and weights
// (bytes as a .ptq file stores them, code bits, BOPs = MACs * w_bits * a_bits). One binary program over
// (weight bits, activation bits) pairs per layer (bit_ilp.h, GLPK): one pair per layer, every budget met,
// readers of one tensor take the same pair (tie_shared_inputs), first and last layer pinned at their
// widest pair (pin_first_last). Layers without a Hessian (embedding Gathers, subgraph layers) keep their
// settings under `hessian`; under `measured` only subgraph layers do. The report gets each layer's
// sensitivities, bytes and choice (metrics), and the pass's objective, budgets and use (figures).
#pragma once
#include "lib/pipeline/pass.h"
#include "lib/pipeline/pass_registry.h"

namespace ptq::passes {

pipeline::PassInfo bitAllocationPassInfo();

}  // namespace ptq::passes
