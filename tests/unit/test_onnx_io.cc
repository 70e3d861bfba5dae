// ONNX reader/writer: text graphs through the IR and back, the zoo models round-trip, error cases.
#include <catch2/catch.hpp>

#include <fstream>

#include "formats/onnx/onnx_io.h"
#include "lib/ir/verifier.h"
#include "lib/util/error.h"
#include "lib/util/file_pages.h"
#include "support/test_paths.h"

using namespace ptq;

namespace {
const char* kSmallModel = R"(
<ir_version: 8, opset_import: ["" : 17], producer_name: "unit-test", doc_string: "small">
g (float[N, 4] x) => (float[N, 3] y)
<float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {0.5, -1, 2}>
{
  h = MatMul(x, w)
  c = Constant<value_ints = [1, 3]>()
  y = Add(h, b)
}
)";

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void writeAll(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}
}  // namespace

TEST_CASE("text model parses into the IR with weights, constants and opsets", "[onnx_io]") {
  ir::Model m = onnx_io::parseModelText(kSmallModel);
  CHECK(m.opsetVersion() == 17);
  CHECK(m.producer_name == "unit-test");
  const ir::Graph& g = *m.graph;
  REQUIRE(g.realInputs().size() == 1);
  CHECK(g.realInputs()[0]->name() == "x");
  REQUIRE(g.realInputs()[0]->shape);
  CHECK((*g.realInputs()[0]->shape)[0].symbol == "N");
  CHECK((*g.realInputs()[0]->shape)[1].value == 4);
  CHECK(g.numNodes() == 2);  // the Constant node became a weight value
  ir::Value* c = g.findValue("c");
  REQUIRE(c);
  CHECK(c->isConstant());
  CHECK(c->from_constant_node);
  CHECK(c->initializer.toInt64s() == std::vector<int64_t>{1, 3});
  ir::Value* w = g.findValue("w");
  REQUIRE(w);
  CHECK(w->initializer.shape() == ir::Shape{4, 3});
  CHECK(w->initializer.data<float>()[11] == 12.0f);
  CHECK(w->uses().size() == 1);
  CHECK(ir::verifyGraph(g).empty());
}

TEST_CASE("serialize -> parse keeps structure, names, attributes and data", "[onnx_io]") {
  ir::Model a = onnx_io::parseModelText(kSmallModel);
  const std::string bytes = onnx_io::serializeModel(a);
  ir::Model b = onnx_io::loadModelFromBytes(bytes, "roundtrip");
  CHECK(b.doc_string == "small");
  CHECK(b.graph->numNodes() == a.graph->numNodes());
  auto an = a.graph->nodes(), bn = b.graph->nodes();
  for (size_t i = 0; i < an.size(); ++i) {
    CHECK(an[i]->opType() == bn[i]->opType());
    REQUIRE(an[i]->numInputs() == bn[i]->numInputs());
    for (size_t j = 0; j < an[i]->numInputs(); ++j) CHECK(an[i]->input(j)->name() == bn[i]->input(j)->name());
  }
  for (ir::Value* v : a.graph->initializers()) {
    ir::Value* o = b.graph->findValue(v->name());
    REQUIRE(o);
    CHECK(o->initializer.sameAs(v->initializer));
    CHECK(o->from_constant_node == v->from_constant_node);
  }
  // A second trip is byte-identical: the writer is deterministic.
  CHECK(onnx_io::serializeModel(b) == bytes);
}

TEST_CASE("subgraphs keep outer-scope references", "[onnx_io]") {
  const char* text = R"(
<ir_version: 8, opset_import: ["" : 17]>
g (bool cond, float[2] x) => (float[2] y)
{
  two = Constant<value = float[2] {2, 2}>()
  y = If(cond) <then_branch = then_g () => (float[2] t) { t = Mul(x, two) },
                else_branch = else_g () => (float[2] e) { e = Add(x, two) }>
}
)";
  ir::Model m = onnx_io::parseModelText(text);
  ir::Node* iff = m.graph->nodes().at(0);
  REQUIRE(iff->attrs.at("then_branch").g);
  const ir::Graph& then_g = *iff->attrs.at("then_branch").g;
  ir::Value* x_in = then_g.nodes().at(0)->input(0);
  CHECK(x_in->name() == "x");
  CHECK(x_in->kind() == ir::Value::Kind::kOuterScope);
  // Dead-code removal must not drop 'two', which only the subgraphs read.
  CHECK(m.graph->removeDeadCode() == 0);
  ir::Model back = onnx_io::loadModelFromBytes(onnx_io::serializeModel(m), "if");
  CHECK(back.graph->nodes().at(0)->attrs.at("else_branch").g->nodes().at(0)->opType() == "Add");
}

TEST_CASE("saving writes atomically and external data round-trips", "[onnx_io]") {
  const std::string dir = test::tempDir("onnx_io_ext");
  ir::Model m = onnx_io::parseModelText(kSmallModel);
  onnx_io::SaveOptions opts;
  opts.external_data = onnx_io::SaveOptions::ExternalData::kAlways;
  opts.external_threshold_bytes = 16;
  onnx_io::saveModel(m, dir + "/m.onnx", opts);
  CHECK(test::fileExists(dir + "/m.onnx.data"));
  ir::Model back = onnx_io::loadModel(dir + "/m.onnx");
  ir::Value* w = back.graph->findValue("w");
  REQUIRE(w);
  CHECK(w->initializer.isView());  // mapped, not copied
  CHECK(w->initializer.sameAs(m.graph->findValue("w")->initializer));
  CHECK(onnx_io::checkModelFile(dir + "/m.onnx") == "");

  SECTION("missing external data file is an input error naming it") {
    std::remove((dir + "/m.onnx.data").c_str());
    try {
      onnx_io::loadModel(dir + "/m.onnx");
      FAIL("expected an error");
    } catch (const Error& e) {
      CHECK(e.code() == ExitCode::kInput);
      CHECK_THAT(e.what(), Catch::Contains("m.onnx.data"));
      CHECK_THAT(e.what(), Catch::Contains("'w'"));
    }
  }
  SECTION("truncated external data file is an input error") {
    const std::string data = readAll(dir + "/m.onnx.data");
    writeAll(dir + "/m.onnx.data", data.substr(0, data.size() - 8));
    try {
      onnx_io::loadModel(dir + "/m.onnx");
      FAIL("expected an error");
    } catch (const Error& e) {
      CHECK(e.code() == ExitCode::kInput);
      CHECK_THAT(e.what(), Catch::Contains("truncated"));
    }
  }
}

