// A model over protobuf's 2 GiB limit: written with external data automatically, read back through
// mmap, quantized, and the quantized model written. Hidden ([.large]): it needs ~7 GB of disk and
// ~1 minute; run it with `ptq-tests "[large]"`.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "formats/onnx/onnx_io.h"
#include "lib/driver/quantize_job.h"
#include "support/test_paths.h"

using namespace ptq;

TEST_CASE("a 2.3 GB model round-trips through external data and quantizes", "[.large]") {
  const std::string dir = test::tempDir("large_model");
  const int64_t K = 24576, N = 24576;  // 2.25 GiB of float32
  ir::Model m;
  m.opsets = {{"", 17}};
  ir::Graph& g = *m.graph;
  g.name = "large";
  ir::Value* x = g.addInput("x", ir::DType::kFloat32, std::vector<ir::Dim>{{1, ""}, {K, ""}});
  ir::Tensor wt(ir::DType::kFloat32, {K, N});
  float* w = wt.mutableData<float>();
  for (int64_t i = 0; i < K * N; ++i) w[i] = static_cast<float>((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
  ir::Value* wv = g.addInitializer("w", wt);
  ir::Node* mm = g.addNode("MatMul", {x, wv}, {"y"}, "mm");
  mm->output(0)->dtype = ir::DType::kFloat32;
  g.addOutput(mm->output(0));
  onnx_io::saveModel(m, dir + "/big.onnx");  // auto: external data above 1.5 GiB
  struct stat st {};
  REQUIRE(::stat((dir + "/big.onnx.data").c_str(), &st) == 0);
  CHECK(st.st_size >= K * N * 4);
  ir::Model back = onnx_io::loadModel(dir + "/big.onnx");
  CHECK(back.graph->findValue("w")->initializer.isView());
  CHECK(back.graph->findValue("w")->initializer.sameAs(wt));

  driver::QuantizeOptions q;
  q.model_path = dir + "/big.onnx";
  q.config_path = "w8a16";
  q.output_path = dir + "/big.q.onnx";
  auto report = driver::runQuantize(q);
  CHECK(report.layers.size() == 1);
  CHECK(report.layers[0].bits == 8);
  ir::Model qm = onnx_io::loadModel(dir + "/big.q.onnx");
  CHECK(qm.graph->findValue("w_quantized")->initializer.nbytes() == static_cast<size_t>(K * N));
}
