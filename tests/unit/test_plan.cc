// The quantization plan: built once from config + graph (selection, skips with reasons, overrides,
// shared weights), refined by a pass, obeyed by rtn and legalize, and the single source of the
// report's per-layer records (decided_by, history).
#include <catch2/catch.hpp>

#include "formats/onnx/onnx_io.h"
#include "lib/pipeline/pass.h"
#include "lib/pipeline/quant_plan.h"
#include "support/pipeline.h"

using namespace ptq;

namespace {

// Three MatMuls (one tiny), one reading the same weight twice, and a Gemm.
const char* kGraph = R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 16] x) => (float[1, 16] y, float[1, 2] z)
<float[16, 16] w1 = {1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,
                     0,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,
                     0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,
                     0,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,1,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,1,0,0,0,0,
                     0,0,0,0,0,0,0,0,0,0,0,0,1,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,
                     0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0.5},
 float[16, 2] w_small = {1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16}>
{
  a = MatMul(x, w1)
  y = MatMul(a, w1)
  z = MatMul(a, w_small)
}
)";

ir::Model model() {
  ir::Model m = onnx_io::parseModelText(kGraph);
  const char* names[] = {"first", "again", "head"};
  for (size_t i = 0; i < 3; ++i) m.graph->nodes()[i]->name = names[i];
  return m;
}

}  // namespace

TEST_CASE("the plan resolves every layer once with skips and their reasons", "[plan]") {
  ir::Model m = model();
  pipeline::QuantConfig c = test::parseConfig(R"({"weights": {"bits": 4, "granularity": "channel"},
      "layers": {"min_elements": 40}, "overrides": [{"match": "first", "weights": {"bits": 6}}]})");
  pipeline::QuantPlan plan = pipeline::buildPlan(*m.graph, c);
  REQUIRE(plan.layers().size() == 2);  // w1 once (two readers), w_small
  const pipeline::LayerPlan* w1 = plan.findByWeight(m.graph->findValue("w1"));
  REQUIRE(w1 != nullptr);
  CHECK(w1->readers.size() == 2);
  CHECK(w1->node->name == "first");
  CHECK(w1->weights.bits == 6);  // the override matched the first reader's name
  CHECK(w1->decided_by == "config");
  const pipeline::LayerPlan* small = plan.findByWeight(m.graph->findValue("w_small"));
  REQUIRE(small != nullptr);
  CHECK(small->skip);
  CHECK(small->skip_reason == "smaller than layers.min_elements");
  CHECK(plan.active().size() == 1);
}

TEST_CASE("a pass's decision in the plan is obeyed by rtn and legalize and reported with who made it", "[plan]") {
  ir::Model m = model();
  pipeline::QuantConfig c = test::parseConfig(R"({"weights": {"bits": 8, "granularity": "channel"}})");
  pipeline::QuantPlan plan = pipeline::buildPlan(*m.graph, c);
  // What a bit-allocation pass would do: 3 bits for w1, w_small left float.
  pipeline::LayerPlan* w1 = plan.findByWeight(m.graph->findValue("w1"));
  pipeline::WeightSettings three = w1->weights;
  three.bits = 3;
  plan.setWeights(*w1, three, "bit-allocation", "budget 4.0 bits");
  plan.skip(*plan.findByWeight(m.graph->findValue("w_small")), "over budget", "bit-allocation");
  std::vector<std::string> warnings;
  pipeline::PassContext ctx{c, plan, warnings};
  pipeline::findPass(passes::builtinPasses(), "rtn")->create(c.pipeline.front().options)->run(m, ctx);
  REQUIRE(m.graph->findValue("w1")->quant);
  CHECK(m.graph->findValue("w1")->quant->bits == 3);
  CHECK_FALSE(m.graph->findValue("w_small")->quant);
  const auto records = pipeline::layerRecords(plan);
  REQUIRE(records.size() == 2);
  CHECK(records[0].weight == "w1");
  CHECK(records[0].bits == 3);
  CHECK(records[0].decided_by == "bit-allocation");
  CHECK(records[0].history == std::vector<std::string>{"bit-allocation: 8 -> 3 bits (budget 4.0 bits)"});
  CHECK(records[1].action == "skipped: over budget");
  CHECK(records[1].decided_by == "bit-allocation");
}
