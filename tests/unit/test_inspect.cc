// `inspect` counts what the file really holds: weights kept in external data (not merely memory-mapped
// inline tensors), and weights and layers inside subgraph bodies (Loop here; If in test_subgraph_layers).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "formats/onnx/onnx_io.h"
#include "lib/driver/inspect.h"
#include "support/run_command.h"
#include "support/test_paths.h"

using namespace ptq;
using nlohmann::json;

TEST_CASE("inspect counts external-data tensors from the file and not mapped inline ones", "[inspect]") {
  const std::string dir = test::tempDir("inspect_external");
  const std::string digits = std::string(PTQ_SOURCE_DIR) + "/tests/data/digits_cnn.onnx";
  json inline_info = json::parse(driver::inspectModel(digits, true));
  CHECK(inline_info["external_data_tensors"].get<int64_t>() == 0);
  auto r = test::runCommand("'" + test::toolPath() + "' convert '" + digits + "' -o '" + dir + "/ext.onnx' --external-data -q");
  REQUIRE(r.exit_code == 0);
  json ext_info = json::parse(driver::inspectModel(dir + "/ext.onnx", true));
  CHECK(ext_info["external_data_tensors"].get<int64_t>() > 0);
  CHECK(ext_info["parameters"] == inline_info["parameters"]);
}

TEST_CASE("inspect finds the weights and layers of a Loop body", "[inspect][subgraph]") {
  const std::string dir = test::tempDir("inspect_loop");
  onnx_io::saveModel(onnx_io::parseModelText(R"(<ir_version: 8, opset_import: ["" : 17]>
g (int64 n, float[1, 4] x0) => (float[1, 4] x)
{
  t = Constant<value = bool {1}>()
  x = Loop(n, t, x0) <body = b (int64 i, bool c, float[1, 4] xi) => (bool co, float[1, 4] xo)
      <float[4, 4] wl = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}> {
    co = Identity(c)
    xo = MatMul(xi, wl)
  }>
}
)"), dir + "/loop.onnx");
  json info = json::parse(driver::inspectModel(dir + "/loop.onnx", true));
  CHECK(info["parameters"].get<int64_t>() == 16 + 1);  // the body's weight and the Constant
  CHECK(info["initializers_in_subgraphs"].get<int64_t>() == 1);
  REQUIRE(info["quantizable_layers"].size() == 1);
  CHECK(info["quantizable_layers"][0]["weight"] == "wl");
  CHECK(info["quantizable_layers"][0]["scope"] == "Loop<x>/body");
}
