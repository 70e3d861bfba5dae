#include "passes/gptq_solver.h"

// Eigen's own threading stays off: rows are split by OpenMP here and the GEMMs tile by shape, which
// keeps the results independent of the thread count.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "lib/quant/rtn_kernels.h"
#include "lib/runtime/cholesky.h"
#include "lib/runtime/gemm.h"
#include "lib/util/error.h"

namespace ptq::passes {

namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

int threadCount(int t) { return t > 0 ? t : omp_get_max_threads(); }

bool allFinite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

// U (row-major float [n, n], upper) with U^T U = (H + lambda I)^-1, trying more damping while a
// factorization fails. Returns the damping fraction used.
// Without forming H^-1: with J the exchange matrix (J A J reverses A's rows and columns), the lower
// Cholesky factor L' of J H J gives H = M M^T for the upper M = J L' J, so H^-1 = M^-T M^-1 and
// U = M^-1 = J L'^-1 J, which is upper with a positive diagonal, hence H^-1's unique upper Cholesky
// factor. One factorization and one triangular inverse (2n^3/3 flops, through LAPACK) instead of
// factorization, inverse and a second factorization (8n^3/3); only one n x n double besides H.
double invertedCholesky(const MatD& hd, double damp, std::vector<float>* u, int* retries) {
  const int64_t n = hd.rows();
  const double mean_diag = hd.diagonal().mean();
  MatD work(n, n);
  for (*retries = 0; *retries <= 8; ++*retries, damp *= 10.0) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j <= i; ++j) work(i, j) = hd(n - 1 - i, n - 1 - j);
    for (int64_t i = 0; i < n; ++i) work(i, i) += damp * mean_diag;
    if (!runtime::choleskyLower(work.data(), n)) continue;
    runtime::invertLower(work.data(), n);
    bool ok = true;
    u->assign(static_cast<size_t>(n * n), 0.0f);
    for (int64_t i = 0; i < n && ok; ++i) {
      const double d = work(n - 1 - i, n - 1 - i);
      ok = std::isfinite(d) && d > 0.0;
      for (int64_t j = i; j < n; ++j) (*u)[static_cast<size_t>(i * n + j)] = static_cast<float>(work(n - 1 - i, n - 1 - j));
    }
    if (!ok || !std::all_of(u->begin(), u->end(), [](float v) { return std::isfinite(v); })) continue;
    return damp;
  }
  throwInternal("gptq: the Hessian is not positive definite even with damping " + std::to_string(damp / 10.0) +
                " x mean(diag)");
}

}  // namespace

