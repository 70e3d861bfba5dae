// Conv (1-D/2-D; grouped, depthwise, dilated, strided, auto_pad) and ConvTranspose (1-D/2-D).
// Conv = im2col over a chunk of output pixels + one GEMM per (image, group, chunk). Stride-1
// convolutions run on the zero-padded input instead (conv_padded.cc), except 1x1 unpadded ones,
// which need no im2col; strided depthwise ones use a direct loop over output rows. Tasks are fixed
// by the shapes, so any thread count gives the same bits.
#include <vector>

#include "lib/runtime/gemm.h"
#include "lib/runtime/ops/conv_geometry.h"
#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {

// Reads NC[H]W input and M C/g kH kW weights into a 2-D geometry (1-D convs get H = 1).
Geo geometry(const Tensor& x, const Tensor& w, Window win, int64_t group, bool transpose) {
  Geo g{};
  const int64_t sp = x.rank() - 2;
  if (sp < 1 || sp > 2) runError("only 1-D and 2-D convolutions are supported, input is " + typeShape(x));
  if (w.rank() != x.rank()) runError("weights " + typeShape(w) + " do not match input " + typeShape(x));
  g.N = x.shape()[0];
  g.C = x.shape()[1];
  g.H = sp == 2 ? x.shape()[2] : 1;
  g.W = x.shape()[x.rank() - 1];
  g.kh = sp == 2 ? w.shape()[2] : 1;
  g.kw = w.shape()[w.rank() - 1];
  g.group = group;
  if (win.kernel.empty()) win.kernel.assign(w.shape().begin() + 2, w.shape().end());
  completeWindow(win, sp);
  if (!transpose) {
    g.M = w.shape()[0];
    if (g.C != w.shape()[1] * group) runError("input has " + std::to_string(g.C) + " channels, weights expect " +
                                              std::to_string(w.shape()[1] * group));
    if (g.M % group) runError("output channels not divisible by group");
    std::vector<int64_t> in(x.shape().begin() + 2, x.shape().end());
    const std::vector<int64_t> out = windowOutput(win, in);
    g.OH = sp == 2 ? out[0] : 1;
    g.OW = out.back();
  }
  const size_t r = static_cast<size_t>(sp);
  g.sh = sp == 2 ? win.strides[0] : 1;
  g.sw = win.strides[r - 1];
  g.dh = sp == 2 ? win.dilations[0] : 1;
  g.dw = win.dilations[r - 1];
  g.pt = sp == 2 ? win.pads[0] : 0;
  g.pl = win.pads[r - 1];
  return g;
}

// Output columns [lo, hi) whose input column ow * sw + off lies inside [0, W).
void validColumns(int64_t off, int64_t sw, int64_t W, int64_t OW, int64_t* lo, int64_t* hi) {
  *lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
  *hi = std::min(OW, W - off <= 0 ? 0 : (W - off + sw - 1) / sw);
  *lo = std::min(*lo, *hi);
}

// col[r, p - p0] for rows r = (c, i, j) of one group and output pixels p in [p0, p1). Each output
// row is a zero prefix, a (strided) copy of one input row and a zero suffix.
void im2col(const Geo& g, const float* x, int64_t cin, int64_t p0, int64_t p1, float* col) {
  const int64_t np = p1 - p0;
  for (int64_t c = 0; c < cin; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        float* row = col + ((c * g.kh + i) * g.kw + j) * np;
        const float* xc = x + c * g.H * g.W;
        const int64_t off = j * g.dw - g.pl;
        int64_t lo, hi;
        validColumns(off, g.sw, g.W, g.OW, &lo, &hi);
        int64_t p = p0;
        while (p < p1) {
          const int64_t oh = p / g.OW, ow0 = p % g.OW;
          const int64_t ow1 = std::min(g.OW, ow0 + (p1 - p));
          const int64_t ih = oh * g.sh - g.pt + i * g.dh;
          float* o = row + (p - p0);  // o[k] is output column ow0 + k of this row
          const int64_t n = ow1 - ow0;
          if (ih < 0 || ih >= g.H) {
            std::fill(o, o + n, 0.0f);
          } else {
            const float* xr = xc + ih * g.W;
            const int64_t a = std::clamp(lo, ow0, ow1) - ow0, b = std::clamp(hi, ow0 + a, ow1) - ow0;
            std::fill(o, o + a, 0.0f);
            if (b > a && g.sw == 1) std::copy(xr + (ow0 + a + off), xr + (ow0 + b + off), o + a);
            else  // strided, or empty (then no pointer outside the row is formed)
              for (int64_t k = a; k < b; ++k) o[k] = xr[(ow0 + k) * g.sw + off];
            std::fill(o + b, o + n, 0.0f);
          }
          p += ow1 - ow0;
        }
      }
}

