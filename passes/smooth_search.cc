#include "passes/smooth_search.h"

#include <algorithm>
#include <cmath>

#include "lib/quant/grid.h"
#include "lib/runtime/gemm.h"
#include "lib/runtime/simulate_quant.h"
#include "passes/weight_quantizer.h"

namespace ptq::passes::smooth {

namespace {

constexpr double kFloor = 1e-5;

// X · W for X [n, C] and W [C, out] row-major.
std::vector<float> matmul(const float* x, int64_t n, int64_t c, const float* w, int64_t out) {
  std::vector<float> y(static_cast<size_t>(n * out));
  runtime::GemmArgs g;
  g.M = n;
  g.N = out;
  g.K = c;
  g.A = x;
  g.lda = c;
  g.B = w;
  g.ldb = out;
  g.C = y.data();
  g.ldc = out;
  runtime::sgemm(g);
  return y;
}

// Fake-quantizes the rows [n, C] in place on the activation grid: one range for the whole tensor
// ([lo, hi]) or one per row.
void fakeQuantRows(std::vector<float>& x, int64_t n, int64_t c, float lo, float hi, const ActivationGrid& a) {
  quant::GridSpec g;
  g.bits = a.bits;
  g.symmetric = a.symmetric;
  g.is_signed = a.symmetric;
  auto quantize = [&](float* row, int64_t len, const quant::GroupParams& p) {
    for (int64_t i = 0; i < len; ++i) row[i] = quant::dequantizeValue(quant::quantizeValue(row[i], p, g), p);
  };
  auto apply = [&](float* row, int64_t len, float l, float h) {
    quantize(row, len, quant::paramsForRange(std::min(l, 0.0f), std::max(h, 0.0f), g));
  };
  if (!a.per_token) {
    if (!a.observer.empty() && a.observer != "minmax" && a.observer != "moving_minmax") {
      auto obs = quant::makeObserver(a.observer, a.observer_options);
      obs->observe(x.data(), n * c);
      quantize(x.data(), n * c, obs->compute(g).params);
      return;
    }
    apply(x.data(), n * c, lo, hi);
    return;
  }
  for (int64_t r = 0; r < n; ++r) {
    float* row = x.data() + r * c;
    const auto [mn, mx] = std::minmax_element(row, row + c);
    apply(row, c, *mn, *mx);
  }
}

// The weight as the plan will quantize it: DequantizeLinear of its codes, as [C, out].
std::vector<float> fakeQuantWeight(const std::vector<float>& w, int64_t c, int64_t out,
                                   const pipeline::WeightSettings& s) {
  const ir::Tensor t = ir::Tensor::fromFloats({c, out}, w);
  const auto q = quantizeWeight(t, /*reduce_axis=*/0, /*channel_axis=*/1, s);
  const ir::Tensor dq = runtime::dequantizeWeight(*q);
  const float* p = dq.data<float>();
  return std::vector<float>(p, p + c * out);
}

}  // namespace

std::vector<double> smoothingScales(const std::vector<float>& act_absmax, const std::vector<float>& weight_absmax,
                                    double alpha) {
  std::vector<double> s(act_absmax.size());
  for (size_t j = 0; j < s.size(); ++j) {
    const double a = std::max<double>(act_absmax[j], kFloor);
    const double w = std::max<double>(weight_absmax[j], kFloor);
    s[j] = std::max(std::pow(a, alpha) / std::pow(w, 1.0 - alpha), kFloor);
  }
  return s;
}

std::vector<std::vector<float>> referenceOutputs(const std::vector<float>& rows, int64_t n, int64_t channels,
                                                 const std::vector<LinearTerm>& linears) {
  std::vector<std::vector<float>> ref;
  for (const LinearTerm& l : linears) ref.push_back(matmul(rows.data(), n, channels, l.w.data(), l.out));
  return ref;
}

double quantizedOutputError(const std::vector<float>& rows, int64_t n, int64_t channels, const ChannelStats& stats,
                            const std::vector<LinearTerm>& linears, const std::vector<std::vector<float>>& reference,
                            const std::vector<double>& s, const ActivationGrid& grid) {
  const bool smoothed = !s.empty();
  std::vector<float> x = rows;
  float lo = 0.0f, hi = 0.0f;
  for (int64_t j = 0; j < channels; ++j) {
    const double inv = smoothed ? 1.0 / s[static_cast<size_t>(j)] : 1.0;
    lo = std::min(lo, static_cast<float>(stats.min[static_cast<size_t>(j)] * inv));
    hi = std::max(hi, static_cast<float>(stats.max[static_cast<size_t>(j)] * inv));
    if (smoothed)
      for (int64_t r = 0; r < n; ++r) {
        float& v = x[static_cast<size_t>(r * channels + j)];
        v = static_cast<float>(v * inv);
      }
  }
  fakeQuantRows(x, n, channels, lo, hi, grid);
  double err = 0.0;
  for (size_t k = 0; k < linears.size(); ++k) {
    const LinearTerm& l = linears[k];
    std::vector<float> w = l.w;
    if (smoothed)
      for (int64_t j = 0; j < channels; ++j)
        for (int64_t o = 0; o < l.out; ++o) {
          float& v = w[static_cast<size_t>(j * l.out + o)];
          v = static_cast<float>(v * s[static_cast<size_t>(j)]);
        }
    if (l.settings) w = fakeQuantWeight(w, channels, l.out, *l.settings);
    const std::vector<float> y = matmul(x.data(), n, channels, w.data(), l.out);
    for (size_t i = 0; i < y.size(); ++i) {
      const double d = static_cast<double>(y[i]) - reference[k][i];
      err += d * d;
    }
  }
  return err;
}

double maxOverMean(const std::vector<double>& v) {
  if (v.empty()) return 1.0;
  double mx = 0.0, sum = 0.0;
  for (double e : v) {
    mx = std::max(mx, e);
    sum += e;
  }
  return sum > 0.0 ? mx / (sum / static_cast<double>(v.size())) : 1.0;
}

}  // namespace ptq::passes::smooth
