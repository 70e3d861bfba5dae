#include "passes/weight_quantizer.h"

#include "lib/quant/tensor_quant.h"
#include "lib/util/error.h"

namespace ptq::passes {

using pipeline::Granularity;
using QW = ir::QuantizedWeight;

std::shared_ptr<QW> quantizeWeight(const ir::Tensor& w, int64_t reduce_axis, int64_t channel_axis,
                                   const pipeline::WeightSettings& s, int clip_steps, float clip_min_ratio) {
  quant::QuantOptions opts;
  opts.grid.bits = s.bits;
  opts.grid.symmetric = s.symmetric;
  opts.grid.is_signed = s.symmetric;
  opts.clip = s.clip_search;
  opts.clip_steps = clip_steps;
  opts.clip_min_ratio = clip_min_ratio;

  const ir::Shape& shape = w.shape();
  // The bytes where they lie: an unaligned weight viewed in the model file is read in place rather
  // than through an aligned copy of the whole tensor (tensor.h), a chunk at a time, each chunk's pages
  // mapped before and given back after (quantizeTensorBytes).
  const void* x = w.bytes();
  auto q = std::make_shared<QW>();
  quant::QuantizedTensor qt;
  switch (s.granularity) {
    case Granularity::kTensor:
      qt = quant::quantizeTensorBytes(x, shape, quant::kPerTensor, 0, opts);
      q->granularity = quant::Granularity::kTensor;
      break;
    case Granularity::kChannel: {
      // One scale per output channel over everything else: view the weight as
      // [channels, rest] when the channel axis is first, or [rest, channels] when last (2-D).
      const int64_t channels = shape[static_cast<size_t>(channel_axis)];
      const int64_t rest = w.numel() / channels;
      if (channel_axis == 0) qt = quant::quantizeTensorBytes(x, {channels, rest}, 1, rest, opts);
      else if (channel_axis == static_cast<int64_t>(shape.size()) - 1) qt = quant::quantizeTensorBytes(x, {rest, channels}, 0, rest, opts);
      else throwInternal("per-channel quantization needs the channel axis first or last");
      qt.shape = shape;
      qt.scale_shape = {channels};
      q->granularity = quant::Granularity::kChannel;
      q->axis = channel_axis;
      break;
    }
    case Granularity::kGroup:
      // A convolution's reduction spans C/group x kh x kw, but blocks run along C only: when C fits
      // in one group (always for depthwise, C/group = 1) blocks would hold kh*kw or fewer weights, or
      // one. One scale per output channel is then the faithful reading of "groups of group_size".
      if (shape.size() > 2 && shape[static_cast<size_t>(reduce_axis)] <= s.group_size) {
        pipeline::WeightSettings per_channel = s;
        per_channel.granularity = Granularity::kChannel;
        return quantizeWeight(w, reduce_axis, channel_axis, per_channel, clip_steps, clip_min_ratio);
      }
      qt = quant::quantizeTensorBytes(x, shape, reduce_axis, s.group_size, opts);
      q->granularity = quant::Granularity::kGroup;
      q->axis = reduce_axis;
      q->block_size = s.group_size;
      break;
  }
  q->bits = s.bits;
  q->symmetric = s.symmetric;
  q->is_signed = opts.grid.is_signed;
  const ir::DType code_type = q->is_signed ? ir::DType::kInt8 : ir::DType::kUInt8;
  q->codes = ir::Tensor::fromByteVector(code_type, shape, std::move(qt.codes));
  q->scales = ir::Tensor::fromFloats(qt.scale_shape, qt.scales);
  if (!s.symmetric) q->zero_points = ir::Tensor::fromBytes(code_type, qt.scale_shape, qt.zero_points.data(), qt.zero_points.size());
  q->mse = qt.error.mse;
  q->sqnr_db = qt.error.sqnr_db;
  return q;
}

}  // namespace ptq::passes