// Depthwise: out channel m reads input channel m / mult.
void depthwise(const Geo& g, const float* x, const float* w, float* y, int64_t n, int64_t m) {
  const int64_t mult = g.M / g.C;
  const float* xc = x + (n * g.C + m / mult) * g.H * g.W;
  const float* wm = w + m * g.kh * g.kw;
  float* ym = y + (n * g.M + m) * g.OH * g.OW;
  std::fill(ym, ym + g.OH * g.OW, 0.0f);
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    float* yr = ym + oh * g.OW;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ih = oh * g.sh - g.pt + i * g.dh;
      if (ih < 0 || ih >= g.H) continue;
      const float* xr = xc + ih * g.W;
      for (int64_t j = 0; j < g.kw; ++j) {
        const float wv = wm[i * g.kw + j];
        // valid ow: 0 <= ow*sw - pl + j*dw < W
        const int64_t off = j * g.dw - g.pl;
        int64_t lo, hi;
        validColumns(off, g.sw, g.W, g.OW, &lo, &hi);
        if (g.sw == 1)
          for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow + off];
        else
          for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow * g.sw + off];
      }
    }
  }
}

void addBias(const Tensor* bias, float* y, int64_t N, int64_t M, int64_t P, int threads) {
  if (!bias) return;
  const float* b = bias->data<float>();
  parallelFor(threads, N * M, grainFor(P), [&](int64_t s, int64_t e) {
    for (int64_t t = s; t < e; ++t) {
      float* p = y + t * P;
      const float v = b[t % M];
      for (int64_t i = 0; i < P; ++i) p[i] += v;
    }
  });
}

// A 1x1 stride-1 unpadded convolution: its input planes are already the GEMM's B.
bool unpaddedPointwise(const Geo& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.OH == g.H && g.OW == g.W;
}

void conv2d(ExecContext& ctx, const Geo& g, const float* x, const float* w, float* y) {
  const int64_t cin = g.C / g.group, cout = g.M / g.group;
  const int64_t K = cin * g.kh * g.kw, P = g.OH * g.OW;
  const bool pointwise = unpaddedPointwise(g);
  // Output-pixel chunk: keep the im2col block around 256 KiB.
  const int64_t pc = pixelChunk(P, K, 65536);  // an im2col block of about 256 KiB
  const int64_t chunks = (P + pc - 1) / pc;
  const int64_t tasks = g.N * g.group * chunks;
  parallelFor(ctx.threads(), tasks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> col;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (g.group * chunks), r = t % (g.group * chunks);
      const int64_t gi = r / chunks, ci = r % chunks;
      const int64_t p0 = ci * pc, p1 = std::min(P, p0 + pc);
      const float* xg = x + (n * g.C + gi * cin) * g.H * g.W;
      GemmArgs a;
      a.M = cout; a.N = p1 - p0; a.K = K;
      a.A = w + gi * cout * K; a.lda = K;
      a.C = y + (n * g.M + gi * cout) * P + p0; a.ldc = P;
      if (pointwise) {
        a.B = xg + p0; a.ldb = P;
      } else {
        col.resize(static_cast<size_t>(K * (p1 - p0)));
        im2col(g, xg, cin, p0, p1, col.data());
        a.B = col.data(); a.ldb = p1 - p0;
      }
      sgemm(a);
    }
  });
}

}  // namespace

