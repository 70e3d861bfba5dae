// MaxPool / AveragePool / LpPool (1-D and 2-D; pads, strides, dilations, ceil_mode, auto_pad,
// count_include_pad) and GlobalMax/Average/LpPool (any rank). One task per (image, channel).
#include <cmath>
#include <limits>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {
// MaxPool of output row `yr` over its interior columns [a, b), whose windows lie wholly inside the
// input (rows h0 .. h0 + (kh-1)*dh are): one branch-free (maxss) pass per tap along the row, which
// the compiler vectorizes. The general loop's NaN rule (the first NaN, once taken, stays) costs a
// mispredicted branch per element; a row that holds a NaN, which is rare, returns false and is
// redone by the general loop. Equal values keep the earlier tap, as there.
// kSw: the stride as a constant where it is 1 or 2 (0: sw at run time), so the loads vectorize.
template <int kSw>
bool maxRowTaps(const float* xc, int64_t W, int64_t h0, int64_t a, int64_t b, int64_t sw_runtime, int64_t pl,
                int64_t kh, int64_t kw, int64_t dh, int64_t dw, float* __restrict yr) {
  const int64_t sw = kSw ? kSw : sw_runtime;
  std::fill(yr + a, yr + b, -std::numeric_limits<float>::infinity());
  int nan = 0;
  for (int64_t i = 0; i < kh; ++i)
    for (int64_t j = 0; j < kw; ++j) {
      const float* __restrict xr = xc + (h0 + i * dh) * W;
      const int64_t off = j * dw - pl;  // input column of output column ow: ow * sw + off >= 0
      for (int64_t ow = a; ow < b; ++ow) {
        const float v = xr[ow * sw + off];
        nan |= v != v;
        yr[ow] = v > yr[ow] ? v : yr[ow];
      }
    }
  return nan == 0;
}

// The common 2x2 stride-2 window in one pass: the four taps in the general loop's order.
bool maxRow2x2(const float* xc, int64_t W, int64_t h0, int64_t a, int64_t b, int64_t pl, float* __restrict yr) {
  const float* __restrict r0 = xc + h0 * W;
  const float* __restrict r1 = r0 + W;
  int nan = 0;
  for (int64_t ow = a; ow < b; ++ow) {
    const int64_t c = 2 * ow - pl;
    const float v0 = r0[c], v1 = r0[c + 1], v2 = r1[c], v3 = r1[c + 1];
    nan |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3);
    float acc = v0;
    acc = v1 > acc ? v1 : acc;
    acc = v2 > acc ? v2 : acc;
    yr[ow] = v3 > acc ? v3 : acc;
  }
  return nan == 0;
}

bool maxRowInterior(const float* xc, int64_t W, int64_t h0, int64_t a, int64_t b, int64_t sw, int64_t pl, int64_t kh,
                    int64_t kw, int64_t dh, int64_t dw, float* yr) {
  if (kh == 2 && kw == 2 && sw == 2 && dw == 1 && dh == 1) return maxRow2x2(xc, W, h0, a, b, pl, yr);
  if (sw == 1) return maxRowTaps<1>(xc, W, h0, a, b, sw, pl, kh, kw, dh, dw, yr);
  if (sw == 2) return maxRowTaps<2>(xc, W, h0, a, b, sw, pl, kh, kw, dh, dw, yr);
  return maxRowTaps<0>(xc, W, h0, a, b, sw, pl, kh, kw, dh, dw, yr);
}
}  // namespace

