// MatMulInteger and ConvInteger (8-bit codes in, int32 out): the integer layers of ONNX Runtime's
// dynamic quantization (lib/ir/dynamic_quant.h). Zero points are subtracted first, then one int32
// GEMM (Eigen) per batch / (image, group); integer sums are exact, so any tiling and thread count
// give the same result. Zero points: MatMulInteger takes a scalar or per-row [M] a_zero_point and a
// scalar or per-column [N] b_zero_point; ConvInteger takes scalars (as ONNX Runtime's CPU kernel).
#include <Eigen/Core>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {

using IntMat = Eigen::Matrix<int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

int32_t codeAt(const Tensor& t, int64_t i) {
  return t.dtype() == DType::kInt8 ? static_cast<int32_t>(t.data<int8_t>()[i]) : static_cast<int32_t>(t.data<uint8_t>()[i]);
}

// Zero points as int32: `count` values (a scalar is repeated); runError when the tensor has another size.
std::vector<int32_t> zeroPoints(const TensorList& in, size_t i, DType code_type, int64_t count, const char* what) {
  if (in.size() <= i || in[i].empty()) return std::vector<int32_t>(static_cast<size_t>(count), 0);
  const Tensor& z = in[i];
  if (z.dtype() != code_type) runError(std::string(what) + " is " + typeShape(z) + ", the codes are " + ir::dtypeName(code_type));
  if (z.numel() == 1) return std::vector<int32_t>(static_cast<size_t>(count), codeAt(z, 0));
  if (z.rank() != 1 || z.numel() != count)
    runError(std::string(what) + " " + typeShape(z) + " must be a scalar or hold " + std::to_string(count) + " values");
  std::vector<int32_t> v(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) v[k] = codeAt(z, k);
  return v;
}

void requireCodes(const NodeInfo& info, size_t i) { info.requireType(i, {DType::kInt8, DType::kUInt8}); }

}  // namespace

Tensor matMulInteger(ExecContext& ctx, const TensorList& in) {
  const Tensor& a = in[0];
  const Tensor& b = in[1];
  if (a.rank() < 2 || b.rank() < 2) runError("MatMulInteger needs inputs of rank >= 2, got " + typeShape(a) + ", " + typeShape(b));
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  const int64_t M = sa[sa.size() - 2], K = sa.back(), N = sb.back();
  if (sb[sb.size() - 2] != K) runError("A " + typeShape(a) + " and B " + typeShape(b) + " have different inner dimensions");
  const Shape ba(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
  const Shape batch = broadcastShapes(ba, bb);
  Shape so = batch;
  so.push_back(M);
  so.push_back(N);
  const std::vector<int32_t> za = zeroPoints(in, 2, a.dtype(), M, "a_zero_point");
  const std::vector<int32_t> zb = zeroPoints(in, 3, b.dtype(), N, "b_zero_point");
  Tensor y = ctx.alloc(DType::kInt32, so);
  const int64_t nb = ir::shapeNumel(batch);
  const std::vector<int64_t> sta = broadcastStrides(ba, batch), stb = broadcastStrides(bb, batch);
  // B minus its zero points, once per distinct B matrix.
  const int64_t nbb = std::max<int64_t>(1, ir::shapeNumel(bb));
  std::vector<IntMat> bmat(static_cast<size_t>(nbb), IntMat(K, N));
  for (int64_t m = 0; m < nbb; ++m)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) bmat[m](k, n) = codeAt(b, (m * K + k) * N + n) - zb[n];
  // Tasks: (batch, block of 64 rows) — fixed by the shapes.
  const int64_t row_blocks = (M + 63) / 64;
  parallelFor(ctx.threads(), nb * row_blocks, 1, [&](int64_t s, int64_t e) {
    IntMat am;
    for (int64_t t = s; t < e; ++t) {
      const int64_t i = t / row_blocks, r0 = (t % row_blocks) * 64, r1 = std::min(M, r0 + 64);
      int64_t oa = 0, ob = 0, rem = i;
      for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
        const int64_t idx = rem % batch[d];
        rem /= batch[d];
        oa += idx * sta[d];
        ob += idx * stb[d];
      }
      am.resize(r1 - r0, K);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t k = 0; k < K; ++k) am(r - r0, k) = codeAt(a, (oa * M + r) * K + k) - za[r];
      Eigen::Map<IntMat> out(outData<int32_t>(y) + (i * M + r0) * N, r1 - r0, N);
      out.noalias() = am * bmat[ob];
    }
  });
  return y;
}

