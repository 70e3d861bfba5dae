#include "lib/driver/eval_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ptq::driver::eval {

double sqnrDb(double signal_energy, double noise_energy) {
  if (noise_energy <= 0) return kMaxSqnrDb;
  if (signal_energy <= 0) return -kMaxSqnrDb;
  return std::clamp(10.0 * std::log10(signal_energy / noise_energy), -kMaxSqnrDb, kMaxSqnrDb);
}

double cosine(double dot, double aa, double bb) {
  if (aa <= 0 && bb <= 0) return 1.0;
  if (aa <= 0 || bb <= 0) return 0.0;
  return std::clamp(dot / std::sqrt(aa * bb), -1.0, 1.0);
}

void ErrorStats::add(const float* ref, const float* cand, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const double r = ref[i], c = cand[i];
    if (!std::isfinite(r) || !std::isfinite(c)) {
      ++non_finite;
      continue;
    }
    const double d = r - c, a = std::fabs(d);
    max_abs = std::max(max_abs, a);
    sum_abs += a;
    sum_ref2 += r * r;
    sum_cand2 += c * c;
    sum_dot += r * c;
    sum_err2 += d * d;
    ++count;
  }
}

std::vector<int64_t> topK(const float* row, int64_t n, int64_t k) {
  k = std::clamp<int64_t>(k, 0, n);
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  // NaN sorts last; ties keep the lower index.
  auto better = [row](int64_t a, int64_t b) {
    const float x = row[a], y = row[b];
    const bool xn = std::isnan(x), yn = std::isnan(y);
    if (xn != yn) return yn;
    if (!xn && x != y) return x > y;
    return a < b;
  };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), better);
  idx.resize(static_cast<size_t>(k));
  return idx;
}

int64_t argmax(const float* row, int64_t n) {
  const std::vector<int64_t> t = topK(row, n, 1);
  return t.empty() ? -1 : t[0];
}

void ClassStats::add(const float* ref, const float* cand, int64_t n, int64_t classes, const int64_t* labels) {
  for (int64_t i = 0; i < n; ++i) {
    const float* r = ref + i * classes;
    const float* c = cand + i * classes;
    const int64_t ref_top = argmax(r, classes);
    const std::vector<int64_t> cand_top = topK(c, classes, 5);
    ++samples;
    if (!cand_top.empty() && cand_top[0] == ref_top) ++top1_agree;
    if (std::find(cand_top.begin(), cand_top.end(), ref_top) != cand_top.end()) ++top5_agree;
    if (labels) {
      ++labelled;
      if (ref_top == labels[i]) ++ref_correct;
      if (!cand_top.empty() && cand_top[0] == labels[i]) ++cand_correct;
    }
  }
}

double nextTokenNll(const float* logits, int64_t vocab, int64_t target) {
  double m = logits[0];
  for (int64_t v = 1; v < vocab; ++v) m = std::max<double>(m, logits[v]);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - m);
  return m + std::log(sum) - static_cast<double>(logits[target]);
}

double PerplexityStats::perplexity() const { return std::exp(meanNll()); }

int64_t wholeWindows(int64_t n_tokens, int64_t seq) {
  if (seq <= 0 || n_tokens < 1) return 0;
  return (n_tokens - 1) / seq;
}

}  // namespace ptq::driver::eval
