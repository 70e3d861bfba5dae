// The qdq pass measures activation ranges on the model as it will be written: weights quantized by
// rtn before it are dequantized from their exact codes while calibrating. A 4-bit weight that visibly
// moves an activation's range proves it (hand-computed), and observe = "float" keeps the old reading.
#include <catch2/catch.hpp>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/calibration.h"
#include "lib/calib/npy.h"
#include "support/pipeline.h"
#include "support/test_paths.h"

using namespace ptq;

namespace {

// h = x · W with W = [[1, 0.45], [0, 1]]; x = [1, 1] gives h = [1, 1.45] in float. At 4 bits per
// tensor, symmetric: scale 1/7, 0.45 * 7 = 3.15 -> code 3 -> 3/7 = 0.428571..., so h = [1, 1.428571...].
// The MinMax uint8 range of h is [0, max h]: scale max/255.
float observedScaleOfH(const std::string& observe) {
  const std::string dir = test::tempDir("qdq_observe_" + observe);
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] x) => (float[N, 2] y)
<float[2, 2] w = {1, 0.45, 0, 1}, float[2, 2] w2 = {1, 0, 0, 1}>
{ h = MatMul(x, w)
  y = MatMul(h, w2) }
)");
  calib::writeNpy(dir + "/x.npy", ir::Tensor::fromFloats({1, 2}, {1, 1}));
  pipeline::QuantConfig config = test::parseConfig(R"({"pipeline": ["rtn", "qdq"],
      "weights": {"bits": 4, "symmetric": true, "granularity": "tensor"},
      "activations": {"bits": 8, "symmetric": false, "observer": "minmax"},
      "passes": {"qdq": {"observe": ")" + observe + R"("}}})");
  calib::CalibrationSpec spec;
  spec.named_files = {{"x", dir + "/x.npy"}};
  calib::CalibrationSet set = calib::CalibrationSet::load(spec, *m.graph);
  driver::runPipeline(m, config, &set, 0, true);
  const ir::Value* h = m.graph->findValue("h");
  REQUIRE(h->act_quant);
  return h->act_quant->scale.data<float>()[0];
}

}  // namespace

TEST_CASE("qdq observes activations on the weight-quantized model", "[qdq][simulate]") {
  const float quantized = observedScaleOfH("quantized");
  const float float_weights = observedScaleOfH("float");
  CHECK(quantized == Approx((1.0f + 3.0f / 7.0f) / 255.0f).epsilon(1e-6));
  CHECK(float_weights == Approx(1.45f / 255.0f).epsilon(1e-6));
  CHECK(quantized != float_weights);
}
