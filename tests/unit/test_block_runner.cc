// BlockRunner: block-by-block execution must give the full run's outputs bit for bit, with the same
// number of node executions (O(L) work), and must see constants changed between blocks.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <iterator>

#include "formats/onnx/onnx_io.h"
#include "lib/runtime/block_runner.h"
#include "lib/runtime/session.h"
#include "tests/support/test_paths.h"

namespace {
using ptq::ir::Tensor;
using ptq::runtime::BlockRunner;
using ptq::runtime::Session;
using Batch = std::map<std::string, Tensor>;

bool sameBits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// `count` batches of 2 x 32 tokens from NAME.calib.i64 (raw little-endian int64 [64, 128]).
std::vector<Batch> tokenBatches(const std::string& name, int count) {
  std::ifstream f(ptq::test::zooFile(name + ".calib.i64"), std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() == 64 * 128 * 8);
  std::vector<Batch> batches;
  for (int b = 0; b < count; ++b) {
    std::vector<int64_t> ids;
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 32; ++c) {
        int64_t v;
        std::memcpy(&v, bytes.data() + ((2 * b + r) * 128 + c) * 8, 8);
        ids.push_back(v);
      }
    batches.push_back({{"input_ids", Tensor::fromInt64s({2, 32}, ids)}});
  }
  return batches;
}

void checkLanguageModel(const std::string& name) {
  ptq::ir::Model m = ptq::onnx_io::loadModel(ptq::test::zooFile(name + ".onnx"));
  std::vector<const ptq::ir::Node*> anchors;  // the linears GPTQ would visit
  for (const ptq::ir::Node* n : m.graph->nodes())
    if (n->opType() == "MatMul" && n->input(1) && n->input(1)->isConstant()) anchors.push_back(n);
  const std::vector<Batch> batches = tokenBatches(name, 3);

  ptq::runtime::SessionOptions opts;
  opts.threads = 2;
  Session full(m, opts);
  std::vector<Tensor> expected;
  for (const Batch& b : batches) expected.push_back(full.run(b).at("logits"));
  const int64_t full_count = full.nodeExecutions();

  Session s(m, opts);
  BlockRunner br(s, batches, anchors);
  const size_t nb = br.numBlocks();
  int64_t prefix_cost = 0, prefix = 0;  // what re-running the prefix for every block would cost
  std::string sizes;
  for (size_t i = 0; i < nb; ++i) {
    prefix += static_cast<int64_t>(br.blockNodes(i).size());
    prefix_cost += prefix * static_cast<int64_t>(batches.size());
    sizes += (i ? " " : "") + std::to_string(br.blockNodes(i).size());
  }
  int64_t tapped = 0;
  for (size_t i = 0; i + 1 < nb; ++i) {
    // A tap on a value of the block: fired once per batch.
    const std::string v = br.blockNodes(i).back()->output(0)->name();
    int64_t fired = 0;
    br.runBlock(i, {{v, [&](const std::string&, const Tensor&) { ++fired; }}});
    CHECK(fired == static_cast<int64_t>(batches.size()));
    tapped += fired;
  }
  const std::vector<Batch> out = br.finish();
  REQUIRE(out.size() == batches.size());
  for (size_t b = 0; b < batches.size(); ++b) CHECK(sameBits(out[b].at("logits"), expected[b]));
  std::string boundary;
  for (const std::string& v : br.blockOutputs(0)) boundary += (boundary.empty() ? "" : ", ") + v;
  WARN(name << ": " << anchors.size() << " anchors, " << nb << " blocks (nodes per block: " << sizes
            << "), boundary after block 0: " << br.blockOutputs(0).size() << " values [" << boundary << "]; node executions "
            << "for " << batches.size() << " batches: full runs " << full_count << ", block walk " << s.nodeExecutions()
            << ", re-running the prefix per block " << prefix_cost);
  CHECK(nb >= 4);       // at least one block per transformer layer
  CHECK(nb <= 4 * 2 + 2);
  CHECK(s.nodeExecutions() == full_count);
  CHECK(prefix_cost > 2 * full_count);
  CHECK(tapped > 0);
}
}  // namespace

TEST_CASE("block-by-block llama-jargon matches full runs bit for bit with O(L) work", "[runtime][zoo]") {
  PTQ_REQUIRE_ZOO();
  checkLanguageModel("llama-jargon");
}

