// Calibration data: what the data-driven passes (qdq observers, later SmoothQuant/GPTQ) feed the
// model. Sources, in the config's "calibration" section or on the command line:
//   named files   --calib NAME=FILE (.npy, .npz member NAME or its only member, .pb, or raw
//                 little-endian .bin/.raw of the input's dtype: samples inferred, or --calib-shape)
//   a folder      --calib DIR: NAME.npy / NAME.pb / NAME.npz for every model input NAME
//   raw tokens    --calib tokens.i64 --calib-shape 64x128: little-endian int64, fed to the model's
//                 one integer input
//   synthetic     "synthetic": true — seeded random data, only when asked for, never as a fallback
// Every tensor's first dimension is the sample axis; batches are slices of `batch_size` samples.
// Wrong names, dtypes or shapes are errors naming the input and the file.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "lib/calib/npy.h"
#include "lib/ir/graph.h"

namespace ptq::calib {

struct CalibrationSpec {
  std::vector<std::pair<std::string, std::string>> named_files;  // input name -> file
  std::string dir;
  std::string tokens;                  // raw int64 token file
  std::vector<int64_t> tokens_shape;   // [samples, seq] for tokens (default [N / 128, 128]); full shape for raw files
  int64_t samples = 0;                 // use at most this many samples (0 = all)
  int64_t batch_size = 8;
  bool synthetic = false;
  int64_t synthetic_samples = 32;
  uint64_t seed = 0;

  bool empty() const { return named_files.empty() && dir.empty() && tokens.empty() && !synthetic; }
};

class CalibrationSet {
 public:
  // Loads and validates against the graph's real inputs. Throws Error(kInput) naming input and file,
  // Error(kUsage) for an inconsistent spec.
  // `read` reads NAME=FILE / folder tensor files (default: calib::readTensorFile, .npy and .npz).
  static CalibrationSet load(const CalibrationSpec& spec, const ir::Graph& graph, const TensorFileReader& read = {});

  int64_t samples() const { return samples_; }
  int64_t numBatches() const { return (samples_ + batch_size_ - 1) / batch_size_; }
  // Feeds for batch i (views into the loaded data when possible).
  std::map<std::string, ir::Tensor> batch(int64_t i) const;
  // XXH64 over input names, dtypes, shapes and bytes, as 16 hex digits: the provenance digest.
  const std::string& digest() const { return digest_; }
  std::string describe() const;  // "64 samples of input_ids int64[64, 128] from tokens.i64"

 private:
  std::vector<std::pair<std::string, ir::Tensor>> inputs_;
  std::string source_;
  int64_t samples_ = 0;
  int64_t batch_size_ = 8;
  std::string digest_;
};

// "64x128" -> {64, 128}; throws kUsage naming `what`.
std::vector<int64_t> parseShape(const std::string& s, const std::string& what);

}  // namespace ptq::calib
