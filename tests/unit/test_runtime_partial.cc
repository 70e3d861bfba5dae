// Partial execution (feeding intermediate values) and replacing constants without re-planning.
// References: full runs of the same graph, and fresh sessions on a graph holding the new constant.
#include <catch2/catch.hpp>

#include "support/random_tensor.h"
#include <cstring>
#include <random>

#include "formats/onnx/onnx_io.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"

namespace {
using ptq::ir::Tensor;
using ptq::runtime::Session;

ptq::ir::Model parse(const std::string& text) { return ptq::onnx_io::parseModelText(text); }

using ptq::test::randomTensor;

bool sameBits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// Runs fn, returns the error (code, message); kOk when it did not throw.
std::pair<ptq::ExitCode, std::string> errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ptq::Error& e) {
    return {e.code(), e.what()};
  }
  return {ptq::ExitCode::kOk, ""};
}

const char* kChain = R"(<ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) <float[3] c = {1, 2, 3}> {
      a = Mul(x, x)  b = Neg(a)  y = Add(b, c) })";
}  // namespace

TEST_CASE("feeding an intermediate value runs only the nodes after it", "[runtime]") {
  auto m = parse(kChain);
  Session s(m);
  const Tensor x = randomTensor({2, 3}, 1);
  const auto full = s.run({{"x", x}}, {"b", "y"});
  const int64_t after_full = s.nodeExecutions();
  CHECK(after_full == 3);
  const auto part = s.run({{"b", full.at("b")}});  // x not given: its consumers are not needed
  CHECK(s.nodeExecutions() - after_full == 1);
  CHECK(sameBits(part.at("y"), full.at("y")));
  // Independent check of y = b + c.
  const std::vector<float> b = full.at("b").toFloats(), y = part.at("y").toFloats();
  for (size_t i = 0; i < b.size(); ++i) CHECK(y[i] == b[i] + static_cast<float>(i % 3 + 1));
  // A different value for b gives a different y: the fed value is really used.
  const auto other = s.run({{"b", Tensor::fromFloats({2, 3}, {0, 0, 0, 1, 1, 1})}});
  CHECK(other.at("y").toFloats() == std::vector<float>{1, 2, 3, 2, 3, 4});
  // The schedule cache tells fed sets apart: a full run afterwards computes from x again.
  CHECK(sameBits(s.run({{"x", x}}).at("y"), full.at("y")));
  // A fed value can be requested back.
  CHECK(sameBits(s.run({{"a", full.at("b")}}, {"a"}).at("a"), full.at("b")));
}

TEST_CASE("partial runs check graph inputs still needed, unknown names and dtypes", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[3] x) => (float[3] y) { a = Neg(x)  b = Relu(a)  y = Add(b, x) })");
  Session s(m);
  const Tensor v = Tensor::fromFloats({3}, {1, -2, 3});
  auto e = errorOf([&] { s.run({{"b", v}}); });  // Add still reads x
  CHECK(e.first == ptq::ExitCode::kUsage);
  CHECK_THAT(e.second, Catch::Contains("input 'x'") && Catch::Contains("was not given"));
  CHECK(s.run({{"b", v}, {"x", v}}).at("y").toFloats() == std::vector<float>{2, -4, 6});
  e = errorOf([&] { s.run({{"nosuch", v}}); });
  CHECK(e.first == ptq::ExitCode::kUsage);
  CHECK_THAT(e.second, Catch::Contains("'nosuch'"));
  e = errorOf([&] { s.run({{"b", Tensor::fromInt64s({3}, {1, 2, 3})}, {"x", v}}); });
  CHECK(e.first == ptq::ExitCode::kInput);
  CHECK_THAT(e.second, Catch::Contains("'b'") && Catch::Contains("int64"));
}

TEST_CASE("in a partial run, taps upstream of the fed value are skipped, downstream ones fire", "[runtime]") {
  auto m = parse(kChain);
  Session s(m);
  int upstream = 0, downstream = 0;
  s.tap("a", [&](const std::string&, const Tensor&) { ++upstream; });
  s.tap("y", [&](const std::string&, const Tensor&) { ++downstream; });
  s.run({{"x", randomTensor({2, 3}, 2)}});
  CHECK(upstream == 1);
  s.run({{"b", randomTensor({2, 3}, 3)}});
  CHECK(upstream == 1);
  CHECK(downstream == 2);
  int per_run = 0;
  s.run({{"b", randomTensor({2, 3}, 3)}}, {}, {{"b", [&](const std::string&, const Tensor&) { ++per_run; }}});
  s.run({{"b", randomTensor({2, 3}, 3)}});
  CHECK(per_run == 1);  // run taps last one call
}