Kernel makeConv(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 3);
  info.requireType(0, {DType::kFloat32});
  info.requireSameType(0, 2);
  const Tensor* w = info.constInput(1);
  if (w && (w->rank() < 3 || w->rank() > 4)) info.unsupported(std::to_string(w->rank() - 2) + "-D convolution");
  const ir::Value* xv = info.node.input(0);
  if (xv && xv->shape && (xv->shape->size() < 3 || xv->shape->size() > 4))
    info.unsupported(std::to_string(static_cast<int64_t>(xv->shape->size()) - 2) + "-D convolution");
  Window win = readWindow(info, w ? w->rank() - 2 : 0);
  const int64_t group = info.attrInt("group", 1);
  if (group < 1) info.unsupported("group < 1");
  out_types = {DType::kFloat32};
  return [win, group](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const Tensor& wt = in[1];
    expectType(x, DType::kFloat32, "X");
    const Geo g = geometry(x, wt, win, group, false);
    Shape so = {g.N, g.M};
    if (x.rank() == 4) so.push_back(g.OH);
    so.push_back(g.OW);
    Tensor y = ctx.alloc(DType::kFloat32, so);
    const Tensor* bias = in.size() > 2 && !in[2].empty() ? &in[2] : nullptr;
    if (bias && bias->numel() != g.M) runError("bias " + typeShape(*bias) + " does not match " + std::to_string(g.M) + " channels");
    float* py = outData<float>(y);
    const bool is_depthwise = g.group == g.C && wt.shape()[1] == 1 && g.M % g.C == 0 && g.group > 1;
    if (g.sh == 1 && g.sw == 1 && !unpaddedPointwise(g) && g.OH > 0 && g.OW > 0) {
      convStride1Padded(ctx, g, is_depthwise, x.data<float>(), wt.data<float>(), bias ? bias->data<float>() : nullptr, py);
      out[0] = std::move(y);
      return;
    }
    if (is_depthwise) {
      parallelFor(ctx.threads(), g.N * g.M, grainFor(g.OH * g.OW * g.kh * g.kw), [&](int64_t s, int64_t e) {
        for (int64_t t = s; t < e; ++t) depthwise(g, x.data<float>(), wt.data<float>(), py, t / g.M, t % g.M);
      });
    } else {
      conv2d(ctx, g, x.data<float>(), wt.data<float>(), py);
    }
    addBias(bias, py, g.N, g.M, g.OH * g.OW, ctx.threads());
    out[0] = std::move(y);
  };
}

