// Stride-1 convolutions on the zero-padded input (conv_geometry.h). Tasks are fixed by the shapes,
// so any thread count gives the same bits.
#include <vector>

#include "lib/runtime/gemm.h"
#include "lib/runtime/ops/conv_geometry.h"
#include "lib/runtime/ops/op_util.h"

namespace ptq::runtime::ops {

namespace {

// Stride-1 convolutions on the padded grid. With every input plane zero-padded to Hp x Wp
// (Wp = W + pl + pr), tap (i, j) of output pixel (oh, ow) reads padded pixel q + i*dh*Wp + j*dw,
// q = oh*Wp + ow. So an im2col row over a run of padded-grid pixels is one contiguous copy, and the
// depthwise sum is one long vector loop per tap. The GEMM or sum also produces the Wp - OW padding
// columns of each row (2 of 22 for a 3x3 kernel on 20x20), which the copy-out drops while adding
// the bias. The summation order depends only on the shapes, so results do not depend on the
// thread count.
struct PaddedInput {
  int64_t Wp = 0, plane = 0;  // plane: Hp*Wp plus a zero tail that the last taps of a row read
  Tensor buffer;              // N x C planes from the run's buffer pool, every element written by padInput
  const float* at(const Geo& g, int64_t n, int64_t c) const { return buffer.data<float>() + (n * g.C + c) * plane; }
};

// The buffer is pooled: a fresh multi-megabyte allocation per call costs a page fault per 4 KB.
PaddedInput padInput(ExecContext& ctx, const Geo& g, const float* x) {
  PaddedInput p;
  p.Wp = g.OW + (g.kw - 1) * g.dw;
  const int64_t Hp = g.OH + (g.kh - 1) * g.dh;
  p.plane = Hp * p.Wp + (g.kw - 1) * g.dw;
  p.buffer = ctx.alloc(DType::kFloat32, {g.N * g.C * p.plane});
  float* base = outData<float>(p.buffer);
  parallelFor(ctx.threads(), g.N * g.C, grainFor(p.plane), [&](int64_t s, int64_t e) {
    for (int64_t t = s; t < e; ++t) {
      float* dst = base + t * p.plane;
      float* const end = dst + p.plane;
      dst = std::fill_n(dst, g.pt * p.Wp, 0.0f);
      for (int64_t h = 0; h < g.H; ++h) {
        const float* src = x + (t * g.H + h) * g.W;
        dst = std::fill_n(dst, g.pl, 0.0f);
        dst = std::copy(src, src + g.W, dst);
        dst = std::fill_n(dst, p.Wp - g.pl - g.W, 0.0f);
      }
      std::fill(dst, end, 0.0f);  // bottom padding rows and the tail
    }
  });
  return p;
}

// Scratch that keeps its size between calls on a thread, so the per-task buffers of the padded-grid
// convolutions are neither reallocated nor zero-filled for every task.
float* scratch(int which, int64_t n) {
  thread_local std::vector<float> buffers[2];
  std::vector<float>& b = buffers[which];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

// y[oh*OW + ow] = grid[q - q0] + bias for the padded-grid pixels q = oh*Wp + ow in [q0, q1), ow < OW.
void copyOutGrid(const Geo& g, int64_t Wp, const float* __restrict grid, int64_t q0, int64_t q1, float bias,
                 float* __restrict y) {
  for (int64_t oh = q0 / Wp; oh * Wp < q1; ++oh) {
    const int64_t r0 = std::max(q0, oh * Wp), r1 = std::min(q1, oh * Wp + g.OW);  // kept columns of row oh
    const float* src = grid + (r0 - q0);
    float* dst = y + oh * g.OW + (r0 - oh * Wp);
    for (int64_t k = 0; k < r1 - r0; ++k) dst[k] = src[k] + bias;
  }
}

// With at least kTapChannels input channels per group, no im2col at all: tap (i, j) of the kernel
// is a GEMM W_ij [cout, cin] x (padded input shifted by the tap) [cin, pixels], whose rows are the
// input planes (row stride = plane), accumulated over the taps into the output block. oneDNN runs
// these K = cin GEMMs about as fast as the K = cin*kh*kw one, and the copies go. Fewer channels
// (a first layer on 1-3 planes) give too short a K: those copy im2col rows from the padded planes.
constexpr int64_t kTapChannels = 16;

void conv2dPadded(ExecContext& ctx, const Geo& g, const PaddedInput& xp, const float* w, const float* bias, float* y) {
  const int64_t cin = g.C / g.group, cout = g.M / g.group, taps = g.kh * g.kw;
  const int64_t K = cin * taps, Q = g.OH * xp.Wp, P = g.OH * g.OW;
  const bool by_tap = cin >= kTapChannels;
  // An im2col block of about 256 KiB, or (by tap) an output block of about 64 KiB.
  const int64_t qc = by_tap ? pixelChunk(Q, cout, 16384) : pixelChunk(Q, K, 65536);
  const int64_t chunks = (Q + qc - 1) / qc;
  std::vector<float> wtap;  // by_tap: [group][tap][cout][cin]
  if (by_tap) {
    wtap.resize(static_cast<size_t>(g.M * K));
    for (int64_t oc = 0; oc < g.M; ++oc)
      for (int64_t c = 0; c < cin; ++c)
        for (int64_t tap = 0; tap < taps; ++tap)
          wtap[(((oc / cout) * taps + tap) * cout + oc % cout) * cin + c] = w[oc * K + c * taps + tap];
  }
  parallelFor(ctx.threads(), g.N * g.group * chunks, 1, [&](int64_t t0, int64_t t1) {
    float* col = by_tap ? nullptr : scratch(0, K * qc);
    float* grid = scratch(1, cout * qc);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (g.group * chunks), r = t % (g.group * chunks);
      const int64_t gi = r / chunks, q0 = (r % chunks) * qc, q1 = std::min(Q, q0 + qc), nq = q1 - q0;
      GemmArgs a;
      a.M = cout; a.N = nq;
      a.C = grid; a.ldc = nq;
      if (by_tap) {
        a.K = cin; a.lda = cin; a.ldb = xp.plane;
        for (int64_t tap = 0; tap < taps; ++tap) {
          a.A = wtap.data() + (gi * taps + tap) * cout * cin;
          a.B = xp.at(g, n, gi * cin) + q0 + (tap / g.kw) * g.dh * xp.Wp + (tap % g.kw) * g.dw;
          a.beta = tap == 0 ? 0.0f : 1.0f;
          sgemm(a);
        }
      } else {
        for (int64_t c = 0; c < cin; ++c) {
          const float* plane = xp.at(g, n, gi * cin + c) + q0;
          for (int64_t tap = 0; tap < taps; ++tap) {
            const float* src = plane + (tap / g.kw) * g.dh * xp.Wp + (tap % g.kw) * g.dw;
            std::copy(src, src + nq, col + (c * taps + tap) * nq);
          }
        }
        a.K = K;
        a.A = w + gi * cout * K; a.lda = K;
        a.B = col; a.ldb = nq;
        sgemm(a);
      }
      for (int64_t m = 0; m < cout; ++m) {
        const int64_t oc = gi * cout + m;
        copyOutGrid(g, xp.Wp, grid + m * nq, q0, q1, bias ? bias[oc] : 0.0f, y + (n * g.M + oc) * P);
      }
    }
  });
}

void depthwisePadded(ExecContext& ctx, const Geo& g, const PaddedInput& xp, const float* w, const float* bias,
                     float* y) {
  const int64_t mult = g.M / g.C, Q = g.OH * xp.Wp, P = g.OH * g.OW;
  parallelFor(ctx.threads(), g.N * g.M, grainFor(Q * g.kh * g.kw), [&](int64_t s, int64_t e) {
    float* __restrict acc = scratch(0, Q);
    for (int64_t t = s; t < e; ++t) {
      const int64_t n = t / g.M, m = t % g.M;
      const float* plane = xp.at(g, n, m / mult);
      const float* wm = w + m * g.kh * g.kw;
      std::fill(acc, acc + Q, 0.0f);
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
          const float wv = wm[i * g.kw + j];
          const float* __restrict src = plane + i * g.dh * xp.Wp + j * g.dw;
          for (int64_t q = 0; q < Q; ++q) acc[q] += wv * src[q];
        }
      copyOutGrid(g, xp.Wp, acc, 0, Q, bias ? bias[m] : 0.0f, y + (n * g.M + m) * P);
    }
  });
}

}  // namespace

void convStride1Padded(ExecContext& ctx, const Geo& g, bool depthwise, const float* x, const float* w,
                       const float* bias, float* y) {
  const PaddedInput xp = padInput(ctx, g, x);
  if (depthwise) depthwisePadded(ctx, g, xp, w, bias, y);
  else conv2dPadded(ctx, g, xp, w, bias, y);
}

}  // namespace ptq::runtime::ops
