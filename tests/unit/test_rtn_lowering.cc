// rtn + lowering on tiny hand-checked graphs: codes, scales, node structure for the qdq and
// matmulnbits forms.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "support/pipeline.h"
#include "formats/onnx/onnx_io.h"
#include "lib/ir/verifier.h"
#include "lib/pipeline/pass_manager.h"

using namespace ptq;

namespace {

// Runs the config's pipeline and lowers; returns the report.
pipeline::Report quantize(ir::Model& m, const std::string& config_json, bool matmulnbits) {
  const pipeline::QuantConfig config = test::parseConfig(config_json);
  driver::PipelineRun run = driver::runPipeline(m, config, nullptr, 0, true);
  legalize::LegalizeOptions lo;
  lo.prefer_matmulnbits = matmulnbits;
  driver::legalizeRun(m, lo, run, true);
  REQUIRE(ir::verifyGraph(*m.graph).empty());
  return run.report;
}

ir::Node* onlyNode(const ir::Graph& g, const std::string& op) {
  ir::Node* found = nullptr;
  for (ir::Node* n : g.nodes())
    if (n->opType() == op) {
      REQUIRE(found == nullptr);
      found = n;
    }
  REQUIRE(found != nullptr);
  return found;
}

}  // namespace

TEST_CASE("w8 per-channel symmetric: hand-computed codes and a DequantizeLinear at opset 13+", "[rtn][lowering]") {
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4] x) => (float[1, 2] y)
<float[4, 2] w = {1, -2, 0.5, 4, -1, 1, 2, -8}>
{ y = MatMul(x, w) }
)");
  auto report = quantize(m, R"({"weights": {"bits": 8, "symmetric": true, "granularity": "channel"}})", false);
  const ir::Graph& g = *m.graph;
  CHECK(m.opsetVersion() == 17);  // per-channel int8 needs only opset 13
  ir::Node* dq = onlyNode(g, "DequantizeLinear");
  CHECK(dq->attrInt("axis", -99) == 1);
  CHECK_FALSE(dq->hasAttr("block_size"));
  REQUIRE(dq->numInputs() == 2);  // symmetric: no zero point
  const ir::Tensor& codes = dq->input(0)->initializer;
  REQUIRE(codes.dtype() == ir::DType::kInt8);
  // col 0: scale 2/127, col 1: scale 8/127; x/scale rounded half to even (63.5 -> 64, -31.75 -> -32).
  const std::vector<int8_t> expected{64, -32, 32, 64, -64, 16, 127, -127};
  CHECK(std::vector<int8_t>(codes.data<int8_t>(), codes.data<int8_t>() + 8) == expected);
  const ir::Tensor& scale = dq->input(1)->initializer;
  REQUIRE(scale.shape() == ir::Shape{2});
  CHECK(scale.data<float>()[0] == Approx(2.0f / 127));
  CHECK(scale.data<float>()[1] == Approx(8.0f / 127));
  ir::Node* mm = onlyNode(g, "MatMul");
  CHECK(mm->input(1) == dq->output(0));
  CHECK(g.findValue("w") == nullptr);  // the float weight is gone
  REQUIRE(report.layers.size() == 1);
  CHECK(report.layers[0].bits == 8);
  CHECK(report.layers[0].form == "DequantizeLinear");
  CHECK(report.layers[0].bytes_before == 32);
  CHECK(report.layers[0].bytes_after == 8 + 2 * 4);
  // 10 log10(91.25 / 1.4415e-3): signal energy over the squared rounding errors of the codes above
  CHECK(report.layers[0].sqnr_db == Approx(48.014).margin(0.01));
}

