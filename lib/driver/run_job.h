// Library side of `ptq-tool run MODEL --input name=file ... [-o out.npz]`: load a model, read its
// inputs from .npy / .npz / .pb files, run it on the reference executor and write the outputs.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "lib/ir/tensor.h"

namespace ptq::driver {

struct RunModelOptions {
  std::string model_path;
  // "name=file.npy" / "name=file.pb" / "name=file.npz" (the member called `name`, else the only one),
  // or a bare "file.npz" that feeds every graph input from the member of the same name.
  std::vector<std::string> inputs;
  // Values to return (any value of the main graph); empty = the graph outputs.
  std::vector<std::string> outputs;
  // "" = do not write; "*.npz" = one archive; "*.npy" = the single output; else a folder that gets
  // one NAME.npy per output ('/' and other unsafe characters in names become '_').
  std::string output_path;
  int threads = 0;  // 0 = OpenMP default
};

struct RunModelResult {
  std::map<std::string, ir::Tensor> outputs;
  std::vector<std::string> output_order;  // as requested / graph order
  double seconds = 0;                     // Session::run only
  std::string summary;                    // one line per output: name dtype[shape] min max mean
};

// Throws ptq::Error: kUsage for malformed --input specs or unknown names, kInput for unreadable
// model/data or an unsupported op (naming the node), kOutput when the outputs cannot be written.
RunModelResult runModelCommand(const RunModelOptions& options);

}  // namespace ptq::driver
