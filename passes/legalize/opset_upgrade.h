// Default-domain opset upgrade: rewrites a model's ai.onnx nodes so that it is valid at a newer
// opset and computes the same function. Writers use it because quantized weights in QDQ form need
// DequantizeLinear per-axis (opset 13) or int4 / block_size (opset 21), while exported models come
// at opsets 9-17.
//
// Rewrites (each applied only when the model's opset is below the version where the op changed and
// the target is at or above it; subgraphs of If/Loop/Scan are rewritten too):
//   9   BatchNormalization: `spatial` attribute dropped (spatial=0 is an error); Scan-8: an error
//   10  Upsample (deprecated) -> Resize (asymmetric coordinates, nearest_mode floor/ceil matching
//       the old up/down-sampling rule, which needs constant scales for mode=nearest)
//       Slice: starts/ends/axes attributes -> inputs;  TopK: k attribute -> input
//       Dropout -> Identity (inference); a used mask keeps a Dropout (cast to the old mask type;
//       its inference value is all-true, where ONNX Runtime gave all-false before opset 12)
//       Experimental ops of opsets 1-9 (ImageScaler, Crop, ...): an error
//   11  Clip: min/max attributes -> inputs;  Pad: pads/value attributes -> inputs
//       Resize-10 -> 11 (roi input, asymmetric coordinates, nearest_mode as for Upsample)
//       Scatter (deprecated) -> ScatterElements
//   13  Softmax/LogSoftmax/Hardmax: axis semantics (2-D coercion) -> Flatten + op + Reshape unless
//       the axis is the last one;  Squeeze/Unsqueeze/ReduceSum axes and Split split -> inputs;
//       Resize coordinate_transformation_mode "tf_half_pixel_for_nn" (removed) -> "half_pixel" with
//       the equivalent nearest_mode
//   14  BatchNormalization with outputs beyond Y (training mode before 14): an error (see .cc)
//   16  RoiAlign: coordinate_transformation_mode="output_half_pixel" (the old behaviour) made explicit
//   18  Reduce{Mean,Max,Min,Prod,L1,L2,LogSum,LogSumExp,SumSquare}: axes -> input;
//       Split without `split`: num_outputs set
//   20  GridSample: mode bilinear -> linear, bicubic -> cubic;  DFT: axis attribute -> input
//   21  GroupNormalization: per-group scale/bias -> per-channel (constants repeated when the channel
//       count is known, else Shape/Reshape/Expand at run time)
// Model-local functions importing another ai.onnx opset are an error (their bodies are not rewritten).
// A change that cannot be expressed is a ptq::Error(kInput) naming the node, e.g.
//   "node 'up' (Upsample): cannot upgrade from opset 9 to 21: mode=nearest needs constant scales"
// and leaves the model untouched (every node is checked before anything is rewritten).
#pragma once
#include <cstdint>

#include "lib/ir/graph.h"

namespace ptq::legalize {

// Supported targets (writers need 10 for per-tensor, 13 for per-axis and 21 for blocked / int4
// DequantizeLinear); the source opset must be >= kMinSourceOpset.
constexpr int64_t kMinUpgradeTarget = 10;
constexpr int64_t kMaxUpgradeTarget = 21;
constexpr int64_t kMinSourceOpset = 7;

// Rewrites `model` (default domain, recursively into subgraphs) to opset `target_version` and sets
// the default-domain import to it; raises model.ir_version to what the opset needs (5, 6 for 10, 11;
// 7 for 12-17; 8 for 18; 9 for 19-20; 10 for 21), never lowers it. No-op when the model is already
// at or above the target. Throws ptq::Error: kUsage for a target outside [10, 21]; kInput for a
// model or node that cannot be upgraded (nothing is modified then).
void upgradeOpset(ir::Model& model, int64_t target_version);

// The lowest IR version upgradeOpset leaves a model at for default-domain opset `opset`.
int64_t minIrVersionForOpset(int64_t opset);

}  // namespace ptq::legalize