TEST_CASE("w4 group-16 symmetric as MatMulNBits: packed codes, scales, attributes", "[rtn][lowering]") {
  // W[k, n] = (k - 8) * (n + 1) / 4, K = 16, N = 2: column amax 2 and 4, scales 2/7 and 4/7.
  std::string values;
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 2; ++n) values += (values.empty() ? "" : ", ") + std::to_string((k - 8) * (n + 1) / 4.0);
  ir::Model m = onnx_io::parseModelText("<ir_version: 8, opset_import: [\"\" : 17]>\n"
                                        "g (float[3, 16] x) => (float[3, 2] y)\n<float[16, 2] w = {" + values +
                                        "}>\n{ y = MatMul(x, w) }\n");
  quantize(m, R"({"weights": {"bits": 4, "symmetric": true, "granularity": "group", "group_size": 16}})", true);
  ir::Node* nb = onlyNode(*m.graph, "MatMulNBits");
  CHECK(nb->domain() == "com.microsoft");
  CHECK(nb->attrInt("K", 0) == 16);
  CHECK(nb->attrInt("N", 0) == 2);
  CHECK(nb->attrInt("bits", 0) == 4);
  CHECK(nb->attrInt("block_size", 0) == 16);
  CHECK(m.opsetVersion("com.microsoft") == 1);
  REQUIRE(nb->numInputs() == 3);  // symmetric: default zero point 8
  const ir::Tensor& b = nb->input(1)->initializer;
  REQUIRE(b.shape() == ir::Shape{2, 1, 8});
  // column 0, k = 0, 1: codes round(-7) = -7, round(-6.125) = -6 -> unsigned 1, 2 -> byte 0x21.
  CHECK(b.data<uint8_t>()[0] == 0x21);
  // k = 8 (value 0) -> 8 and k = 9 (0.25 / (2/7) = 0.875 -> 1) -> 9: byte 4 = 0x98.
  CHECK(b.data<uint8_t>()[4] == 0x98);
  const ir::Tensor& s = nb->input(2)->initializer;
  REQUIRE(s.shape() == ir::Shape{2, 1});
  CHECK(s.data<float>()[0] == Approx(2.0f / 7));
  CHECK(s.data<float>()[1] == Approx(4.0f / 7));
  CHECK(nb->input(0)->name() == "x");
  CHECK(nb->output(0)->name() == "y");
}

TEST_CASE("MatMulNBits B holds the QDQ form's codes column by column, at any K and N", "[rtn][lowering]") {
  // K = 40 and N = 37: the lowering's 16x16 byte transposes plus row and column tails. The same
  // rtn codes written as DequantizeLinear ([K, N], int8 or uint8) are the reference.
  constexpr int K = 40, N = 37;
  std::string values;
  for (int k = 0; k < K; ++k)
    for (int n = 0; n < N; ++n) values += (values.empty() ? "" : ", ") + std::to_string(std::sin(k * 37.0 + n * 1.7) * (1 + n % 5));
  const std::string text = "<ir_version: 8, opset_import: [\"\" : 17]>\ng (float[1, 40] x) => (float[1, 37] y)\n"
                           "<float[40, 37] w = {" + values + "}>\n{ y = MatMul(x, w) }\n";
  for (bool symmetric : {true, false}) {
    INFO("symmetric " << symmetric);
    const std::string config = std::string(R"({"weights": {"bits": 8, "granularity": "channel", "symmetric": )") +
                               (symmetric ? "true" : "false") + "}}";
    ir::Model qdq = onnx_io::parseModelText(text), nbits = onnx_io::parseModelText(text);
    quantize(qdq, config, false);
    quantize(nbits, config, true);
    const ir::Tensor& codes = onlyNode(*qdq.graph, "DequantizeLinear")->input(0)->initializer;
    ir::Node* nb = onlyNode(*nbits.graph, "MatMulNBits");
    REQUIRE(nb->attrInt("block_size", 0) == 64);
    const ir::Tensor& b = nb->input(1)->initializer;
    REQUIRE(b.shape() == ir::Shape{N, 1, 64});
    int mismatches = 0;
    for (int n = 0; n < N; ++n) {
      for (int k = 0; k < 64; ++k) {
        const int expect = k >= K ? 0 : symmetric ? codes.data<int8_t>()[k * N + n] + 128 : codes.data<uint8_t>()[k * N + n];
        mismatches += b.data<uint8_t>()[n * 64 + k] != expect;
      }
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("w4 group asymmetric as QDQ: uint4 codes and zero points, block_size, opset 21", "[rtn][lowering]") {
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 10, opset_import: ["" : 21]>
g (float[1, 32] x) => (float[1, 1] y)
<float[32, 1] w = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13, -14, -15, -30}>
{ y = MatMul(x, w) }
)");
  quantize(m, R"({"weights": {"bits": 4, "symmetric": false, "granularity": "group", "group_size": 16}})", false);
  ir::Node* dq = onlyNode(*m.graph, "DequantizeLinear");
  CHECK(dq->attrInt("axis", -1) == 0);
  CHECK(dq->attrInt("block_size", 0) == 16);
  REQUIRE(dq->numInputs() == 3);
  const ir::Tensor& codes = dq->input(0)->initializer;
  CHECK(codes.dtype() == ir::DType::kUInt4);
  CHECK(codes.nbytes() == 16);
  const ir::Tensor& scale = dq->input(1)->initializer;
  REQUIRE(scale.shape() == ir::Shape{2, 1});
  // block 0: [0, 15] -> scale 1, zero 0, codes = values; block 1: [-30, 0] -> scale 2, zero 15.
  CHECK(scale.data<float>()[0] == 1.0f);
  CHECK(scale.data<float>()[1] == 2.0f);
  const ir::Tensor& zp = dq->input(2)->initializer;
  CHECK(zp.dtype() == ir::DType::kUInt4);
  CHECK(zp.data<uint8_t>()[0] == (0 | (15 << 4)));
  CHECK(codes.data<uint8_t>()[0] == (0 | (1 << 4)));   // codes 0, 1
  CHECK(codes.data<uint8_t>()[7] == (14 | (15 << 4)));  // codes 14, 15
  // -1 / 2 = -0.5 -> 0 (half to even) + 15 = 15; -2 / 2 = -1 -> 14.
  CHECK(codes.data<uint8_t>()[8] == (15 | (14 << 4)));
}

TEST_CASE("layers the config skips stay float and are reported with the reason", "[rtn][lowering]") {
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4] x) => (float[1, 2] y)
<float[4, 4] w1 = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4, 2] w2 = {1, 2, 3, 4, 5, 6, 7, 8}>
{ h = MatMul(x, w1)
  y = MatMul(h, w2) }
)");
  auto report = quantize(m, R"({"layers": {"skip": ["w2"]}})", false);
  CHECK(m.graph->findValue("w2") != nullptr);
  CHECK(m.graph->findValue("w2")->isConstant());
  CHECK(m.graph->findValue("w1") == nullptr);
  REQUIRE(report.layers.size() == 2);
  bool saw_skip = false;
  for (const auto& l : report.layers)
    if (l.weight == "w2") {
      saw_skip = true;
      CHECK(l.action == "skipped: excluded by layers.skip 'w2'");
    }
  CHECK(saw_skip);
}

