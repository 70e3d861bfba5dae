// Per-layer input-activation statistics of two models of one network (e.g. fp32 and its rotated or
// reparameterized copy), side by side: kurtosis of the values (3 for a Gaussian, large with outlier
// channels) and the outlier ratio max_c absmax_c / mean_c absmax_c over the channels of the last axis.
// Layers are the linear layers (MatMul / Gemm with a constant weight), matched by node name. Prints a
// table; asserts nothing.
//   bench_activation_stats A.onnx B.onnx (--tokens FILE.i64 [--seq N] [--windows W] | --data NAME=FILE --shape SxCxHxW [--samples N])
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/calibration.h"
#include "lib/ir/patterns.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"

using namespace ptq;

namespace {

struct Stats {
  int64_t channels = 0;
  double n = 0, sum = 0, sum2 = 0;
  std::vector<double> absmax;
  void add(const ir::Tensor& t) {
    if (t.dtype() != ir::DType::kFloat32 || t.rank() < 1) return;
    const int64_t c = t.shape().back();
    if (channels == 0) {
      channels = c;
      absmax.assign(static_cast<size_t>(c), 0.0);
    }
    if (c != channels) return;
    const float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double v = p[i];
      n += 1;
      sum += v;
      sum2 += v * v;
      double& a = absmax[static_cast<size_t>(i % c)];
      a = std::max(a, std::fabs(v));
    }
  }
};

// Kurtosis needs the mean first: a second pass accumulates the central moments.
struct Moments {
  double mean = 0, m2 = 0, m4 = 0, n = 0;
  void add(const ir::Tensor& t) {
    if (t.dtype() != ir::DType::kFloat32) return;
    const float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double d = p[i] - mean;
      m2 += d * d;
      m4 += d * d * d * d;
      n += 1;
    }
  }
  double kurtosis() const { return n > 0 && m2 > 0 ? (m4 / n) / ((m2 / n) * (m2 / n)) : 0.0; }
};

struct LayerStats {
  double kurtosis = 0, ratio = 0;
  int64_t channels = 0;
};

std::map<std::string, LayerStats> measure(const std::string& path, const calib::CalibrationSpec& spec,
                                          std::vector<std::string>* order) {
  ir::Model m = onnx_io::loadModel(path);
  calib::CalibrationSet set = calib::CalibrationSet::load(spec, *m.graph);
  std::vector<std::pair<std::string, std::string>> layers;  // node name, input value
  for (ir::Node* n : m.graph->nodes())
    if (std::optional<ir::LinearMatch> l = ir::matchLinear(n)) layers.push_back({n->name, l->input->name()});
  std::map<std::string, Stats> stats;
  std::map<std::string, Moments> moments;
  for (int pass = 0; pass < 2; ++pass) {
    runtime::Session s(m);
    for (const auto& [node, value] : layers) {
      if (pass == 0) {
        Stats* st = &stats[node];
        s.tap(value, [st](const std::string&, const ir::Tensor& t) { st->add(t); });
      } else {
        Moments* mo = &moments[node];
        mo->mean = stats[node].n > 0 ? stats[node].sum / stats[node].n : 0.0;
        s.tap(value, [mo](const std::string&, const ir::Tensor& t) { mo->add(t); });
      }
    }
    for (int64_t b = 0; b < set.numBatches(); ++b) s.run(set.batch(b));
  }
  std::map<std::string, LayerStats> out;
  for (const auto& [node, value] : layers) {
    const Stats& st = stats[node];
    double mx = 0, mean = 0;
    for (double a : st.absmax) {
      mx = std::max(mx, a);
      mean += a / static_cast<double>(st.absmax.size());
    }
    out[node] = {moments[node].kurtosis(), mean > 0 ? mx / mean : 0.0, st.channels};
    if (order) order->push_back(node);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 4) {
      std::fprintf(stderr,
                   "usage: bench_activation_stats A.onnx B.onnx (--tokens FILE.i64 [--seq N] [--windows W] | --data "
                   "NAME=FILE --shape SxCxHxW [--samples N])\n");
      return 1;
    }
    calib::CalibrationSpec spec;
    int64_t seq = 128, windows = 16;
    std::string shape;
    for (int i = 3; i + 1 < argc; i += 2) {
      const std::string k = argv[i], v = argv[i + 1];
      if (k == "--tokens") spec.tokens = v;
      else if (k == "--seq") seq = std::stoll(v);
      else if (k == "--windows") windows = std::stoll(v);
      else if (k == "--data") spec.named_files.push_back({v.substr(0, v.find('=')), v.substr(v.find('=') + 1)});
      else if (k == "--shape") shape = v;
      else if (k == "--samples") spec.samples = std::stoll(v);
      else throw std::runtime_error("unknown option " + k);
    }
    if (!spec.tokens.empty()) {
      FILE* f = std::fopen(spec.tokens.c_str(), "rb");
      if (!f) throw std::runtime_error("cannot open " + spec.tokens);
      std::fseek(f, 0, SEEK_END);
      const int64_t tokens = std::ftell(f) / 8;
      std::fclose(f);
      spec.tokens_shape = {tokens / seq, seq};
      spec.samples = windows;
    } else {
      spec.tokens_shape = calib::parseShape(shape, "--shape");
    }
    std::vector<std::string> order;
    const auto a = measure(argv[1], spec, &order);
    const auto b = measure(argv[2], spec, nullptr);
    std::printf("A = %s\nB = %s\n\n", argv[1], argv[2]);
    std::printf("| layer | channels | kurtosis A | kurtosis B | max/mean A | max/mean B |\n|---|---|---|---|---|---|\n");
    double ka = 0, kb = 0, ra = 0, rb = 0;
    int count = 0;
    for (const std::string& node : order) {
      const LayerStats& x = a.at(node);
      auto it = b.find(node);
      if (it == b.end()) {
        std::printf("| %s | %lld | %.2f | (absent) | %.2f | |\n", node.c_str(), static_cast<long long>(x.channels), x.kurtosis, x.ratio);
        continue;
      }
      const LayerStats& y = it->second;
      std::printf("| %s | %lld | %.2f | %.2f | %.2f | %.2f |\n", node.c_str(), static_cast<long long>(x.channels), x.kurtosis,
                  y.kurtosis, x.ratio, y.ratio);
      ka += x.kurtosis;
      kb += y.kurtosis;
      ra += x.ratio;
      rb += y.ratio;
      ++count;
    }
    if (count)
      std::printf("| mean of %d layers | | %.2f | %.2f | %.2f | %.2f |\n", count, ka / count, kb / count, ra / count, rb / count);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_activation_stats: %s\n", e.what());
    return 2;
  }
}