TEST_CASE("setConstant re-creates the kernels that captured the constant", "[runtime]") {
  // Conv prepacks its weight at planning; Reshape reads its shape constant at planning.
  const std::string text = R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[1,2,5,5] x) => (float[1,27] y) <float[3,2,3,3] w = {W}, int64[2] shp = {1, 27}> {
        c = Conv <pads = [0,0,0,0]> (x, w)  y = Reshape(c, shp) })";
  std::string wtext;
  for (int i = 0; i < 54; ++i) wtext += (i ? ", " : "") + std::to_string(0.01 * i);
  auto textWith = [&](const std::string& w) { std::string t = text; return t.replace(t.find("W}"), 1, w); };
  auto m = parse(textWith(wtext));
  Session s(m);
  const Tensor x = randomTensor({1, 2, 5, 5}, 4);
  const Tensor before = s.run({{"x", x}}).at("y");

  const Tensor w2 = randomTensor({3, 2, 3, 3}, 5);
  std::string w2text;
  for (size_t i = 0; i < 54; ++i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", w2.toFloats()[i]);
    w2text += (i ? ", " : "") + std::string(buf);
  }
  s.setConstant("w", w2);
  auto ref_model = parse(textWith(w2text));
  REQUIRE(sameBits(ref_model.graph->findValue("w")->initializer, w2));
  Session ref(ref_model);
  const Tensor after = s.run({{"x", x}}).at("y");
  CHECK(sameBits(after, ref.run({{"x", x}}).at("y")));
  CHECK_FALSE(sameBits(after, before));

  s.setConstant("shp", Tensor::fromInt64s({2}, {3, 9}));
  CHECK(s.run({{"x", x}}).at("y").shape() == ptq::ir::Shape{3, 9});

  auto e = errorOf([&] { s.setConstant("w", randomTensor({3, 2, 3, 2}, 6)); });
  CHECK(e.first == ptq::ExitCode::kUsage);
  CHECK_THAT(e.second, Catch::Contains("'w'"));
  e = errorOf([&] { s.setConstant("c", randomTensor({1, 3, 3, 3}, 6)); });
  CHECK(e.first == ptq::ExitCode::kUsage);
  CHECK_THAT(e.second, Catch::Contains("not a constant"));
}

TEST_CASE("reloadConstant picks up a weight a pass changed in the graph", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[2,2] x) => (float[2,2] y) <float[2,2] w = {1, 0, 0, 1}> { y = MatMul(x, w) })");
  Session s(m);
  const Tensor x = Tensor::fromFloats({2, 2}, {1, 2, 3, 4});
  CHECK(s.run({{"x", x}}).at("y").toFloats() == std::vector<float>{1, 2, 3, 4});
  m.graph->findValue("w")->initializer = Tensor::fromFloats({2, 2}, {0, 1, 1, 0});
  CHECK(s.run({{"x", x}}).at("y").toFloats() == std::vector<float>{1, 2, 3, 4});  // not yet reloaded
  s.reloadConstant("w");
  CHECK(s.run({{"x", x}}).at("y").toFloats() == std::vector<float>{2, 1, 4, 3});
}

TEST_CASE("setConstant re-runs the factories of the reading nodes, all or nothing", "[runtime]") {
  // Dropout reads training_mode at planning only: true is refused there, so a rebuilt kernel shows.
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[3] x) => (float[3] y) <float ratio = {0.5}, bool tm = {0}> { d = Dropout(x, ratio, tm)  y = Neg(d) })");
  m.graph->nodes()[0]->name = "drop";
  Session s(m);
  const Tensor x = Tensor::fromFloats({3}, {1, 2, 3});
  Tensor on(ptq::ir::DType::kBool, {});
  on.mutableData<uint8_t>()[0] = 1;
  const auto e = errorOf([&] { s.setConstant("tm", on); });
  CHECK(e.first == ptq::ExitCode::kInput);
  CHECK_THAT(e.second, Catch::Contains("node 'drop'") && Catch::Contains("training_mode"));
  CHECK(s.run({{"x", x}}).at("y").toFloats() == std::vector<float>{-1, -2, -3});  // old state kept
}