TEST_CASE("Gemm with transB, Conv and an embedding Gather get per-output-channel scales on the right axis", "[rtn][lowering]") {
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (int64[1, 2] ids, float[1, 2, 3, 3] img) => (float[1, 3] y, float[1, 2, 4] e, float[1, 3, 2, 2] c)
<float[3, 4] wt = {1, 2, 3, 4,  -8, 0, 0, 0,  0.5, 0.5, 0.5, 0.5},
 float[3, 2, 2, 2] wc = {1, 1, 1, 1, 1, 1, 1, 1,  2, 0, 0, 0, 0, 0, 0, -4,  1, 2, 3, 4, 5, 6, 7, 8},
 float[5, 4] table = {1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 3, 0, 0, 0, 0, 4, 5, 5, 5, -5}>
{
  e = Gather(table, ids)
  flat = ReduceMean<axes = [1]>(e)
  y = Gemm<transB = 1>(flat, wt)
  c = Conv(img, wc)
}
)");
  quantize(m, R"({"weights": {"bits": 8, "granularity": "channel"}, "layers": {"quantize_embeddings": true}})", false);
  std::map<std::string, ir::Node*> dq_by_weight;
  for (ir::Node* n : m.graph->nodes())
    if (n->opType() == "DequantizeLinear") dq_by_weight[n->input(0)->name()] = n;
  REQUIRE(dq_by_weight.size() == 3);
  ir::Node* gemm_dq = dq_by_weight.at("wt_quantized");
  CHECK(gemm_dq->attrInt("axis", -1) == 0);  // transB: [N, K], channels on axis 0
  const float* s = gemm_dq->input(1)->initializer.data<float>();
  CHECK(s[0] == Approx(4.0f / 127));
  CHECK(s[1] == Approx(8.0f / 127));
  CHECK(s[2] == Approx(0.5f / 127));
  ir::Node* conv_dq = dq_by_weight.at("wc_quantized");
  CHECK(conv_dq->attrInt("axis", -1) == 0);
  REQUIRE(conv_dq->input(1)->initializer.shape() == ir::Shape{3});
  CHECK(conv_dq->input(1)->initializer.data<float>()[1] == Approx(4.0f / 127));
  // Conv channel 1 codes: 2 / (4/127) = 63.5 -> 64 (half to even), -4 -> -127.
  const int8_t* cc = conv_dq->input(0)->initializer.data<int8_t>();
  CHECK(cc[8] == 64);
  CHECK(cc[15] == -127);
  ir::Node* emb_dq = dq_by_weight.at("table_quantized");
  CHECK(emb_dq->attrInt("axis", -1) == 0);  // one scale per token row
  CHECK(emb_dq->input(1)->initializer.data<float>()[4] == Approx(5.0f / 127));
  CHECK(emb_dq->output(0)->uses().at(0).node->opType() == "Gather");
}