Kernel makePool(const NodeInfo& info, std::vector<DType>& out_types) {
  const std::string op = info.node.opType();
  const int kind = op == "MaxPool" ? 0 : (op == "AveragePool" ? 1 : 2);
  info.requireInputs(1, 1);
  info.requireType(0, {DType::kFloat32});
  if (info.node.numOutputs() > 1 && info.node.output(1)) info.unsupported("the Indices output");
  Window win = readWindow(info, 0);
  if (win.kernel.empty()) info.unsupported("missing kernel_shape");
  if (win.kernel.size() > 2) info.unsupported(std::to_string(win.kernel.size()) + "-D pooling");
  const bool include_pad = info.attrInt("count_include_pad", 0) != 0;
  const float p = static_cast<float>(info.attrInt("p", 2));
  if (op != "MaxPool" && info.node.hasAttr("dilations")) {
    for (int64_t d : win.dilations)
      if (d != 1) info.unsupported("dilations in " + op);
  }
  out_types = {DType::kFloat32};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    expectType(x, DType::kFloat32, "X");
    const int64_t sp = static_cast<int64_t>(win.kernel.size());
    if (x.rank() != sp + 2) runError("input " + typeShape(x) + " does not match a " + std::to_string(sp) + "-D kernel");
    Window w = win;
    const std::vector<int64_t> ins(x.shape().begin() + 2, x.shape().end());
    const std::vector<int64_t> outs = windowOutput(w, ins);
    const int64_t N = x.shape()[0], C = x.shape()[1];
    const int64_t H = sp == 2 ? ins[0] : 1, W = ins.back(), OH = sp == 2 ? outs[0] : 1, OW = outs.back();
    const int64_t kh = sp == 2 ? w.kernel[0] : 1, kw = w.kernel.back();
    const int64_t sh = sp == 2 ? w.strides[0] : 1, sw = w.strides.back();
    const int64_t dh = sp == 2 ? w.dilations[0] : 1, dw = w.dilations.back();
    const int64_t pt = sp == 2 ? w.pads[0] : 0, pl = w.pads[sp - 1];
    const int64_t pbot = sp == 2 ? w.pads[2] : 0, pr = w.pads[2 * sp - 1];
    Shape so = {N, C};
    so.insert(so.end(), outs.begin(), outs.end());
    Tensor y = ctx.alloc(DType::kFloat32, so);
    const float* px = x.data<float>();
    float* py = outData<float>(y);
    parallelFor(ctx.threads(), N * C, grainFor(OH * OW * kh * kw), [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const float* xc = px + t * H * W;
        float* yc = py + t * OH * OW;
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t h0 = oh * sh - pt;
          int64_t a = 0, b = 0;  // interior MaxPool columns, done by maxRowInterior
          if (kind == 0 && h0 >= 0 && h0 + (kh - 1) * dh < H) {
            const int64_t last = W - 1 - (kw - 1) * dw + pl;  // ow * sw - pl + (kw-1)*dw < W
            a = std::min(OW, (pl + sw - 1) / sw);
            b = std::max(a, last < 0 ? 0 : std::min(OW, last / sw + 1));
            if (!maxRowInterior(xc, W, h0, a, b, sw, pl, kh, kw, dh, dw, yc + oh * OW)) a = b = 0;
          }
          for (int64_t ow = 0; ow < OW; ++ow) {
            if (ow >= a && ow < b) continue;
            const int64_t w0 = ow * sw - pl;
            float acc = kind == 0 ? -std::numeric_limits<float>::infinity() : 0.0f;
            int64_t count = 0;
            for (int64_t i = 0; i < kh; ++i) {
              const int64_t ih = h0 + i * dh;
              if (ih < 0 || ih >= H) continue;
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t iw = w0 + j * dw;
                if (iw < 0 || iw >= W) continue;
                const float v = xc[ih * W + iw];
                if (kind == 0) acc = (v > acc || std::isnan(v)) ? v : acc;
                else if (kind == 1) acc += v;
                else acc += std::pow(std::abs(v), p);
                ++count;
              }
            }
            if (kind == 1) {
              int64_t div = count;
              if (include_pad) {  // window clipped to the padded extent
                const int64_t hs = std::max<int64_t>(h0, -pt), he = std::min<int64_t>(h0 + (kh - 1) * dh + 1, H + pbot);
                const int64_t ws = std::max<int64_t>(w0, -pl), we = std::min<int64_t>(w0 + (kw - 1) * dw + 1, W + pr);
                div = ((he - hs + dh - 1) / dh) * ((we - ws + dw - 1) / dw);
              }
              acc = div > 0 ? acc / static_cast<float>(div) : 0.0f;
            } else if (kind == 2) {
              acc = std::pow(acc, 1.0f / p);
            }
            yc[oh * OW + ow] = acc;
          }
        }
      }
    });
    out[0] = std::move(y);
  };
}

Kernel makeGlobalPool(const NodeInfo& info, std::vector<DType>& out_types) {
  const std::string& name = info.node.opType();
  const int kind = name == "GlobalMaxPool" ? 0 : (name == "GlobalAveragePool" ? 1 : 2);
  info.requireInputs(1, 1);
  info.requireType(0, {DType::kFloat32});
  const float p = static_cast<float>(info.attrInt("p", 2));
  out_types = {DType::kFloat32};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& x = in[0];
    expectType(x, DType::kFloat32, "X");
    if (x.rank() < 2) runError("input must have rank >= 2, got " + typeShape(x));
    const int64_t N = x.shape()[0], C = x.shape()[1], S = dimProduct(x.shape(), 2, x.rank());
    Shape so = {N, C};
    so.resize(x.shape().size(), 1);
    Tensor y = ctx.alloc(DType::kFloat32, so);
    const float* px = x.data<float>();
    float* py = outData<float>(y);
    parallelFor(ctx.threads(), N * C, grainFor(S), [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const float* xc = px + t * S;
        if (kind == 0) {
          float m = -std::numeric_limits<float>::infinity();
          for (int64_t i = 0; i < S; ++i) m = xc[i] > m ? xc[i] : m;
          py[t] = m;
        } else if (kind == 1) {
          float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          int64_t i = 0;
          for (; i + 8 <= S; i += 8)
            for (int k = 0; k < 8; ++k) acc[k] += xc[i + k];
          float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
          for (; i < S; ++i) sum += xc[i];
          py[t] = sum / static_cast<float>(S);
        } else {
          double sum = 0;
          for (int64_t i = 0; i < S; ++i) sum += std::pow(std::abs(xc[i]), p);
          py[t] = static_cast<float>(std::pow(sum, 1.0 / p));
        }
      }
    });
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
