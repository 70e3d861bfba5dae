// Library side of `ptq-tool eval REF.onnx CAND.onnx`: runs a reference and a candidate model on the
// same held-out inputs, batch by batch, and measures how far the candidate is from the reference
// (per output: max/mean abs error, cosine, SQNR), and for classifiers and language models what
// matters to users (top-1/top-5 agreement and accuracy; perplexity under the zoo protocol).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lib/driver/eval_metrics.h"

namespace ptq::driver {

struct EvalOptions {
  std::string ref_path, cand_path;
  // Language model: a raw little-endian int64 token file fed to the models' one integer input in
  // non-overlapping windows of `seq` tokens (zoo protocol: position t predicts token t+1, the last
  // position of a window predicts the first token of the next one).
  std::string tokens;
  int64_t seq = 128;
  int64_t windows = 0;  // 0 = every whole window
  // Otherwise: NAME=FILE as --calib takes them (.npy, .npz, .pb, raw .bin/.raw of the input's dtype).
  std::vector<std::string> data;
  std::string data_shape;  // SxT... shape of raw .bin data (as --calib-shape)
  int64_t samples = 0;     // at most this many samples (0 = all)
  std::string labels;      // int64 labels, raw .i64/.bin or .npy, one per sample
  int64_t batch = 8;
  std::string report_path;
  std::string report_html;  // the figures as one self-contained HTML page
  int threads = 0;
  // Per-layer error attribution: the output of every quantized layer of the candidate (a node reading
  // a DequantizeLinear of a constant, MatMulNBits, MatMulInteger, ConvInteger) compared with the
  // reference's value of the same name (following Cast/Mul/Add/Q/DQ after the layer when the name
  // changed), batch by batch, worst SQNR first.
  bool attribution = false;
  // With attribution: the K worst layers are evaluated once more each with only that layer quantized
  // (the reference with that one weight replaced by the candidate's dequantized weight). Layers whose
  // weight is not a DequantizeLinear of constants (MatMulNBits, integer kernels) are not isolated.
  int64_t isolate = 0;
};

// The figures of a reference run with only one layer's weight quantized.
struct IsolatedLayer {
  bool done = false;
  std::string note;          // why not, when not done
  double sqnr_db = 0;        // worst graph output
  double cosine = 0;         // worst graph output
  double perplexity = 0;     // language model
  double agreement = 0;      // next-token / first classifier top-1 agreement
  double accuracy = 0;       // with labels (classifier) or next-token accuracy (LM)
};

struct LayerAttribution {
  std::string node;      // the candidate's node (its name, else its first output's)
  std::string op_type;   // the candidate's op
  std::string value;     // the value compared in both models
  eval::ErrorStats error;
  std::string cand_weight, ref_weight;  // DequantizeLinear output in the candidate / the reference's constant
  IsolatedLayer isolated;
};

struct OutputEval {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;  // of the first batch
  eval::ErrorStats error;
  bool classifier = false;     // float [N, C], or per_position
  bool per_position = false;   // float [N, T, C] with --data: a classifier of each of the N·T positions
  eval::ClassStats classes;
};

struct EvalResult {
  std::string ref_path, cand_path;
  std::string data_description;
  int64_t samples = 0;  // samples (or windows) evaluated
  int64_t batches = 0;
  std::vector<OutputEval> outputs;
  bool language_model = false;
  std::string lm_output;
  int64_t seq = 0;
  eval::PerplexityStats ref_ppl, cand_ppl;
  int64_t lm_top1_agree = 0;  // next-token arg-max agreement over all positions
  int64_t lm_ref_correct = 0, lm_cand_correct = 0;  // next-token arg-max equal to the true next token
  double seconds = 0;
  bool attribution = false;
  std::vector<LayerAttribution> layers;   // worst SQNR first
  std::vector<std::string> unmatched;     // quantized candidate nodes with no matching reference value

  std::string table() const;   // the readable summary printed on stdout
  std::string toJson() const;  // the --report document
};

// A .ptq candidate (or reference) is unpacked in memory to the ONNX form recorded in it.
// Throws ptq::Error: kUsage for inconsistent flags, kInput for missing/unreadable models or data,
// unknown input names, labels that do not match, or models with different inputs/outputs, kOutput
// when the report cannot be written.
EvalResult runEval(const EvalOptions& options);

}  // namespace ptq::driver
