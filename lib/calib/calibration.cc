#include "lib/calib/calibration.h"

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <random>

#include <xxhash.h>

#include "lib/calib/npy.h"
#include "lib/util/error.h"
#include "lib/util/hash.h"

namespace ptq::calib {

namespace {

bool isFile(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

ir::Tensor readTokens(const std::string& path, std::vector<int64_t> shape) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throwInput(path + ": cannot open token file");
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  if (bytes.size() % 8) throwInput(path + ": token file size " + std::to_string(bytes.size()) + " is not a multiple of 8 (int64)");
  const int64_t n = static_cast<int64_t>(bytes.size() / 8);
  if (shape.empty()) shape = {n / 128, 128};
  if (shape.size() != 2 || shape[0] <= 0 || shape[1] <= 0) throwUsage(path + ": --calib-shape must be SAMPLESxSEQ");
  if (shape[0] * shape[1] > n)
    throwInput(path + ": holds " + std::to_string(n) + " tokens, fewer than the " + std::to_string(shape[0] * shape[1]) +
               " of shape " + ir::shapeToString(shape));
  return ir::Tensor::fromBytes(ir::DType::kInt64, shape, bytes.data(), static_cast<size_t>(shape[0] * shape[1] * 8));
}

// A raw little-endian array (.bin / .raw) of the input's dtype; the first axis is inferred from the
// file size and the input's fixed other dimensions, unless `shape` is given.
ir::Tensor readRaw(const ir::Value& input, const std::string& path, const std::vector<int64_t>& shape) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throwInput(path + ": cannot open calibration file");
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  const size_t elem = ir::dtypeStorageBytes(input.dtype, 1);
  if (elem == 0 || ir::dtypeBits(input.dtype) < 8)
    throwInput(path + ": raw data for input '" + input.name() + "' of type " + ir::dtypeName(input.dtype) + " is not supported");
  ir::Shape s = shape;
  if (s.empty()) {
    if (!input.shape) throwUsage(path + ": give --calib-shape for raw data (input '" + input.name() + "' has no known rank)");
    int64_t per = 1;
    for (size_t d = 1; d < input.shape->size(); ++d) {
      if (!(*input.shape)[d].known()) throwUsage(path + ": give --calib-shape for raw data (input '" + input.name() + "' has a symbolic dimension)");
      per *= (*input.shape)[d].value;
    }
    if (bytes.size() % (elem * static_cast<size_t>(per)))
      throwInput(path + ": " + std::to_string(bytes.size()) + " bytes is not a whole number of samples of input '" + input.name() + "'");
    s.push_back(static_cast<int64_t>(bytes.size() / (elem * static_cast<size_t>(per))));
    for (size_t d = 1; d < input.shape->size(); ++d) s.push_back((*input.shape)[d].value);
  }
  const size_t need = elem * static_cast<size_t>(ir::shapeNumel(s));
  if (bytes.size() < need)
    throwInput(path + ": holds " + std::to_string(bytes.size()) + " bytes, shape " + ir::shapeToString(s) + " needs " + std::to_string(need));
  return ir::Tensor::fromBytes(input.dtype, s, bytes.data(), need);
}

bool isRaw(const std::string& p) {
  return (p.size() > 4 && p.substr(p.size() - 4) == ".bin") || (p.size() > 4 && p.substr(p.size() - 4) == ".raw");
}

// Float feeds may come as float64/float16; integer inputs as int32. Anything else must match.
ir::Tensor convertFor(const ir::Value& input, ir::Tensor t, const std::string& file) {
  if (input.dtype == t.dtype() || input.dtype == ir::DType::kUndefined) return t;
  if (input.dtype == ir::DType::kFloat32 && ir::dtypeIsFloat(t.dtype())) return ir::Tensor::fromFloats(t.shape(), t.toFloats());
  if (input.dtype == ir::DType::kInt64 && ir::dtypeIsInteger(t.dtype())) return ir::Tensor::fromInt64s(t.shape(), t.toInt64s());
  throwInput(file + ": calibration data for input '" + input.name() + "' is " + ir::dtypeName(t.dtype()) +
             ", the model expects " + ir::dtypeName(input.dtype));
}

void checkShape(const ir::Value& input, const ir::Tensor& t, const std::string& file) {
  if (!input.shape) return;
  const auto& dims = *input.shape;
  if (dims.size() != t.shape().size())
    throwInput(file + ": calibration data for input '" + input.name() + "' has shape " + ir::shapeToString(t.shape()) +
               ", the model expects rank " + std::to_string(dims.size()) + " (first axis = samples)");
  for (size_t d = 1; d < dims.size(); ++d)
    if (dims[d].known() && dims[d].value != t.shape()[d])
      throwInput(file + ": calibration data for input '" + input.name() + "' has shape " + ir::shapeToString(t.shape()) +
                 ", dimension " + std::to_string(d) + " must be " + std::to_string(dims[d].value));
}

ir::Tensor synthesize(const ir::Value& input, int64_t samples, std::mt19937_64& rng) {
  if (!input.shape) throwUsage("synthetic calibration: input '" + input.name() + "' has no known rank");
  ir::Shape shape{samples};
  for (size_t d = 1; d < input.shape->size(); ++d) {
    const auto& dim = (*input.shape)[d];
    if (!dim.known()) throwUsage("synthetic calibration: input '" + input.name() + "' dimension " + std::to_string(d) + " ('" + dim.symbol + "') is not fixed; give real calibration data");
    shape.push_back(dim.value);
  }
  if (input.dtype == ir::DType::kFloat32) {
    ir::Tensor t(ir::DType::kFloat32, shape);
    std::normal_distribution<float> nd(0.f, 1.f);
    float* p = t.mutableData<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = nd(rng);
    return t;
  }
  throwUsage("synthetic calibration: input '" + input.name() + "' is " + ir::dtypeName(input.dtype) +
             "; only float32 inputs can be synthesized (give token data for language models)");
}

}  // namespace

