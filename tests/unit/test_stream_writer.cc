// The streaming writer (weights spliced into the serialized model from their buffers, see
// formats/onnx/wire_splice.h) writes exactly the bytes protobuf writes for the whole ModelProto
// (serializeModel, the writer before it): on a hand-built graph with every kind of field around the
// streamed initializers, and on every zoo model.
#include <catch2/catch.hpp>

#include <dirent.h>

#include <fstream>
#include <string>
#include <vector>

#include "formats/onnx/onnx_io.h"
#include "formats/onnx/wire_splice.h"
#include "lib/util/error.h"
#include "support/skip.h"
#include "support/test_paths.h"

using namespace ptq;

namespace {

std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Saves through the streaming path and returns the file's bytes.
std::string savedBytes(const ir::Model& m, const std::string& name) {
  const std::string path = test::tempDir("stream-writer") + "/" + name;
  onnx_io::saveModel(m, path);
  return readAll(path);
}

ir::Tensor ramp(ir::DType dtype, ir::Shape shape) {
  ir::Tensor t(dtype, std::move(shape));
  auto* b = t.mutableData<uint8_t>();
  for (size_t i = 0; i < t.nbytes(); ++i) b[i] = static_cast<uint8_t>(i * 131 + 7);
  return t;
}

}  // namespace

TEST_CASE("wire splicing inserts a field where protobuf puts it", "[onnx][writer]") {
  // Fields 1 (varint 150), 3 (bytes "ab"), 12 (bytes "z"): field 9 goes before 12.
  const std::string msg = std::string("\x08\x96\x01\x1a\x02" "ab" "\x62\x01" "z", 10);
  const std::vector<onnx_io::wire::Field> f = onnx_io::wire::fields(msg);
  REQUIRE(f.size() == 3);
  CHECK(f[0].number == 1);
  CHECK(f[1].number == 3);
  CHECK(f[1].payload == 5);
  CHECK(f[2].begin == 7);
  onnx_io::wire::Pieces body;
  const std::string payload(200, 'x');  // a 2-byte length varint
  body.borrow(payload.data(), payload.size());
  const onnx_io::wire::Pieces out = onnx_io::wire::insertField(msg, 9, std::move(body));
  std::string got;
  out.writeTo([&](const char* d, size_t n) { got.append(d, n); });
  CHECK(got == msg.substr(0, 7) + std::string("\x4a\xc8\x01", 3) + payload + msg.substr(7));
  CHECK(out.size() == got.size());
  CHECK(onnx_io::wire::varintSize(127) == 1);
  CHECK(onnx_io::wire::varintSize(128) == 2);
}

TEST_CASE("the streaming writer writes protobuf's bytes for a graph with every kind of field", "[onnx][writer]") {
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 8, opset_import: ["" : 17], producer_name: "unit-test", doc_string: "model doc">
g (float[N, 4] x, bool c) => (float[N, 4] y)
<float[4, 4] w = {1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16}>
{
  h = MatMul(x, w)
  k = Constant<value_ints = [1, 3]>()
  y = If(c) <then_branch = t () => (float[N, 4] o) { o = Identity(h) },
             else_branch = e () => (float[N, 4] o) { o = Relu(h) }>
}
)");
  m.metadata_props.emplace_back("key", "value");
  m.graph->doc_string = "graph doc";
  // Streamed (>= 4 KiB) and small initializers interleaved, of several dtypes, one of them empty.
  m.graph->addInitializer("big_f32", ramp(ir::DType::kFloat32, {64, 64}));
  m.graph->addInitializer("small_i64", ramp(ir::DType::kInt64, {3}));
  m.graph->addInitializer("big_u8", ramp(ir::DType::kUInt8, {5000}));
  m.graph->addInitializer("empty", ramp(ir::DType::kFloat32, {0, 7}));
  m.graph->addInitializer("big_i4", ramp(ir::DType::kInt4, {300, 40}));
  m.graph->addInitializer("names", ir::Tensor::fromStrings({2}, {"a", "b"}));
  const std::string want = onnx_io::serializeModel(m);
  const std::string got = savedBytes(m, "mixed.onnx");
  REQUIRE(got.size() == want.size());
  CHECK(got == want);
  // And it reads back.
  const ir::Model back = onnx_io::loadModelFromBytes(got, "mixed.onnx");
  CHECK(back.graph->findValue("big_f32")->initializer.sameAs(m.graph->findValue("big_f32")->initializer));
}

TEST_CASE("the streaming writer writes protobuf's bytes for every zoo model", "[onnx][writer][zoo]") {
  PTQ_REQUIRE_ZOO();
  std::vector<std::string> models;
  if (DIR* d = opendir(test::zooDir().c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 5 && n.substr(n.size() - 5) == ".onnx") models.push_back(n);
    }
    closedir(d);
  }
  REQUIRE(!models.empty());
  for (const std::string& name : models) {
    INFO(name);
    const ir::Model m = onnx_io::loadModel(test::zooFile(name));
    const std::string want = onnx_io::serializeModel(m);
    const std::string got = savedBytes(m, name);
    CHECK(got.size() == want.size());
    CHECK(got == want);
  }
}
