// The graph matchers (lib/ir/patterns.h) on the shapes real exporters produce: the zoo's torch
// exports (decomposed RMSNorm, LayerNormalization, the ViT's fused qkv, Shape readers and class-token
// Gather) and small text-format graphs for the other forms.
#include <catch2/catch.hpp>

#include "formats/onnx/onnx_io.h"
#include "lib/ir/patterns.h"
#include "support/skip.h"
#include "support/test_paths.h"

using namespace ptq;

namespace {

std::vector<std::string> readerNames(ir::Value* v) {
  std::vector<std::string> names;
  for (const ir::LinearMatch& l : ir::linearReaders(v).linears) names.push_back(l.node->name);
  return names;
}

}  // namespace

TEST_CASE("matchers find the zoo models' norms and the linears reading them", "[patterns][zoo]") {
  PTQ_REQUIRE_ZOO();
  SECTION("llama: decomposed RMSNorm (Pow, ReduceMean, Add, Sqrt, Div(1, .), Mul, Mul(gamma))") {
    ir::Model m = onnx_io::loadModel(test::zooFile("llama-jargon.onnx"));
    const auto norms = ir::matchNorms(*m.graph);
    REQUIRE(norms.size() == 9);  // two per block, four blocks, and the final one
    for (const ir::NormMatch& n : norms) {
      CHECK(n.kind == ir::NormKind::kRmsNorm);
      CHECK(n.form == "decomposed RMSNorm");
      CHECK(n.channels == 256);
      CHECK(n.nodes.size() == 7);
      CHECK(n.beta() == nullptr);
      REQUIRE(n.gamma());
      CHECK(n.gamma()->name() != "");
    }
    CHECK(norms[0].gamma()->name() == "blocks.0.n1.w");
    CHECK(readerNames(norms[0].output) ==
          std::vector<std::string>{"/blocks.0/q/MatMul", "/blocks.0/k/MatMul", "/blocks.0/v/MatMul"});
    CHECK(readerNames(norms[1].output) == std::vector<std::string>{"/blocks.0/gate/MatMul", "/blocks.0/up/MatMul"});
    CHECK(readerNames(norms[8].output) == std::vector<std::string>{"/head/MatMul"});
    // The residual stream feeds a norm and an Add: not only linears.
    const ir::LinearReaders r = ir::linearReaders(norms[1].input);
    CHECK_FALSE(r.ok());
    CHECK(r.linears.empty());
  }
  SECTION("gpt: LayerNormalization with gamma and beta; biased linears") {
    ir::Model m = onnx_io::loadModel(test::zooFile("gpt-fortunes.onnx"));
    const auto norms = ir::matchNorms(*m.graph);
    REQUIRE(norms.size() == 9);
    for (const ir::NormMatch& n : norms) {
      CHECK(n.kind == ir::NormKind::kLayerNorm);
      CHECK(n.form == "LayerNormalization");
      CHECK(n.channels == 256);
      CHECK(n.beta());
    }
    const ir::LinearReaders r = ir::linearReaders(norms[0].output);
    REQUIRE(r.ok());
    REQUIRE(r.linears.size() == 3);
    for (const ir::LinearMatch& l : r.linears) {
      CHECK(l.bias_add);
      CHECK(l.bias);
      CHECK(l.bias_input == 0);  // torch writes Add(bias, MatMul)
      CHECK(l.in_features == 256);
    }
    const ir::LinearReaders head = ir::linearReaders(norms[8].output);
    REQUIRE(head.linears.size() == 1);
    CHECK_FALSE(head.linears[0].bias);  // logits: no bias, and a graph output
  }
  SECTION("vit: Shape readers ignored, fused qkv, class-token Gather before the Gemm head") {
    ir::Model m = onnx_io::loadModel(test::zooFile("vit_digits.onnx"));
    const auto norms = ir::matchNorms(*m.graph);
    REQUIRE(norms.size() == 9);
    const ir::LinearReaders qkv = ir::linearReaders(norms[0].output);
    REQUIRE(qkv.ok());
    REQUIRE(qkv.linears.size() == 1);
    CHECK(qkv.linears[0].out_features == 384);
    const ir::LinearReaders head = ir::linearReaders(norms[8].output);
    REQUIRE(head.ok());
    REQUIRE(head.linears.size() == 1);
    CHECK(head.linears[0].node->opType() == "Gemm");
    CHECK(head.linears[0].weight_transposed);
    REQUIRE(head.through.size() == 1);
    CHECK(head.through[0]->opType() == "Gather");
    int embeddings = 0, residuals = 0;
    for (ir::Node* n : m.graph->nodes()) {
      embeddings += ir::matchEmbedding(n).has_value();
      residuals += ir::isResidualAdd(*n);
    }
    CHECK(embeddings == 0);  // the ViT has a patch Conv, no token table
    CHECK(residuals == 8);   // two per block
    // Fused qkv cut by Reshape to [.., 3, heads, head_dim]; attention with a Div scale and no mask.
    const std::optional<ir::OutputSplit> split = ir::matchOutputSplit(qkv.linears[0]);
    REQUIRE(split);
    CHECK(split->form == "Reshape");
    CHECK(split->columns == std::vector<std::pair<int64_t, int64_t>>{{0, 128}, {128, 256}, {256, 384}});
    int attention = 0, patch = 0, cls = 0;
    for (ir::Node* n : m.graph->nodes()) {
      if (const auto a = ir::matchAttention(n)) {
        ++attention;
        CHECK(a->scale);
        CHECK(a->scale->opType() == "Div");
        CHECK_FALSE(a->mask);
      }
      patch += ir::isPatchEmbedding(*n);
      cls += ir::isClassTokenConcat(*n);
    }
    CHECK(attention == 4);
    CHECK(patch == 1);
    CHECK(cls == 1);
    const auto h = ir::matchHead(*m.graph);
    REQUIRE(h);
    CHECK(h->linear.node->name == "/head/Gemm");
    CHECK_FALSE(h->tied);
  }
  SECTION("gpt: causal attention (Mul scale, Where mask), untied LM head, embeddings") {
    ir::Model m = onnx_io::loadModel(test::zooFile("gpt-fortunes.onnx"));
    int attention = 0, embeddings = 0;
    for (ir::Node* n : m.graph->nodes()) {
      if (const auto a = ir::matchAttention(n)) {
        ++attention;
        CHECK(a->scale);
        REQUIRE(a->mask);
        CHECK(a->mask->opType() == "Where");
      }
      embeddings += ir::matchEmbedding(n).has_value();
    }
    CHECK(attention == 4);
    CHECK(embeddings == 2);  // token and position tables
    const auto h = ir::matchHead(*m.graph);
    REQUIRE(h);
    CHECK(h->linear.node->name == "/head/MatMul");
    CHECK_FALSE(h->tied);
  }
}

