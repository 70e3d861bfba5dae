// Forward-pass throughput of the reference executor on the zoo models (not a test).
//   bench_executor ZOO_DIR [--threads N] [--iters N] [--json] [--only MODEL_SUBSTRING]
// Prints one line per (model, batch): items/s and ms per batch. benchmarks/bench_executor_ort.js
// measures ONNX Runtime the same way; benchmarks/bench_executor.sh runs both and prints the ratio.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "formats/onnx/onnx_io.h"
#include "lib/runtime/gemm.h"
#include "lib/runtime/session.h"

namespace {
using ptq::ir::Tensor;

Tensor readRaw(const std::string& path, ptq::ir::DType dtype, ptq::ir::Shape shape) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t n = ptq::ir::dtypeStorageBytes(dtype, ptq::ir::shapeNumel(shape));
  if (b.size() < n) {
    std::fprintf(stderr, "%s: too short\n", path.c_str());
    std::exit(2);
  }
  return Tensor::fromBytes(dtype, shape, b.data(), n);
}

struct Case {
  std::string model, input, data;
  ptq::ir::DType dtype;
  ptq::ir::Shape shape;  // batch shape
  const char* unit;      // what one item is
};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_executor ZOO_DIR [--threads N] [--iters N] [--json] [--only MODEL_SUBSTRING]\n");
    return 1;
  }
  const std::string zoo = argv[1];
  int threads = 0, iters = 30;
  bool json = false;
  std::string only;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) iters = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
  }
  if (threads <= 0) threads = omp_get_max_threads();
  const std::vector<Case> cases = {
      {"digits_cnn.onnx", "x", "calib_x_256x1x20x20_f32.bin", ptq::ir::DType::kFloat32, {1, 1, 20, 20}, "images"},
      {"digits_cnn.onnx", "x", "calib_x_256x1x20x20_f32.bin", ptq::ir::DType::kFloat32, {64, 1, 20, 20}, "images"},
      {"llama-jargon.onnx", "input_ids", "llama-jargon.calib.i64", ptq::ir::DType::kInt64, {1, 128}, "tokens"},
      {"llama-jargon.onnx", "input_ids", "llama-jargon.calib.i64", ptq::ir::DType::kInt64, {8, 128}, "tokens"},
      {"gpt-fortunes.onnx", "input_ids", "gpt-fortunes.calib.i64", ptq::ir::DType::kInt64, {1, 128}, "tokens"},
      {"gpt-fortunes.onnx", "input_ids", "gpt-fortunes.calib.i64", ptq::ir::DType::kInt64, {8, 128}, "tokens"},
  };
  if (!json) std::printf("# executor: %d threads, GEMM backend %s\n", threads, ptq::runtime::gemmBackend());
  for (const Case& c : cases) {
    if (!only.empty() && c.model.find(only) == std::string::npos) continue;
    ptq::ir::Model model = ptq::onnx_io::loadModel(zoo + "/" + c.model);
    ptq::runtime::SessionOptions so;
    so.threads = threads;
    ptq::runtime::Session s(model, so);
    const Tensor x = readRaw(zoo + "/" + c.data, c.dtype, c.shape);
    for (int w = 0; w < 3; ++w) s.run({{c.input, x}});
    // Median of the runs: on a shared machine a mean moves with whatever else ran meanwhile.
    std::vector<double> times;
    for (int i = 0; i < iters; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      s.run({{c.input, x}});
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    const double sec = times[times.size() / 2];
    const double items = static_cast<double>(c.shape[0]) * (c.unit[0] == 't' ? c.shape[1] : 1);
    if (json)
      std::printf("{\"model\":\"%s\",\"batch\":\"%s\",\"ms\":%.4f,\"items_per_s\":%.1f}\n", c.model.c_str(),
                  ptq::ir::shapeToString(c.shape).c_str(), sec * 1e3, items / sec);
    else
      std::printf("%-20s batch %-16s %9.3f ms/batch %12.1f %s/s\n", c.model.c_str(), ptq::ir::shapeToString(c.shape).c_str(),
                  sec * 1e3, items / sec, c.unit);
  }
  return 0;
}