TEST_CASE("a mapped external-data weight gives its pages back and reads the same bytes afterwards", "[onnx_io]") {
  const std::string dir = test::tempDir("onnx_io_pages");
  ir::Model m = onnx_io::parseModelText(kSmallModel);
  ir::Tensor big(ir::DType::kFloat32, {64, 256});  // 64 KiB: whole pages inside it whatever its offset
  for (int64_t i = 0; i < big.numel(); ++i) static_cast<float*>(big.mutableData())[i] = 0.25f * static_cast<float>(i % 977);
  m.graph->addInitializer("big", big);
  onnx_io::SaveOptions opts;
  opts.external_data = onnx_io::SaveOptions::ExternalData::kAlways;
  opts.external_threshold_bytes = 16;
  onnx_io::saveModel(m, dir + "/m.onnx", opts);
  ir::Model back = onnx_io::loadModel(dir + "/m.onnx");
  const ir::Tensor& t = back.graph->findValue("big")->initializer;
  REQUIRE(t.sameAs(big));
  // More than zero bytes given back means the tensor's data lies inside the registered file mapping
  // (it was not copied on load); at most the tensor's own bytes are touched.
  const size_t released = util::releaseFilePages(t.data(), t.nbytes());
  CHECK(released >= 15 * 4096);
  CHECK(released <= t.nbytes());
  CHECK(t.sameAs(big));  // read back from the file
  CHECK(util::releaseFilePages(t.data(), t.nbytes()) == released);  // again: idempotent
  // Not a mapping, or not wholly inside one: nothing happens.
  CHECK(util::releaseFilePages(big.data(), big.nbytes()) == 0);
  CHECK(util::releaseFilePages(static_cast<const char*>(t.data()) + 8, 100) == 0);  // no whole page
  const ir::Tensor& w = back.graph->findValue("w")->initializer;
  CHECK(util::releaseFilePages(w.data(), 1u << 30) == 0);  // runs past the mapping's end
}

TEST_CASE("bad model files are input errors that name the file", "[onnx_io][errors]") {
  const std::string dir = test::tempDir("onnx_io_bad");
  auto expectInputError = [](const std::string& path, const std::string& fragment) {
    try {
      onnx_io::loadModel(path);
      FAIL("expected an error for " + path);
    } catch (const Error& e) {
      CHECK(e.code() == ExitCode::kInput);
      CHECK_THAT(e.what(), Catch::Contains(path));
      CHECK_THAT(e.what(), Catch::Contains(fragment));
    }
  };
  expectInputError(dir + "/nope.onnx", "cannot open");
  writeAll(dir + "/text.onnx", "this is not a model\n");
  expectInputError(dir + "/text.onnx", "not");
  writeAll(dir + "/empty.onnx", "");
  expectInputError(dir + "/empty.onnx", "empty");
  const std::string good = onnx_io::serializeModel(onnx_io::parseModelText(kSmallModel));
  writeAll(dir + "/trunc.onnx", good.substr(0, good.size() / 2));
  expectInputError(dir + "/trunc.onnx", "not");
}

TEST_CASE("an initializer with an unknown dtype is an input error naming it", "[onnx_io][errors]") {
  std::string bytes = onnx_io::serializeModel(onnx_io::parseModelText(kSmallModel));
  // Patch the encoded TensorProto of 'w' (dims 4, 3; data_type 1 = float) to data_type 99.
  const std::string needle = std::string("\x08\x04\x08\x03\x10\x01", 6);
  auto pos = bytes.find(needle);
  REQUIRE(pos != std::string::npos);
  bytes[pos + 5] = 99;
  try {
    onnx_io::loadModelFromBytes(bytes, "patched.onnx");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::kInput);
    CHECK_THAT(e.what(), Catch::Contains("initializer 'w'"));
    CHECK_THAT(e.what(), Catch::Contains("99"));
  }
}

TEST_CASE("zoo models load, verify and round-trip byte-stably", "[onnx_io][zoo]") {
  PTQ_REQUIRE_ZOO();
  const std::string dir = test::tempDir("onnx_io_zoo");
  for (const char* name : {"digits_cnn.onnx", "llama-jargon.onnx", "gpt-fortunes.onnx"}) {
    INFO(name);
    ir::Model m = onnx_io::loadModel(test::zooFile(name));
    CHECK(ir::verifyGraph(*m.graph).empty());
    const std::string out = dir + "/" + name;
    onnx_io::saveModel(m, out);
    CHECK(onnx_io::checkModelFile(out) == "");
    ir::Model back = onnx_io::loadModel(out);
    CHECK(back.graph->numNodes() == m.graph->numNodes());
    CHECK(back.graph->initializers().size() == m.graph->initializers().size());
    for (ir::Value* v : m.graph->initializers()) CHECK(back.graph->findValue(v->name())->initializer.sameAs(v->initializer));
    CHECK(onnx_io::serializeModel(back) == onnx_io::serializeModel(m));
  }
}