Kernel makeMatMulInteger(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 4);
  requireCodes(info, 0);
  requireCodes(info, 1);
  out_types = {DType::kInt32};
  return [](ExecContext& ctx, TensorList& in, TensorList& out) { out[0] = matMulInteger(ctx, in); };
}

Kernel makeConvInteger(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 4);
  requireCodes(info, 0);
  requireCodes(info, 1);
  const Tensor* w = info.constInput(1);
  if (w && (w->rank() < 3 || w->rank() > 4)) info.unsupported(std::to_string(w->rank() - 2) + "-D convolution");
  const Window win0 = readWindow(info, w ? w->rank() - 2 : 0);
  const int64_t group = info.attrInt("group", 1);
  if (group < 1) info.unsupported("group < 1");
  out_types = {DType::kInt32};
  return [win0, group](ExecContext& ctx, TensorList& in, TensorList& out) {
    out[0] = convInteger(ctx, in, win0, group);
  };
}

Tensor convInteger(ExecContext& ctx, const TensorList& in, const Window& win0, int64_t group) {
  const Tensor& x = in[0];
  const Tensor& w = in[1];
  const int64_t sp = x.rank() - 2;
  if (sp < 1 || sp > 2 || w.rank() != x.rank()) runError("ConvInteger: only 1-D and 2-D, got " + typeShape(x) + ", " + typeShape(w));
  Window win = win0;
  if (win.kernel.empty()) win.kernel.assign(w.shape().begin() + 2, w.shape().end());
  completeWindow(win, sp);
  const int64_t N = x.shape()[0], C = x.shape()[1], M = w.shape()[0], Cg = w.shape()[1];
  if (C != Cg * group || M % group) runError("ConvInteger: input " + typeShape(x) + " and weights " + typeShape(w) + " do not match group " + std::to_string(group));
  const std::vector<int64_t> in_sp(x.shape().begin() + 2, x.shape().end());
  const std::vector<int64_t> out_sp = windowOutput(win, in_sp);
  const int64_t H = sp == 2 ? in_sp[0] : 1, W = in_sp.back(), OH = sp == 2 ? out_sp[0] : 1, OW = out_sp.back();
  const int64_t kh = sp == 2 ? win.kernel[0] : 1, kw = win.kernel.back();
  const int64_t sh = sp == 2 ? win.strides[0] : 1, sw = win.strides.back();
  const int64_t dh = sp == 2 ? win.dilations[0] : 1, dw = win.dilations.back();
  const int64_t pt = sp == 2 ? win.pads[0] : 0, pl = win.pads[static_cast<size_t>(sp - 1)];
  const int32_t zx = zeroPoints(in, 2, x.dtype(), 1, "x_zero_point")[0];
  const int32_t zw = zeroPoints(in, 3, w.dtype(), 1, "w_zero_point")[0];
  Shape so = {N, M};
  for (int64_t d : out_sp) so.push_back(d);
  Tensor y = ctx.alloc(DType::kInt32, so);
  const int64_t Mg = M / group, R = Cg * kh * kw, P = OH * OW;
  IntMat wm(M, R);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t r = 0; r < R; ++r) wm(m, r) = codeAt(w, m * R + r) - zw;
  // One task per (image, group): im2col of (x - zx), padding contributing 0, then one GEMM.
  parallelFor(ctx.threads(), N * group, 1, [&](int64_t s, int64_t e) {
    IntMat col(R, P);
    for (int64_t t = s; t < e; ++t) {
      const int64_t n = t / group, g = t % group;
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j) {
            const int64_t r = (c * kh + i) * kw + j;
            const int64_t base = (n * C + g * Cg + c) * H * W;
            for (int64_t oh = 0; oh < OH; ++oh) {
              const int64_t ih = oh * sh - pt + i * dh;
              for (int64_t ow = 0; ow < OW; ++ow) {
                const int64_t iw = ow * sw - pl + j * dw;
                const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
                col(r, oh * OW + ow) = inside ? codeAt(x, base + ih * W + iw) - zx : 0;
              }
            }
          }
      Eigen::Map<IntMat> out(outData<int32_t>(y) + (n * M + g * Mg) * P, Mg, P);
      out.noalias() = wm.middleRows(g * Mg, Mg) * col;
    }
  });
  return y;
}

}  // namespace ptq::runtime::ops