TEST_CASE("matchers: fused projections cut by Split or Slice, a tied LM head", "[patterns]") {
  SECTION("Split on the last axis") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] x) => (float[N, 1] a, float[N, 2] b)
<float[2, 3] w = {1, 2, 3, 4, 5, 6}, int64[2] sizes = {1, 2}>
{ h = MatMul(x, w)
  a, b = Split <axis = -1> (h, sizes) }
)");
    const auto l = ir::matchLinear(m.graph->nodes().front());
    REQUIRE(l);
    const auto s = ir::matchOutputSplit(*l);
    REQUIRE(s);
    CHECK(s->form == "Split");
    CHECK(s->columns == std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {1, 3}});
  }
  SECTION("Slices on the last axis, and a Slice on another axis that is not a split") {
    const std::string text = R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] x) => (float[N, 2] a, float[N, 2] b)
<float[2, 4] w = {1, 2, 3, 4, 5, 6, 7, 8}, int64[1] s0 = {0}, int64[1] s2 = {2}, int64[1] s4 = {4},
 int64[1] ax = {AXIS}>
{ h = MatMul(x, w)
  b = Slice(h, s2, s4, ax)
  a = Slice(h, s0, s2, ax) }
)";
    auto withAxis = [&](const std::string& axis) {
      std::string t = text;
      t.replace(t.find("AXIS"), 4, axis);
      return onnx_io::parseModelText(t);
    };
    ir::Model m = withAxis("-1");
    const auto s = ir::matchOutputSplit(*ir::matchLinear(m.graph->nodes().front()));
    REQUIRE(s);
    CHECK(s->form == "Slice");
    CHECK(s->columns == std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {2, 4}});
    ir::Model other = withAxis("0");
    CHECK_FALSE(ir::matchOutputSplit(*ir::matchLinear(other.graph->nodes().front())));
  }
  SECTION("a Gemm(transB) head reading the embedding table is tied to it") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (int64[N] ids) => (float[N, 3] logits)
<float[3, 2] table = {1, 2, 3, 4, 5, 6}>
{ e = Gather(table, ids)
  logits = Gemm <transB = 1> (e, table) }
)");
    const auto h = ir::matchHead(*m.graph);
    REQUIRE(h);
    REQUIRE(h->tied);
    CHECK(h->tied->opType() == "Gather");
    CHECK(h->linear.weight_transposed);
    CHECK(h->linear.out_features == 3);
  }
}

