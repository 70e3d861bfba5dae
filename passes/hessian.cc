#include "passes/hessian.h"

#include <omp.h>

#include <algorithm>

#include "lib/runtime/gemm.h"
#include "lib/util/error.h"

namespace ptq::passes {

namespace {

// Output pixels unfolded per GEMM: bounds the im2col buffer (rows x dim floats).
constexpr int64_t kChunkRows = 4096;
// Hessian tile edge: wider inputs compute only the lower triangle's tiles.
constexpr int64_t kTile = 256;

int64_t outSize(int64_t in, int64_t k, int64_t stride, int64_t dil, int64_t pad_sum) {
  return (in + pad_sum - dil * (k - 1) - 1) / stride + 1;
}

// Resolved begin pad and output size of one spatial dim under auto_pad.
void resolveDim(const std::string& auto_pad, int64_t in, int64_t k, int64_t stride, int64_t dil, int64_t p0, int64_t p1,
                int64_t* begin, int64_t* out) {
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    *out = (in + stride - 1) / stride;
    const int64_t total = std::max<int64_t>(0, (*out - 1) * stride + dil * (k - 1) + 1 - in);
    *begin = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
  } else if (auto_pad == "VALID") {
    *begin = 0;
    *out = outSize(in, k, stride, dil, 0);
  } else {
    *begin = p0;
    *out = outSize(in, k, stride, dil, p0 + p1);
  }
}

}  // namespace

std::string InputUnfold::key(const std::string& input_name) const {
  std::string k = input_name + (kind == Kind::kRowsTransposed ? "|T" : "");
  if (kind == Kind::kConv)
    k += "|conv g" + std::to_string(groups) + " k" + std::to_string(kh) + "x" + std::to_string(kw) + " s" +
         std::to_string(sh) + "x" + std::to_string(sw) + " d" + std::to_string(dh) + "x" + std::to_string(dw) + " p" +
         std::to_string(pad_top) + "," + std::to_string(pad_left) + "," + std::to_string(pad_bottom) + "," +
         std::to_string(pad_right) + " " + auto_pad;
  return k;
}

std::optional<InputUnfold> inputUnfold(const ir::Node& n, const pipeline::LayerPlan& layer, std::string* why) {
  InputUnfold u;
  const ir::Shape& ws = layer.weight->initializer.shape();
  const std::string& op = n.opType();
  if (layer.weight_input != 1 || !n.input(0)) {
    *why = "no input activation";
    return std::nullopt;
  }
  if (op == "MatMul") {
    u.dim = ws[0];
  } else if (op == "Gemm") {
    u.dim = ws[static_cast<size_t>(layer.reduce_axis)];
    if (n.attrInt("transA", 0) != 0) u.kind = InputUnfold::Kind::kRowsTransposed;
  } else if (op == "Conv") {
    if (ws.size() != 3 && ws.size() != 4) {
      *why = "only 1-D and 2-D convolutions";
      return std::nullopt;
    }
    u.kind = InputUnfold::Kind::kConv;
    u.one_d = ws.size() == 3;
    u.groups = n.attrInt("group", 1);
    u.channels = ws[1] * u.groups;
    u.kh = u.one_d ? 1 : ws[2];
    u.kw = ws.back();
    u.dim = ws[1] * u.kh * u.kw;
    const std::vector<int64_t> st = n.attrInts("strides"), di = n.attrInts("dilations"), pa = n.attrInts("pads");
    const size_t sp = u.one_d ? 1 : 2;
    if ((!st.empty() && st.size() != sp) || (!di.empty() && di.size() != sp) || (!pa.empty() && pa.size() != 2 * sp)) {
      *why = "strides/dilations/pads do not match the kernel rank";
      return std::nullopt;
    }
    if (!st.empty()) { u.sh = u.one_d ? 1 : st[0]; u.sw = st.back(); }
    if (!di.empty()) { u.dh = u.one_d ? 1 : di[0]; u.dw = di.back(); }
    if (!pa.empty()) {
      u.pad_top = u.one_d ? 0 : pa[0];
      u.pad_left = pa[sp - 1];
      u.pad_bottom = u.one_d ? 0 : pa[2];
      u.pad_right = pa[2 * sp - 1];
    }
    u.auto_pad = n.attrString("auto_pad", "NOTSET");
  } else {
    *why = "no input activation (" + op + ")";
    return std::nullopt;
  }
  return u;
}

HessianAccumulator::HessianAccumulator(InputUnfold u, int threads)
    : u_(std::move(u)), threads_(threads), sum_(static_cast<size_t>(u_.groups * u_.dim * u_.dim), 0.0f) {}