Kernel makeConvTranspose(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 3);
  info.requireType(0, {DType::kFloat32});
  info.requireSameType(0, 2);
  const Tensor* w = info.constInput(1);
  if (w && (w->rank() < 3 || w->rank() > 4)) info.unsupported(std::to_string(w->rank() - 2) + "-D transposed convolution");
  const ir::Value* xv = info.node.input(0);
  if (xv && xv->shape && (xv->shape->size() < 3 || xv->shape->size() > 4))
    info.unsupported(std::to_string(static_cast<int64_t>(xv->shape->size()) - 2) + "-D transposed convolution");
  const Window win0 = readWindow(info, w ? w->rank() - 2 : 0);
  const int64_t group = info.attrInt("group", 1);
  const std::vector<int64_t> out_pad = info.attrInts("output_padding");
  const std::vector<int64_t> out_shape = info.attrInts("output_shape");
  out_types = {DType::kFloat32};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    const Tensor& wt = in[1];
    expectType(x, DType::kFloat32, "X");
    Geo g = geometry(x, wt, win0, group, true);
    const int64_t sp = x.rank() - 2;
    Window win = win0;
    completeWindow(win, sp);
    g.M = wt.shape()[1] * group;
    if (g.C != wt.shape()[0]) runError("input channels " + std::to_string(g.C) + " do not match weights " + typeShape(wt));
    // Output size and pads per spatial dim (ONNX ConvTranspose rules).
    std::vector<int64_t> ins = {g.H, g.W}, ks = {g.kh, g.kw}, ss = {g.sh, g.sw}, ds = {g.dh, g.dw};
    std::vector<int64_t> outs(2), pb(2);
    for (int64_t d = 0; d < 2; ++d) {
      const int64_t a = sp == 2 ? d : 1;  // index into attrs for this dim (1-D: only the W dim)
      if (sp == 1 && d == 0) { outs[0] = 1; pb[0] = 0; continue; }
      const int64_t ai = sp == 2 ? a : 0;
      const int64_t op = out_pad.empty() ? 0 : out_pad[ai];
      const int64_t full = ss[d] * (ins[d] - 1) + op + (ks[d] - 1) * ds[d] + 1;
      if (!out_shape.empty()) {
        const int64_t target = out_shape[out_shape.size() - sp + ai];
        const int64_t total = full - target;
        outs[d] = target;
        pb[d] = win.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
        if (win.auto_pad == "NOTSET" || win.auto_pad == "VALID") pb[d] = win.pads[ai];
      } else if (win.auto_pad == "SAME_UPPER" || win.auto_pad == "SAME_LOWER") {
        outs[d] = ins[d] * ss[d];
        const int64_t total = std::max<int64_t>(0, full - outs[d]);
        pb[d] = win.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      } else {
        const int64_t p0 = win.auto_pad == "VALID" ? 0 : win.pads[ai], p1 = win.auto_pad == "VALID" ? 0 : win.pads[ai + sp];
        outs[d] = full - p0 - p1;
        pb[d] = p0;
      }
    }
    g.OH = outs[0];
    g.OW = outs[1];
    Shape so = {g.N, g.M};
    if (sp == 2) so.push_back(g.OH);
    so.push_back(g.OW);
    Tensor y = ctx.alloc(DType::kFloat32, so);
    float* py = outData<float>(y);
    const int64_t cin = g.C / group, cout = g.M / group, HW = g.H * g.W, KK = cout * g.kh * g.kw;
    const float* px = x.data<float>();
    const float* pw = wt.data<float>();
    parallelFor(ctx.threads(), g.N * group, 1, [&](int64_t s, int64_t e) {
      std::vector<float> col(static_cast<size_t>(KK * HW));
      for (int64_t t = s; t < e; ++t) {
        const int64_t n = t / group, gi = t % group;
        GemmArgs a;  // col[KK, HW] = W_g^T [KK, cin] * X_g [cin, HW]
        a.trans_a = true;
        a.M = KK; a.N = HW; a.K = cin;
        a.A = pw + gi * cin * KK; a.lda = KK;
        a.B = px + (n * g.C + gi * cin) * HW; a.ldb = HW;
        a.C = col.data(); a.ldc = HW;
        sgemm(a);
        float* yg = py + (n * g.M + gi * cout) * g.OH * g.OW;
        std::fill(yg, yg + cout * g.OH * g.OW, 0.0f);
        for (int64_t c = 0; c < cout; ++c)
          for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t j = 0; j < g.kw; ++j) {
              const float* cr = col.data() + ((c * g.kh + i) * g.kw + j) * HW;
              float* yc = yg + c * g.OH * g.OW;
              for (int64_t ih = 0; ih < g.H; ++ih) {
                const int64_t oh = ih * g.sh - pb[0] + i * g.dh;
                if (oh < 0 || oh >= g.OH) continue;
                for (int64_t iw = 0; iw < g.W; ++iw) {
                  const int64_t ow = iw * g.sw - pb[1] + j * g.dw;
                  if (ow >= 0 && ow < g.OW) yc[oh * g.OW + ow] += cr[ih * g.W + iw];
                }
              }
            }
      }
    });
    const Tensor* bias = in.size() > 2 && !in[2].empty() ? &in[2] : nullptr;
    if (bias && bias->numel() != g.M) runError("bias does not match the output channels");
    addBias(bias, py, g.N, g.M, g.OH * g.OW, ctx.threads());
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
