#include "passes/gptq_layer.h"

#include <algorithm>

#include "lib/quant/rtn_kernels.h"
#include "lib/quant/tensor_quant.h"
#include "lib/util/error.h"
#include "passes/gptq_solver.h"

namespace ptq::passes {

namespace {

using pipeline::Granularity;

// Where the solver's element (row, col) of conv group `cg` lives in the weight, and where its
// (row, solver group) parameters live in the DequantizeLinear scale tensor.
struct WeightView {
  int64_t rank = 2, reduce_axis = 0;
  int64_t O = 0, K = 0;          // output channels, reduction length along the weight's reduce axis
  int64_t kh = 1, kw = 1;        // conv kernel (1 x 1 for 2-D weights)
  int64_t conv_groups = 1, rows = 0, cols = 0;
  int64_t nb = 1, g = 0;         // blocks along the reduce axis and their size (kGroup)

  int64_t element(int64_t cg, int64_t r, int64_t c) const {
    const int64_t o = cg * rows + r;
    if (rank == 2) return reduce_axis == 0 ? c * O + o : o * K + c;
    const int64_t s = c / K, ch = c % K;  // columns (kh, kw, c) with c fastest
    return ((o * K + ch) * kh + s / kw) * kw + s % kw;
  }
  // Solver groups: rank 2: block kb; conv: s * nb + cb.
  int64_t scaleIndex(int64_t cg, int64_t r, int64_t gid) const {
    const int64_t o = cg * rows + r;
    if (rank == 2) return reduce_axis == 0 ? gid * O + o : o * nb + gid;
    const int64_t s = gid / nb, cb = gid % nb;
    return ((o * nb + cb) * kh + s / kw) * kw + s % kw;
  }
};

}  // namespace

GptqLayerResult gptqLayer(const ir::Tensor& w, int64_t reduce_axis, int64_t channel_axis,
                          const pipeline::WeightSettings& ws, const pipeline::LayerHessian& h, const GptqLayerOptions& o) {
  const ir::Shape& shape = w.shape();
  WeightView v;
  v.rank = static_cast<int64_t>(shape.size());
  v.reduce_axis = reduce_axis;
  if (v.rank == 2) {
    v.O = shape[static_cast<size_t>(channel_axis)];
    v.K = shape[static_cast<size_t>(reduce_axis)];
  } else if ((v.rank == 3 || v.rank == 4) && reduce_axis == 1 && channel_axis == 0) {
    v.O = shape[0];
    v.K = shape[1];
    v.kh = v.rank == 4 ? shape[2] : 1;
    v.kw = shape.back();
  } else {
    throwInternal("gptq: weight " + ir::shapeToString(shape) + " is neither 2-D nor a convolution's");
  }
  v.conv_groups = h.groups;
  v.cols = v.K * v.kh * v.kw;
  if (v.cols != h.dim || v.O % v.conv_groups != 0)
    throwInput("gptq: weight " + ir::shapeToString(shape) + " does not fit its input's Hessian (" + std::to_string(h.groups) +
               " x " + std::to_string(h.dim) + "^2)");
  v.rows = v.O / v.conv_groups;

  Granularity gran = ws.granularity;
  if (gran == Granularity::kGroup && v.rank > 2 && v.K <= ws.group_size) gran = Granularity::kChannel;  // as RTN does

  GptqSettings s;
  s.quant.grid.bits = ws.bits;
  s.quant.grid.symmetric = ws.symmetric;
  s.quant.grid.is_signed = ws.symmetric;
  s.quant.clip = ws.clip_search;
  s.quant.clip_steps = o.clip_steps;
  s.quant.clip_min_ratio = o.clip_min_ratio;
  s.damp = o.damp;
  s.block_size = o.block_size;
  s.act_order = o.act_order;
  s.static_groups = o.static_groups;
  s.threads = o.threads;
  const float* x = w.data<float>();
  if (gran == Granularity::kTensor) {
    s.per_tensor = true;
    s.tensor_params = quant::fitGroup(x, w.numel(), s.quant);
  } else if (gran == Granularity::kGroup) {
    v.g = ws.group_size;
    v.nb = (v.K + v.g - 1) / v.g;
    s.group_starts.clear();
    for (int64_t sp = 0; sp < v.kh * v.kw; ++sp)
      for (int64_t cb = 0; cb < v.nb; ++cb) s.group_starts.push_back(sp * v.K + cb * v.g);
  }

  auto q = std::make_shared<ir::QuantizedWeight>();
  q->bits = ws.bits;
  q->symmetric = ws.symmetric;
  q->is_signed = ws.symmetric;
  ir::Shape scale_shape;
  if (gran == Granularity::kChannel) {
    q->granularity = quant::Granularity::kChannel;
    q->axis = channel_axis;
    scale_shape = {v.O};
  } else if (gran == Granularity::kGroup) {
    q->granularity = quant::Granularity::kGroup;
    q->axis = reduce_axis;
    q->block_size = v.g;
    scale_shape = shape;
    scale_shape[static_cast<size_t>(reduce_axis)] = v.nb;
  } else {
    q->granularity = quant::Granularity::kTensor;
  }
  std::vector<uint8_t> codes(static_cast<size_t>(w.numel()));
  std::vector<float> scales(static_cast<size_t>(std::max<int64_t>(1, ir::shapeNumel(scale_shape))));
  std::vector<uint8_t> zeros(scales.size());
  std::vector<float> deq(static_cast<size_t>(w.numel()));

  GptqLayerResult res;
  std::vector<float> m(static_cast<size_t>(v.rows * v.cols));
  for (int64_t cg = 0; cg < v.conv_groups; ++cg) {
    for (int64_t r = 0; r < v.rows; ++r)
      for (int64_t c = 0; c < v.cols; ++c) m[r * v.cols + c] = x[v.element(cg, r, c)];
    const float* hg = h.matrix(cg);
    const GptqResult gr = gptqQuantize(m.data(), v.rows, v.cols, hg, s);
    res.damp = std::max(res.damp, gr.damp);
    res.damp_retries = std::max(res.damp_retries, gr.damp_retries);
    res.dead_columns += gr.dead_columns;
    const std::vector<float> mq = gptqDequantize(gr, v.rows, v.cols, s);
    for (int64_t r = 0; r < v.rows; ++r)
      for (int64_t c = 0; c < v.cols; ++c) {
        const int64_t e = v.element(cg, r, c);
        codes[e] = gr.codes[r * v.cols + c];
        deq[e] = mq[r * v.cols + c];
      }
    if (gran == Granularity::kTensor) {
      scales[0] = gr.params[0].scale;
      zeros[0] = quant::toByte(gr.params[0].zero);
    } else {
      for (int64_t r = 0; r < v.rows; ++r)
        for (int64_t gid = 0; gid < gr.groups; ++gid) {
          const int64_t si = gran == Granularity::kChannel ? cg * v.rows + r : v.scaleIndex(cg, r, gid);
          scales[si] = gr.params[r * gr.groups + gid].scale;
          zeros[si] = quant::toByte(gr.params[r * gr.groups + gid].zero);
        }
    }
    if (o.measure) {
      res.loss += outputError(m.data(), mq.data(), v.rows, v.cols, hg, o.threads);
      GptqSettings rs = s;
      rs.propagate = false;
      const GptqResult rr = gptqQuantize(m.data(), v.rows, v.cols, hg, rs);
      res.rtn_loss += outputError(m.data(), gptqDequantize(rr, v.rows, v.cols, rs).data(), v.rows, v.cols, hg, o.threads);
    }
  }
  const ir::DType code_type = q->is_signed ? ir::DType::kInt8 : ir::DType::kUInt8;
  q->codes = ir::Tensor::fromBytes(code_type, shape, codes.data(), codes.size());
  q->scales = ir::Tensor::fromFloats(scale_shape, scales);
  if (!ws.symmetric) q->zero_points = ir::Tensor::fromBytes(code_type, scale_shape, zeros.data(), zeros.size());
  const quant::ErrorStats es = quant::measureError(x, deq.data(), w.numel());
  q->mse = es.mse;
  q->sqnr_db = es.sqnr_db;
  q->method = "gptq";
  res.quant = q;
  return res;
}

}  // namespace ptq::passes
