#include "lib/driver/run_job.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "formats/onnx/onnx_io.h"
#include "lib/calib/npy.h"
#include "lib/driver/tensor_files.h"
#include "lib/runtime/session.h"
#include "lib/util/error.h"

namespace ptq::driver {

namespace {
bool endsWith(const std::string& s, const char* ext) {
  const std::string e(ext);
  return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

std::string safeName(const std::string& n) {
  std::string s = n;
  for (char& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) c = '_';
  return s.empty() ? "_" : s;
}

std::string describe(const std::string& name, const ir::Tensor& t) {
  std::string line = name + "  " + ir::dtypeName(t.dtype()) + ir::shapeToString(t.shape());
  if (t.dtype() == ir::DType::kString || t.numel() == 0) return line;
  const std::vector<float> v = t.toFloats();
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
  size_t bad = 0;
  for (float x : v) {
    if (!std::isfinite(x)) { ++bad; continue; }
    lo = std::min<double>(lo, x);
    hi = std::max<double>(hi, x);
    sum += x;
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "  min %.6g  max %.6g  mean %.6g", lo, hi, v.size() > bad ? sum / (v.size() - bad) : 0.0);
  line += buf;
  if (bad) line += "  (" + std::to_string(bad) + " non-finite)";
  return line;
}
}  // namespace

RunModelResult runModelCommand(const RunModelOptions& o) {
  ir::Model model = onnx_io::loadModel(o.model_path);
  runtime::SessionOptions so;
  so.threads = o.threads;
  runtime::Session session(model, so);  // unsupported ops are reported here, before any data is read

  std::map<std::string, ir::Tensor> feeds;
  const std::vector<std::string> names = session.inputNames();
  for (const std::string& spec : o.inputs) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos) {
      if (!endsWith(spec, ".npz")) throwUsage("--input '" + spec + "': expected NAME=FILE (or a .npz holding every input)");
      for (auto& [name, t] : calib::readNpz(spec))
        if (std::find(names.begin(), names.end(), name) != names.end()) feeds[name] = t;
      continue;
    }
    const std::string name = spec.substr(0, eq), file = spec.substr(eq + 1);
    if (name.empty() || file.empty()) throwUsage("--input '" + spec + "': expected NAME=FILE");
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      std::string all;
      for (const std::string& n : names) all += (all.empty() ? "" : ", ") + n;
      throwUsage("--input '" + spec + "': the model has no input '" + name + "' (inputs: " + all + ")");
    }
    feeds[name] = readTensorFile(file, name);
  }

  RunModelResult r;
  const auto t0 = std::chrono::steady_clock::now();
  r.outputs = session.run(feeds, o.outputs);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.output_order = o.outputs.empty() ? session.outputNames() : o.outputs;
  for (const std::string& n : r.output_order) r.summary += describe(n, r.outputs.at(n)) + "\n";

  if (!o.output_path.empty()) {
    if (endsWith(o.output_path, ".npz")) {
      calib::NamedTensors arrays;
      for (const std::string& n : r.output_order) arrays.emplace_back(n, r.outputs.at(n));
      calib::writeNpz(o.output_path, arrays);
    } else if (endsWith(o.output_path, ".npy")) {
      if (r.output_order.size() != 1)
        throwUsage("-o " + o.output_path + ": the model has " + std::to_string(r.output_order.size()) +
                   " outputs; write them to a .npz or a folder");
      calib::writeNpy(o.output_path, r.outputs.at(r.output_order[0]));
    } else {
      struct stat st {};
      if (::stat(o.output_path.c_str(), &st) != 0 && ::mkdir(o.output_path.c_str(), 0777) != 0)
        throwOutput("-o " + o.output_path + ": cannot create folder");
      for (const std::string& n : r.output_order) calib::writeNpy(o.output_path + "/" + safeName(n) + ".npy", r.outputs.at(n));
    }
  }
  return r;
}

}  // namespace ptq::driver
