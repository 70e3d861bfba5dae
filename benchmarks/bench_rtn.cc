// RTN throughput and quantize's peak memory. Prints figures; asserts nothing.
//   bench_rtn                    kernels on a 4096x4096 fp32 matrix (GB/s of fp32 weights read)
//   bench_rtn MODEL.onnx [PRESET] whole-model quantize (default preset w4a16): seconds, GB/s, peak RSS / model size
#include <omp.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "formats/onnx/onnx_io.h"
#include "lib/driver/quantize_job.h"
#include "lib/quant/rtn_kernels.h"
#include "lib/util/error.h"

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Peak resident set (VmHWM) in bytes.
long peakRss() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6)) * 1024;
  return 0;
}

template <typename Fn>
double bestOf(int reps, Fn&& fn) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const double t0 = now();
    fn();
    best = std::min(best, now() - t0);
  }
  return best;
}

void kernels() {
  const int64_t rows = 4096, cols = 4096;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.f, 0.02f);
  for (auto& x : w) x = nd(rng);
  const double gb = rows * cols * 4.0 / 1e9;
  struct Case {
    const char* name;
    int bits;
    bool sym;
    int64_t group;
    ptq::quant::ClipSearch clip;
  };
  const Case cases[] = {{"int4 group-128 asym", 4, false, 128, ptq::quant::ClipSearch::kNone},
                        {"int4 group-128 asym + mse clip", 4, false, 128, ptq::quant::ClipSearch::kMse},
                        {"int8 per-channel sym", 8, true, cols, ptq::quant::ClipSearch::kNone}};
  const int max_threads = omp_get_max_threads();
  std::printf("RTN on a %lldx%lld fp32 matrix (%.0f MB), best of 3\n", (long long)rows, (long long)cols, gb * 1e3);
  std::printf("%-32s %12s %12s %12s\n", "case", "ref 1 thr", "fast 1 thr", "fast all thr");
  for (const auto& c : cases) {
    ptq::quant::QuantOptions o;
    o.grid.bits = c.bits;
    o.grid.symmetric = c.sym;
    o.grid.is_signed = c.sym;
    o.clip = c.clip;
    omp_set_num_threads(1);
    const double t_ref = bestOf(c.clip == ptq::quant::ClipSearch::kMse ? 1 : 3,
                                [&] { ptq::quant::quantizeRowsRef(w.data(), rows, cols, c.group, o); });
    const double t_1 = bestOf(3, [&] { ptq::quant::quantizeRows(w.data(), rows, cols, c.group, o); });
    omp_set_num_threads(max_threads);
    const double t_n = bestOf(3, [&] { ptq::quant::quantizeRows(w.data(), rows, cols, c.group, o); });
    std::printf("%-32s %9.2f GB/s %7.2f GB/s %7.2f GB/s (%d thr)\n", c.name, gb / t_ref, gb / t_1, gb / t_n, max_threads);
    if (c.clip != ptq::quant::ClipSearch::kNone) continue;
    // The same kernel writing into buffers allocated once, as ggml's test-quantize-perf times
    // quantize_row_q: without the first-touch page faults of fresh code and scale vectors.
    ptq::quant::QuantizedRows out = ptq::quant::quantizeRows(w.data(), rows, cols, c.group, o);
    omp_set_num_threads(1);
    const double t_1b = bestOf(3, [&] { ptq::quant::quantizeRowsInto(w.data(), o, &out); });
    omp_set_num_threads(max_threads);
    const double t_nb = bestOf(3, [&] { ptq::quant::quantizeRowsInto(w.data(), o, &out); });
    std::printf("%-32s %12s %7.2f GB/s %7.2f GB/s (%d thr)\n", (std::string(c.name) + ", into buffers").c_str(), "",
                gb / t_1b, gb / t_nb, max_threads);
  }
}

void wholeModel(const std::string& model, const std::string& preset) {
  const long rss0 = peakRss();
  ptq::driver::QuantizeOptions q;
  q.model_path = model;
  q.config_path = preset;
  q.output_path = "/tmp/ptq-bench-rtn.onnx";
  const double t0 = now();
  auto report = ptq::driver::runQuantize(q);
  const double t = now() - t0;
  double weight_bytes = 0;
  for (const auto& l : report.layers) weight_bytes += static_cast<double>(l.bytes_before);
  const long rss = peakRss();
  // The model's size is its file plus its external-data files: what a reader has to hold (found after
  // the run: listing them parses the model, which must not count towards the peak).
  double model_bytes = 0;
  const size_t slash = model.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "" : model.substr(0, slash + 1);
  std::vector<std::string> files;
  for (const std::string& f : ptq::onnx_io::externalDataFiles(model)) files.push_back(dir + f);
  files.push_back(model);
  for (const std::string& f : files) {
    struct stat st {};
    if (::stat(f.c_str(), &st) == 0) model_bytes += static_cast<double>(st.st_size);
  }
  std::printf("%s with %s: %.3f s end to end (load+quantize+write), %.2f GB/s of fp32 weights; "
              "peak RSS %.1f MB (%.1f MB before) = %.2fx the model file (%.1f MB)\n",
              model.c_str(), preset.c_str(), t, weight_bytes / 1e9 / t, rss / 1e6, rss0 / 1e6, rss / model_bytes,
              model_bytes / 1e6);
  std::remove(q.output_path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 1) {
    kernels();
    return 0;
  }
  if (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0) {
    std::printf("usage: bench_rtn                      kernels on a 4096x4096 fp32 matrix\n"
                "       bench_rtn MODEL.onnx [PRESET]  whole-model quantize (default w4a16)\n");
    return 0;
  }
  try {
    wholeModel(argv[1], argc > 2 ? argv[2] : "w4a16");
  } catch (const ptq::Error& e) {
    std::fprintf(stderr, "bench_rtn: %s\n", e.what());
    return static_cast<int>(e.code());
  }
  return 0;
}