std::vector<int64_t> parseShape(const std::string& s, const std::string& what) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t x = s.find('x', pos);
    const std::string part = s.substr(pos, x == std::string::npos ? std::string::npos : x - pos);
    try {
      size_t used = 0;
      const long long v = std::stoll(part, &used);
      if (used != part.size() || v <= 0) throw std::invalid_argument(part);
      out.push_back(v);
    } catch (const std::exception&) {
      throwUsage(what + ": '" + s + "' is not a shape like 64x128");
    }
    if (x == std::string::npos) break;
    pos = x + 1;
  }
  return out;
}

CalibrationSet CalibrationSet::load(const CalibrationSpec& spec, const ir::Graph& graph, const TensorFileReader& reader) {
  const TensorFileReader readTensorFile = reader ? reader : TensorFileReader(calib::readTensorFile);
  CalibrationSet set;
  set.batch_size_ = spec.batch_size > 0 ? spec.batch_size : 8;
  const auto inputs = graph.realInputs();
  std::map<std::string, std::pair<ir::Tensor, std::string>> found;  // name -> tensor, file
  auto findInput = [&](const std::string& name, const std::string& file) -> const ir::Value* {
    for (ir::Value* v : inputs)
      if (v->name() == name) return v;
    std::string names;
    for (ir::Value* v : inputs) names += (names.empty() ? "" : ", ") + v->name();
    throwInput(file + ": the model has no input '" + name + "' (inputs: " + names + ")");
  };
  for (const auto& [name, file] : spec.named_files) {
    const ir::Value* in = findInput(name, file);
    ir::Tensor t = isRaw(file) ? readRaw(*in, file, spec.tokens_shape) : readTensorFile(file, name);
    found[name] = {convertFor(*in, std::move(t), file), file};
  }
  if (!spec.dir.empty()) {
    for (ir::Value* in : inputs) {
      if (found.count(in->name())) continue;
      for (const char* ext : {".npy", ".pb", ".npz"}) {
        const std::string p = spec.dir + "/" + in->name() + ext;
        if (isFile(p)) {
          found[in->name()] = {convertFor(*in, readTensorFile(p, in->name()), p), p};
          break;
        }
      }
    }
  }
  if (!spec.tokens.empty()) {
    const ir::Value* target = nullptr;
    for (ir::Value* in : inputs)
      if (!found.count(in->name()) && ir::dtypeIsInteger(in->dtype)) {
        if (target) throwUsage(spec.tokens + ": the model has several integer inputs; name one with --calib NAME=FILE");
        target = in;
      }
    if (!target) throwUsage(spec.tokens + ": the model has no integer input left to feed tokens to");
    found[target->name()] = {convertFor(*target, readTokens(spec.tokens, spec.tokens_shape), spec.tokens), spec.tokens};
  }
  std::mt19937_64 rng(spec.seed);
  for (ir::Value* in : inputs) {
    if (found.count(in->name())) continue;
    if (!spec.synthetic) {
      throwInput("no calibration data for model input '" + in->name() + "'" +
                 (spec.dir.empty() ? "" : " (looked for " + spec.dir + "/" + in->name() + ".npy|.pb|.npz)") +
                 "; give --calib " + in->name() + "=FILE, or set \"calibration\": {\"synthetic\": true}");
    }
    found[in->name()] = {synthesize(*in, spec.synthetic_samples, rng), "<synthetic>"};
  }
  int64_t samples = -1;
  // Freed on every path: a bad input below throws.
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> state(XXH64_createState(), &XXH64_freeState);
  XXH64_state_t* h = state.get();
  XXH64_reset(h, 0);
  for (ir::Value* in : inputs) {
    auto& [t, file] = found.at(in->name());
    checkShape(*in, t, file);
    if (const int64_t bad = ir::firstNonFinite(t); bad >= 0)
      throwInput(file + ": calibration data for input '" + in->name() + "' holds " + ir::describeNonFinite(t, bad) +
                 " at index " + ir::indexToString(t.shape(), bad) + " (element " + std::to_string(bad) +
                 "); activations observed from it would be meaningless");
    if (t.rank() == 0) throwInput(file + ": calibration data for '" + in->name() + "' is a scalar; the first axis must count samples");
    const int64_t n = t.shape()[0];
    if (samples >= 0 && n != samples)
      throwInput(file + ": input '" + in->name() + "' has " + std::to_string(n) + " samples, other inputs have " + std::to_string(samples));
    samples = n;
    if (spec.samples > 0 && spec.samples < samples) {
      ir::Shape s = t.shape();
      s[0] = spec.samples;
      t = ir::Tensor::view(t.dtype(), s, t.data(), ir::dtypeStorageBytes(t.dtype(), ir::shapeNumel(s)), std::shared_ptr<const void>(std::make_shared<ir::Tensor>(t), t.data()));
    }
    XXH64_update(h, in->name().data(), in->name().size());
    const int32_t dt = static_cast<int32_t>(t.dtype());
    XXH64_update(h, &dt, sizeof dt);
    XXH64_update(h, t.shape().data(), t.shape().size() * sizeof(int64_t));
    XXH64_update(h, t.data(), t.nbytes());
    set.source_ += (set.source_.empty() ? "" : ", ") + in->name() + " " + ir::dtypeName(t.dtype()) + ir::shapeToString(t.shape()) + " from " + file;
    set.inputs_.emplace_back(in->name(), t);
  }
  set.digest_ = hex64(XXH64_digest(h));
  set.samples_ = std::max<int64_t>(samples, 0);
  if (spec.samples > 0) set.samples_ = std::min(set.samples_, spec.samples);
  if (set.samples_ == 0) throwInput("calibration data holds no samples");
  return set;
}

std::map<std::string, ir::Tensor> CalibrationSet::batch(int64_t i) const {
  std::map<std::string, ir::Tensor> feeds;
  const int64_t begin = i * batch_size_, end = std::min(samples_, begin + batch_size_);
  for (const auto& [name, t] : inputs_) {
    ir::Shape s = t.shape();
    const int64_t per = ir::shapeNumel(s) / s[0];
    s[0] = end - begin;
    const size_t off = ir::dtypeStorageBytes(t.dtype(), begin * per);
    const size_t n = ir::dtypeStorageBytes(t.dtype(), (end - begin) * per);
    feeds[name] = ir::Tensor::view(t.dtype(), s, static_cast<const char*>(t.data()) + off, n,
                                   std::shared_ptr<const void>(std::make_shared<ir::Tensor>(t), t.data()));
  }
  return feeds;
}

std::string CalibrationSet::describe() const {
  return std::to_string(samples_) + " samples in batches of " + std::to_string(batch_size_) + ": " + source_;
}

}  // namespace ptq::calib