TEST_CASE("matchers on decomposed and fused norm forms", "[patterns]") {
  SECTION("decomposed LayerNorm: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 2] y)
<float[4] gamma = {1, 2, 3, 4}, float[4] beta = {0.5, 0, 0, -1}, float[4, 2] w = {1, 0, 0, 1, 1, 1, 2, 0},
 float two = {2}, float eps = {1e-5}>
{ mu = ReduceMean <axes = [-1]> (x)
  d = Sub(x, mu)
  p = Pow(d, two)
  var = ReduceMean <axes = [-1]> (p)
  ve = Add(var, eps)
  sd = Sqrt(ve)
  n = Div(d, sd)
  ng = Mul(n, gamma)
  nb = Add(ng, beta)
  y = MatMul(nb, w) }
)");
    const auto norms = ir::matchNorms(*m.graph);
    REQUIRE(norms.size() == 1);
    CHECK(norms[0].kind == ir::NormKind::kLayerNorm);
    CHECK(norms[0].form == "decomposed LayerNorm");
    CHECK(norms[0].nodes.size() == 9);
    CHECK(norms[0].input->name() == "x");
    CHECK(norms[0].output->name() == "nb");
    CHECK(norms[0].gamma()->name() == "gamma");
    CHECK(norms[0].beta()->name() == "beta");
    CHECK(norms[0].channels == 4);
    CHECK_THAT(norms[0].name(), Catch::Contains("mu"));  // unnamed first node: described by its output
  }
  SECTION("decomposed RMSNorm with Mul(x, x), Reciprocal and gamma first") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] x) => (float[N, 3] y)
<float[3] gamma = {1, 2, 3}, float[3, 3] w = {1, 0, 0, 0, 1, 0, 0, 0, 1}, float eps = {1e-6}>
{ sq = Mul(x, x)
  ms = ReduceMean <axes = [-1]> (sq)
  me = Add(eps, ms)
  rt = Sqrt(me)
  r = Reciprocal(rt)
  n = Mul(x, r)
  ng = Mul(gamma, n)
  y = MatMul(ng, w) }
)");
    const auto norms = ir::matchNorms(*m.graph);
    REQUIRE(norms.size() == 1);
    CHECK(norms[0].form == "decomposed RMSNorm");
    CHECK(norms[0].gamma_input == 0);
    CHECK(norms[0].output->name() == "ng");
  }
  SECTION("a mean over another axis is not a norm over channels") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] x) => (float[N, 3] y)
<float eps = {1e-6}, float two = {2}>
{ sq = Pow(x, two)
  ms = ReduceMean <axes = [0]> (sq)
  me = Add(ms, eps)
  rt = Sqrt(me)
  y = Div(x, rt) }
)");
    CHECK(ir::matchNorms(*m.graph).empty());
  }
  SECTION("SimplifiedLayerNormalization (com.microsoft) and Gemm readers") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[N, 2] x) => (float[N, 2] y)
<float[2] gamma = {2, 3}, float[2, 2] w = {1, 2, 3, 4}, float[2] c = {1, 1}>
{ n = com.microsoft.SimplifiedLayerNormalization <axis = -1, epsilon = 0.00001> (x, gamma)
  y = Gemm <transB = 1, alpha = 0.5> (n, w, c) }
)");
    const auto norms = ir::matchNorms(*m.graph);
    REQUIRE(norms.size() == 1);
    CHECK(norms[0].kind == ir::NormKind::kRmsNorm);
    CHECK(norms[0].form == "SimplifiedLayerNormalization");
    const ir::LinearReaders r = ir::linearReaders(norms[0].output);
    REQUIRE(r.linears.size() == 1);
    const ir::LinearMatch& l = r.linears[0];
    CHECK(l.weight_transposed);
    CHECK(l.alpha == 0.5f);
    CHECK(l.bias->name() == "c");
    CHECK(l.index(0, 1) == 2);  // W^T stored [out, in]: element (in 0, out 1) is row 1, column 0
  }
  SECTION("a norm output that is also a residual input, or a graph output, is not only read by linears") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] x) => (float[N, 2] y, float[N, 2] n)
<float[2] gamma = {2, 3}, float[2] beta = {0, 1}, float[2, 2] w = {1, 2, 3, 4}>
{ n = LayerNormalization <axis = -1> (x, gamma, beta)
  h = MatMul(n, w)
  y = Add(h, n) }
)");
    const auto norms = ir::matchNorms(*m.graph);
    REQUIRE(norms.size() == 1);
    const ir::LinearReaders r = ir::linearReaders(norms[0].output);
    CHECK_FALSE(r.ok());
    CHECK(r.linears.empty());
    CHECK_THAT(r.why, Catch::Contains("graph output"));
    CHECK(ir::isResidualAdd(*m.graph->nodes().back()));
  }
}