void HessianAccumulator::addRows(const float* x, int64_t n, int64_t g, bool transposed) {
  // sum_g += X^T X for X [n, dim] (transposed: X is stored [dim, n]). H is symmetric: above kTile columns
  // only the tiles on and below the diagonal are computed (one single-threaded GEMM each, spread over the
  // threads: the bits do not depend on which thread runs a tile), and finish() mirrors them.
  if (u_.dim > kTile && !transposed) {
    const int64_t nt = (u_.dim + kTile - 1) / kTile, tiles = nt * (nt + 1) / 2;
    float* c = sum_.data() + g * u_.dim * u_.dim;
#pragma omp parallel for num_threads(threads_ > 0 ? threads_ : omp_get_max_threads()) schedule(dynamic)
    for (int64_t t = 0; t < tiles; ++t) {
      int64_t bi = 0;
      while ((bi + 1) * (bi + 2) / 2 <= t) ++bi;
      const int64_t bj = t - bi * (bi + 1) / 2;  // bj <= bi
      const int64_t i0 = bi * kTile, j0 = bj * kTile;
      runtime::GemmArgs ga;
      ga.trans_a = true;
      ga.M = std::min(kTile, u_.dim - i0);
      ga.N = std::min(kTile, u_.dim - j0);
      ga.K = n;
      ga.A = x + i0;
      ga.lda = u_.dim;
      ga.B = x + j0;
      ga.ldb = u_.dim;
      ga.beta = 1.0f;
      ga.C = c + i0 * u_.dim + j0;
      ga.ldc = u_.dim;
      runtime::sgemm(ga);
    }
    lower_only_ = true;
    return;
  }
  runtime::GemmArgs ga;
  ga.trans_a = !transposed;
  ga.trans_b = transposed;
  ga.M = u_.dim;
  ga.N = u_.dim;
  ga.K = n;
  ga.A = x;
  ga.lda = transposed ? n : u_.dim;
  ga.B = x;
  ga.ldb = transposed ? n : u_.dim;
  ga.beta = 1.0f;
  ga.C = sum_.data() + g * u_.dim * u_.dim;
  ga.ldc = u_.dim;
  runtime::sgemmParallel(ga, threads_);
}

void HessianAccumulator::add(const ir::Tensor& x) {
  if (x.dtype() != ir::DType::kFloat32) throwInput("hessian: the layer input is " + ir::dtypeName(x.dtype()) + ", not float32");
  const ir::Shape& s = x.shape();
  const float* p = x.data<float>();
  if (u_.kind != InputUnfold::Kind::kConv) {
    const bool tr = u_.kind == InputUnfold::Kind::kRowsTransposed;
    const int64_t k = s.empty() ? 1 : (tr ? s.front() : s.back());
    if (k != u_.dim) throwInput("hessian: input " + ir::shapeToString(s) + " does not have " + std::to_string(u_.dim) + " features");
    const int64_t n = x.numel() / std::max<int64_t>(1, u_.dim);
    if (n > 0) addRows(p, n, 0, tr);
    rows_ += n;
    return;
  }
  const size_t rank = u_.one_d ? 3 : 4;
  if (s.size() != rank || s[1] != u_.channels)
    throwInput("hessian: conv input " + ir::shapeToString(s) + " does not have " + std::to_string(u_.channels) + " channels");
  const int64_t batch = s[0], H = u_.one_d ? 1 : s[2], W = s.back();
  int64_t pt = 0, pl = 0, oh = 1, ow = 1;
  if (!u_.one_d) resolveDim(u_.auto_pad, H, u_.kh, u_.sh, u_.dh, u_.pad_top, u_.pad_bottom, &pt, &oh);
  resolveDim(u_.auto_pad, W, u_.kw, u_.sw, u_.dw, u_.pad_left, u_.pad_right, &pl, &ow);
  if (oh < 1 || ow < 1) throwInput("hessian: conv input " + ir::shapeToString(s) + " is smaller than the kernel");
  const int64_t cg = u_.channels / u_.groups, pixels = batch * oh * ow;
  std::vector<float> col(static_cast<size_t>(std::min(pixels, kChunkRows) * u_.dim));
  for (int64_t g = 0; g < u_.groups; ++g)
    for (int64_t r0 = 0; r0 < pixels; r0 += kChunkRows) {
      const int64_t r1 = std::min(pixels, r0 + kChunkRows);
      // col[r - r0, (i * kw + j) * cg + c] = x[b, g * cg + c, y * sh - pt + i * dh, x * sw - pl + j * dw]
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / (oh * ow), y = r / ow % oh, xo = r % ow;
        float* row = col.data() + (r - r0) * u_.dim;
        for (int64_t i = 0; i < u_.kh; ++i) {
          const int64_t iy = y * u_.sh - pt + i * u_.dh;
          for (int64_t j = 0; j < u_.kw; ++j) {
            const int64_t ix = xo * u_.sw - pl + j * u_.dw;
            float* dst = row + (i * u_.kw + j) * cg;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
              std::fill(dst, dst + cg, 0.0f);
              continue;
            }
            const float* src = p + ((b * u_.channels + g * cg) * H + iy) * W + ix;
            for (int64_t c = 0; c < cg; ++c) dst[c] = src[c * H * W];
          }
        }
      }
      addRows(col.data(), r1 - r0, g, false);
    }
  rows_ += pixels;
}

std::shared_ptr<pipeline::LayerHessian> HessianAccumulator::finish(const std::string& source) const {
  auto h = std::make_shared<pipeline::LayerHessian>();
  h->dim = u_.dim;
  h->groups = u_.groups;
  h->rows = rows_;
  h->source = source;
  h->h = sum_;
  if (lower_only_) {  // tiles above the diagonal were not computed: mirror the lower triangle
    const int64_t d = u_.dim;
    for (int64_t g = 0; g < u_.groups; ++g) {
      float* m = h->h.data() + g * d * d;
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = i + 1; j < d; ++j) m[i * d + j] = m[j * d + i];
    }
  }
  const float f = rows_ > 0 ? 2.0f / static_cast<float>(rows_) : 0.0f;
  for (float& v : h->h) v *= f;
  return h;
}

}  // namespace ptq::passes