TEST_CASE("block-by-block gpt-fortunes matches full runs bit for bit with O(L) work", "[runtime][zoo]") {
  PTQ_REQUIRE_ZOO();
  checkLanguageModel("gpt-fortunes");
}

TEST_CASE("a constant changed between blocks is seen downstream as in a full run with it", "[runtime]") {
  // Two "layers" x -> MatMul(w1) -> Relu -> MatMul(w2) -> y, each a block around its anchor.
  auto text = [](const std::string& w2) {
    return R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[1,2] x) => (float[1,2] y) <float[2,2] w1 = {1, 2, 3, 4}, float[2,2] w2 = {)" + w2 + R"(}> {
        h = MatMul(x, w1)  r = Relu(h)  y = MatMul(r, w2) })";
  };
  auto m = ptq::onnx_io::parseModelText(text("1, 0, 0, 1"));
  const std::vector<const ptq::ir::Node*> anchors = {m.graph->nodes()[0], m.graph->nodes()[2]};
  const std::vector<Batch> batches = {{{"x", Tensor::fromFloats({1, 2}, {1, -1})}},
                                      {{"x", Tensor::fromFloats({1, 2}, {0.5f, 2})}}};
  Session s(m);
  BlockRunner br(s, batches, anchors);
  REQUIRE(br.numBlocks() == 2);
  CHECK(br.blockNodes(0).size() == 1);  // the smallest cut is right after the first MatMul (h) or the Relu (r)
  br.runBlock(0);
  const Tensor w2 = Tensor::fromFloats({2, 2}, {0.5f, -1, 2, 3});
  s.setConstant("w2", w2);
  const std::vector<Batch> out = br.finish();

  auto ref_model = ptq::onnx_io::parseModelText(text("0.5, -1, 2, 3"));
  Session ref(ref_model);
  for (size_t b = 0; b < batches.size(); ++b) CHECK(sameBits(out[b].at("y"), ref.run(batches[b]).at("y")));
  // Independent check for batch 1: h = [0.5*1+2*3, 0.5*2+2*4] = [6.5, 9]; y = [6.5*0.5+9*2, 6.5*-1+9*3].
  CHECK(out[1].at("y").toFloats() == std::vector<float>{21.25f, 20.5f});
  CHECK_THROWS(br.runBlock(0));
}

TEST_CASE("a block run with a kept intermediate value skips its producers and gives the same bits", "[runtime]") {
  // One block: x -> MatMul(w1) -> h -> Relu -> r -> MatMul(w2) -> y. Observing r and feeding it back
  // must leave the first MatMul and the Relu out of the final run.
  auto m = ptq::onnx_io::parseModelText(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[1,2] x) => (float[1,2] y) <float[2,2] w1 = {1, 2, 3, 4}, float[2,2] w2 = {1, -1, 2, 3}> {
        h = MatMul(x, w1)  r = Relu(h)  y = MatMul(r, w2) })");
  const std::vector<const ptq::ir::Node*> anchors = {m.graph->nodes()[2]};
  const std::vector<Batch> batches = {{{"x", Tensor::fromFloats({1, 2}, {1, -1})}},
                                      {{"x", Tensor::fromFloats({1, 2}, {0.5f, 2})}}};
  Session s(m);
  BlockRunner br(s, batches, anchors);
  REQUIRE(br.numBlocks() == 1);
  std::vector<Batch> kept;
  br.observeBlock(0, {{"r", [&](const std::string&, const Tensor& t) { kept.push_back({{"r", t}}); }}});
  REQUIRE(kept.size() == 2);
  const int64_t before = s.nodeExecutions();
  const std::vector<Batch> out = [&] {
    br.runBlock(0, kept);
    return br.finish();
  }();
  CHECK(s.nodeExecutions() - before == 2);  // only the second MatMul, once per batch
  // Batch 1 by hand: h = [0.5+6, 1+8] = [6.5, 9] = r; y = [6.5*1+9*2, 6.5*-1+9*3] = [24.5, 20.5].
  CHECK(out[1].at("y").toFloats() == std::vector<float>{24.5f, 20.5f});
  Session ref(m);
  for (size_t b = 0; b < batches.size(); ++b) CHECK(sameBits(out[b].at("y"), ref.run(batches[b]).at("y")));
  CHECK_THROWS(BlockRunner(s, batches, anchors).runBlock(0, {kept[0]}));  // one batch's values for two batches
}