GptqResult gptqQuantize(const float* w_in, int64_t rows, int64_t cols, const float* h, const GptqSettings& s) {
  quant::validateOptions(s.quant);
  if (rows < 1 || cols < 1) throwUsage("gptq: empty weight");
  if (!allFinite(w_in, rows * cols)) throwInput("gptq: the weight holds a NaN or Inf");
  if (!allFinite(h, cols * cols)) throwInput("gptq: the Hessian holds a NaN or Inf (non-finite calibration activations?)");
  const std::vector<int64_t> starts = s.per_tensor ? std::vector<int64_t>{0} : s.group_starts;
  if (starts.empty() || starts[0] != 0 || !std::is_sorted(starts.begin(), starts.end()) || starts.back() >= cols)
    throwInternal("gptq: group starts must begin at 0, rise and stay below the column count");
  const int64_t ngroups = static_cast<int64_t>(starts.size());
  std::vector<int64_t> group_of(static_cast<size_t>(cols));
  for (int64_t g = 0; g < ngroups; ++g) {
    const int64_t end = g + 1 < ngroups ? starts[g + 1] : cols;
    for (int64_t j = starts[g]; j < end; ++j) group_of[j] = g;
  }
  const int nt = threadCount(s.threads);

  GptqResult r;
  r.groups = s.per_tensor ? 1 : ngroups;
  std::vector<float> w(w_in, w_in + rows * cols);
  MatD hd(cols, cols);
  // (H + H^T) / 2 in 64 x 64 tiles: the transposed reads stay in cache (a column-wise sweep of a
  // 3072-wide H would miss on every element).
  constexpr int64_t kTile = 64;
  for (int64_t i0 = 0; i0 < cols; i0 += kTile)
    for (int64_t j0 = 0; j0 < cols; j0 += kTile)
      for (int64_t i = i0; i < std::min(cols, i0 + kTile); ++i)
        for (int64_t j = j0; j < std::min(cols, j0 + kTile); ++j)
          hd(i, j) = 0.5 * (static_cast<double>(h[i * cols + j]) + h[j * cols + i]);
  for (int64_t j = 0; j < cols; ++j)
    if (hd(j, j) <= 0.0) {  // an input that is always zero: its weights do nothing
      hd.row(j).setZero();
      hd.col(j).setZero();
      hd(j, j) = 1.0;
      for (int64_t i = 0; i < rows; ++i) w[i * cols + j] = 0.0f;
      ++r.dead_columns;
    }

  // Parameters fitted before any update: per tensor, per channel, static groups.
  const bool dynamic_groups = !s.per_tensor && ngroups > 1 && !s.act_order && !s.static_groups;
  std::vector<quant::GroupParams> params(static_cast<size_t>(s.per_tensor ? 1 : rows * ngroups));
  if (s.per_tensor) {
    params[0] = s.tensor_params ? *s.tensor_params : quant::fitGroup(w.data(), rows * cols, s.quant);
  } else if (!dynamic_groups) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t g = 0; g < ngroups; ++g) {
        const int64_t b = starts[g], e = g + 1 < ngroups ? starts[g + 1] : cols;
        params[i * ngroups + g] = quant::fitGroup(w.data() + i * cols + b, e - b, s.quant);
      }
  }

  // Processing order.
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (s.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return hd(a, a) > hd(b, b); });
  const bool permuted = s.act_order;
  std::vector<float> wp;  // W with columns in processing order
  if (permuted) {
    wp.resize(w.size());
    MatD hp(cols, cols);
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j) hp(i, j) = hd(perm[i], perm[j]);
    hd.swap(hp);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) wp[i * cols + j] = w[i * cols + perm[j]];
  } else {
    wp.swap(w);
  }

  std::vector<float> u;
  if (s.propagate) {
    r.damp = invertedCholesky(hd, s.damp, &u, &r.damp_retries);
  } else {
    u.assign(static_cast<size_t>(cols * cols), 0.0f);
    for (int64_t j = 0; j < cols; ++j) u[j * cols + j] = 1.0f;
  }
  std::vector<float>().swap(w);

  // Blocks: at most block_size columns, cut at every dynamic group start.
  std::vector<int64_t> cuts;
  for (int64_t i1 = 0, g = 1; i1 < cols;) {
    int64_t i2 = std::min(cols, i1 + std::max<int64_t>(1, s.block_size));
    if (dynamic_groups) {
      while (g < ngroups && starts[g] <= i1) ++g;
      if (g < ngroups) i2 = std::min(i2, starts[g]);
    }
    cuts.push_back(i1);
    i1 = i2;
  }
  cuts.push_back(cols);

  std::vector<uint8_t> qp(static_cast<size_t>(rows * cols));
  std::vector<double> row_objective(static_cast<size_t>(rows), 0.0);
  std::vector<float> err;
  for (size_t b = 0; b + 1 < cuts.size(); ++b) {
    const int64_t i1 = cuts[b], i2 = cuts[b + 1], bs = i2 - i1;
    err.assign(static_cast<size_t>(rows * bs), 0.0f);
    int64_t bad_row = rows;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(min : bad_row)
    for (int64_t i = 0; i < rows; ++i) {
      float* wr = wp.data() + i * cols;
      for (int64_t c = i1; c < i2; ++c) {
        const int64_t g = s.per_tensor ? 0 : group_of[perm[c]];
        quant::GroupParams& p = params[s.per_tensor ? 0 : i * ngroups + g];
        if (dynamic_groups && c == starts[g]) {
          const int64_t e = g + 1 < ngroups ? starts[g + 1] : cols;
          if (!allFinite(wr + c, e - c)) {
            bad_row = std::min(bad_row, i);
            break;
          }
          p = quant::fitGroup(wr + c, e - c, s.quant);
        }
        const float x = wr[c];
        const int32_t code = quant::quantizeValue(x, p, s.quant.grid);
        qp[i * cols + c] = quant::toByte(code);
        const float d = u[c * cols + c];
        const float diff = x - quant::dequantizeValue(code, p);
        row_objective[i] += static_cast<double>(diff) * diff / (static_cast<double>(d) * d) / 2.0;
        const float e = diff / d;
        err[i * bs + (c - i1)] = e;
        const float* uc = u.data() + c * cols;
        for (int64_t k = c + 1; k < i2; ++k) wr[k] -= e * uc[k];
      }
    }
    if (bad_row < rows) throwInput("gptq: the updated weights of row " + std::to_string(bad_row) + " are not finite");
    if (i2 < cols && s.propagate) {
      runtime::GemmArgs ga;
      ga.M = rows;
      ga.N = cols - i2;
      ga.K = bs;
      ga.alpha = -1.0f;
      ga.A = err.data();
      ga.lda = bs;
      ga.B = u.data() + i1 * cols + i2;
      ga.ldb = cols;
      ga.beta = 1.0f;
      ga.C = wp.data() + i2;
      ga.ldc = cols;
      runtime::sgemmParallel(ga, nt);
    }
  }
  for (double o : row_objective) r.objective += o;

  r.codes.resize(qp.size());
  if (permuted) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = 0; c < cols; ++c) r.codes[i * cols + perm[c]] = qp[i * cols + c];
  } else {
    r.codes.swap(qp);
  }
  r.params = std::move(params);
  if (!s.propagate) r.damp = 0;
  return r;
}

std::vector<float> gptqDequantize(const GptqResult& r, int64_t rows, int64_t cols, const GptqSettings& s) {
  std::vector<int64_t> group_of(static_cast<size_t>(cols), 0);
  if (!s.per_tensor)
    for (size_t g = 1; g < s.group_starts.size(); ++g)
      for (int64_t j = s.group_starts[g]; j < cols; ++j) group_of[j] = static_cast<int64_t>(g);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const quant::GroupParams& p = r.params[s.per_tensor ? 0 : i * r.groups + group_of[j]];
      out[i * cols + j] = quant::dequantizeValue(quant::fromByte(r.codes[i * cols + j], s.quant.grid), p);
    }
  return out;
}

double outputError(const float* w, const float* w_hat, int64_t rows, int64_t cols, const float* h, int threads) {
  std::vector<float> d(static_cast<size_t>(rows * cols)), dh(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) d[i] = w[i] - w_hat[i];
  runtime::GemmArgs ga;
  ga.M = rows;
  ga.N = cols;
  ga.K = cols;
  ga.A = d.data();
  ga.lda = cols;
  ga.B = h;
  ga.ldb = cols;
  ga.C = dh.data();
  ga.ldc = cols;
  runtime::sgemmParallel(ga, threadCount(threads));
  double sum = 0;
  for (int64_t i = 0; i < rows * cols; ++i) sum += static_cast<double>(d[i]) * dh[i];
  return 0.5 * sum;
}

}  // namespace ptq::passes
