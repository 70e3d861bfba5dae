// The typed quantization config: JSON presets (configs/*.json) mapped onto plain structs.
// Unknown keys, wrong types and out-of-range values are errors naming the file and the key path
// (e.g. "configs/w4a16.json: weights.bits: 9 is out of range 2..8"). A key nobody reads is an error:
// options of a pass the pipeline does not name, observer options the chosen observer ignores, an
// "activations" section without a pass that reads it. Pass options are parsed against the pass table
// (pass_registry.h) here, when the config is loaded, so an error in the last pass's options is
// reported before the first pass runs.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "lib/calib/calibration.h"
#include "lib/pipeline/pass_registry.h"
#include "lib/quant/grid.h"

namespace ptq::pipeline {

using quant::ClipSearch;
using quant::Granularity;
enum class OutputFormat { kQdq, kMatMulNBits, kPacked };
// Activation scale granularity: one scale per tensor, or (dynamic only) one per token, i.e. per row
// of the last axis, computed at run time.
enum class ActivationGranularity { kTensor, kToken };

std::string activationGranularityName(ActivationGranularity g);  // "tensor" | "token"

std::string outputFormatName(OutputFormat f);
// Parses "qdq" | "matmulnbits" | "packed"; throws kUsage naming `what`.
OutputFormat parseOutputFormat(const std::string& s, const std::string& what);

// How one weight tensor is quantized.
struct WeightSettings {
  int bits = 8;                           // 2..8
  bool symmetric = true;
  Granularity granularity = Granularity::kChannel;
  int64_t group_size = 128;               // 16..256 for kGroup
  ClipSearch clip_search = ClipSearch::kNone;
};

// A per-layer override: applies to layers whose node name or weight name matches `match`
// (glob: * and ?) and, when given, whose op type equals `op_type`. Later overrides win.
struct LayerOverride {
  std::string match = "*";
  std::string op_type;                    // empty = any
  bool skip = false;
  // Fields given in the override's "weights" object; others come from the defaults.
  std::optional<int> bits;
  std::optional<bool> symmetric;
  std::optional<Granularity> granularity;
  std::optional<int64_t> group_size;
  std::optional<ClipSearch> clip_search;
};

struct LayerSelection {
  std::vector<std::string> op_types{"MatMul", "Gemm", "Conv"};  // also allowed: "Gather" (embeddings)
  bool quantize_embeddings = false;       // adds "Gather" of constant tables
  std::vector<std::string> skip;          // globs over node or weight names
  int64_t min_elements = 0;               // leave smaller weights in float
  // A weight holding NaN/Inf: refuse the model (false, the default: exit 2 naming the tensor and the
  // first bad index) or leave that layer in float and report it ("non_finite": "keep_float").
  bool keep_non_finite_float = false;
};

// Activation quantization (the qdq pass): which activations, on what grid, with which observer.
// Static (the default): ranges calibrated once by an observer and stored in the file. Dynamic: the
// scale (and zero point) computed from the tensor itself at run time — no calibration data, no
// observer; the only kind that can have per-token scales.
struct ActivationSettings {
  bool present = false;                   // the config has an "activations" section
  int bits = 8;                           // 4, 8 or 16
  bool symmetric = false;                 // false: uint8 with a zero point; true: int8, zero 0
  bool dynamic = false;                   // scales computed at run time ("dynamic": true)
  ActivationGranularity granularity = ActivationGranularity::kTensor;  // kToken requires dynamic
  std::string observer = "minmax";        // minmax | moving_minmax | percentile | mse | entropy
  std::optional<double> percentile;
  std::optional<double> momentum;
  std::optional<int> bins;
  // Whose input and output activations get Q/DQ: the weight layers (MatMul, Gemm, Conv, as selected
  // by "layers") and, when listed, other ops (activationOpTypes()) so ONNX Runtime can keep whole
  // chains in integers (QLinearAdd, QLinearConcat, quantized pooling).
  std::vector<std::string> op_types{"MatMul", "Gemm", "Conv"};
};

// The op types "activations.op_types" accepts.
const std::vector<std::string>& activationOpTypes();

// One pipeline step: a pass of the table and its validated options (defaults filled in).
struct PassSpec {
  const PassInfo* info = nullptr;
  OptionValues options;
  const std::string& name() const { return info->name; }
};

struct QuantConfig {
  std::string source;                     // file it came from ("<defaults>" otherwise)
  std::string name;
  std::string description;
  OutputFormat format = OutputFormat::kQdq;
  uint64_t seed = 0;
  std::vector<PassSpec> pipeline;         // the passes in order ("pipeline" key; default: the table's in_default_pipeline passes)
  WeightSettings weights;
  LayerSelection layers;
  std::vector<LayerOverride> overrides;
  ActivationSettings activations;
  calib::CalibrationSpec calibration;     // file paths relative to the working directory

  bool hasPass(const std::string& name) const;
  // Whether some pass of the pipeline needs calibration data with these settings (PassTraits::needsCalibration).
  bool needsCalibration() const;
  // Whether some pass of the pipeline reads the "activations" section (it quantizes activations).
  bool quantizesActivations() const;
};

// Reads and validates a config file against the pass table. Throws Error(kUsage) naming the file and key.
QuantConfig loadConfig(const std::string& path, const PassTable& passes);
// Parses config JSON text (`source` names it in errors).
QuantConfig parseConfig(const std::string& json_text, const std::string& source, const PassTable& passes);
// The config back as JSON (for the report and the packed file's provenance).
std::string configToJson(const QuantConfig& c);
// Glob match with * and ?.
bool globMatch(const std::string& pattern, const std::string& text);

}  // namespace ptq::pipeline
