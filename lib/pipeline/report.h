// What a run did, for `--report report.json` and the end-of-run summary: one record per layer with
// the decision and its error figures, one per pass with its counters, and warnings. The per-layer
// records come from the quantization plan (layerRecords) and the legalize stage's result (what was
// written per weight), never from the passes directly.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ptq::pipeline {

class QuantPlan;

struct LayerRecord {
  std::string node;
  std::string op_type;
  std::string scope;         // "" main graph, else the subgraph path (If/Loop/Scan bodies)
  std::string weight;
  std::vector<int64_t> shape;
  std::string action;        // "quantized (rtn)", "skipped: <why>"
  std::string decided_by;    // "config" or the pass that changed the plan's settings last
  std::vector<std::string> history;  // the plan's changes, in order
  std::map<std::string, double> metrics;  // figures a pass measured (gptq: loss, rtn_loss, damp, seconds)
  bool activations = false;  // its input/output activations are quantized
  int bits = 0;
  std::string granularity;   // tensor | channel | group
  int64_t group_size = 0;
  bool symmetric = true;
  double mse = 0;
  double sqnr_db = 0;
  int64_t bytes_before = 0;  // fp32 weight bytes
  int64_t bytes_after = 0;   // packed codes + scales + zero points
  std::string form;          // how it was written: DequantizeLinear, MatMulNBits, packed
};

struct PassRecord {
  std::string name;
  bool changed = false;
  std::map<std::string, int64_t> counters;
  std::map<std::string, double> figures;
  double seconds = 0;
};

struct Report {
  std::string tool_version;
  std::string input;
  std::string output;
  std::string format;
  std::string config_json;   // the effective config
  uint64_t seed = 0;
  int threads = 0;
  std::string calibration;   // what calibration data was used, and its digest
  std::vector<LayerRecord> layers;
  std::vector<PassRecord> passes;
  std::vector<std::string> warnings;
  int64_t input_bytes = 0;   // size of the input model file(s)
  int64_t output_bytes = 0;  // size of what was written
  double seconds = 0;

  std::string toJson() const;
};

// One record per plan layer, in plan order: where it is, what was decided and by whom, and, for
// layers whose weight carries a quantization annotation, its bits, granularity and error figures.
// `form` and `bytes_after` are left for the writer's result (see the driver).
std::vector<LayerRecord> layerRecords(const QuantPlan& plan);

}  // namespace ptq::pipeline
