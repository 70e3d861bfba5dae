// .ptq writer (format: ptq_file.h).
#include <cstring>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "formats/onnx/onnx_io.h"
#include "formats/packed/ptq_file.h"
#include "lib/quant/bitpack.h"
#include "lib/util/atomic_file.h"
#include "lib/util/error.h"
#include "lib/util/file_pages.h"
#include "lib/util/hash.h"

namespace ptq::packed {

using nlohmann::json;

namespace {

constexpr size_t kInlineBelowBytes = 4096;

uint64_t alignUp(uint64_t v) { return (v + kPtqAlign - 1) / kPtqAlign * kPtqAlign; }

// Blobs in file order; each either borrows bytes (a weight that outlives the write) or owns them.
class BlobList {
 public:
  size_t add(const std::string& name, const void* data, size_t n) {
    Blob b{name, static_cast<const uint8_t*>(data), n, nullptr, offset_};
    offset_ = alignUp(offset_ + n);
    blobs_.push_back(std::move(b));
    return blobs_.size() - 1;
  }
  size_t addOwned(const std::string& name, std::vector<uint8_t> bytes) {
    auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
    const size_t i = add(name, owned->data(), owned->size());
    blobs_[i].owned = owned;
    return i;
  }
  uint64_t offsetOf(size_t i) const { return blobs_[i].offset; }
  json describe() const {
    json a = json::array();
    for (const auto& b : blobs_)
      a.push_back({{"name", b.name}, {"offset", b.offset}, {"bytes", b.size}, {"xxh64", hex64(XXH64(b.data, b.size, 0))}});
    return a;
  }
  uint64_t end() const { return blobs_.empty() ? 0 : blobs_.back().offset + blobs_.back().size; }
  uint64_t payload() const {
    uint64_t n = 0;
    for (const auto& b : blobs_) n += b.size;
    return n;
  }
  void writeTo(AtomicFile& f) const {
    static const uint8_t zeros[kPtqAlign] = {};
    uint64_t at = 0;
    for (const auto& b : blobs_) {
      if (b.offset > at) f.write(zeros, b.offset - at);
      f.write(b.data, b.size);
      util::releaseFilePages(b.data, b.size);  // a borrowed weight of a mapped external-data file
      at = b.offset + b.size;
    }
  }

 private:
  struct Blob {
    std::string name;
    const uint8_t* data;
    size_t size;
    std::shared_ptr<std::vector<uint8_t>> owned;
    uint64_t offset;
  };
  std::vector<Blob> blobs_;
  uint64_t offset_ = 0;
};

std::vector<uint8_t> packCodes(const ir::Tensor& codes, int bits) {
  std::vector<uint8_t> out(static_cast<size_t>(quant::packedBytes(codes.numel(), bits)));
  quant::packBits(codes.data<uint8_t>(), codes.numel(), bits, out.data());
  return out;
}

// The file's spelling (format version 1 says "block" where the tool says "group").
const char* fileGranularityName(quant::Granularity g) {
  switch (g) {
    case quant::Granularity::kTensor: return "tensor";
    case quant::Granularity::kChannel: return "channel";
    case quant::Granularity::kGroup: return "block";
  }
  return "?";
}

}  // namespace

PackStats writePacked(const ir::Model& model, const std::string& path, const Provenance& prov,
                      const std::string& output_form) {
  BlobList blobs;
  json quantized = json::array();
  // Float weights first: the graph needs their placements.
  const std::string location = "ptq-data-section";
  // Weights' codes are stored; int32 bias annotations (bits 32) are not: the file keeps the float
  // bias, and unpack's legalize derives the same int32 codes from the weight and activation scales.
  auto stored = [](const ir::Value& v) { return v.quant && v.quant->bits <= 8; };
  auto place = [&](const ir::Value& v) -> std::optional<onnx_io::TensorPlacement> {
    if (stored(v)) return std::nullopt;  // carried by the quantized blobs instead
    // Small tensors (norm scales, biases, shape constants) ride inside the graph blob: a blob of
    // their own would cost more in header and alignment than it holds.
    if (v.initializer.dtype() == ir::DType::kString || v.initializer.nbytes() < kInlineBelowBytes)
      return onnx_io::TensorPlacement{true, "", 0, 0};
    const size_t i = blobs.add("tensor:" + v.name(), v.initializer.bytes(), v.initializer.nbytes());
    return onnx_io::TensorPlacement{false, location, blobs.offsetOf(i), v.initializer.nbytes()};
  };
  for (ir::Value* v : model.graph->initializers()) {
    if (!stored(*v)) continue;
    const ir::QuantizedWeight& q = *v->quant;
    json e{{"name", v->name()}, {"shape", v->initializer.shape()}, {"bits", q.bits}, {"signed", q.is_signed},
           {"symmetric", q.symmetric}, {"granularity", fileGranularityName(q.granularity)}, {"axis", q.axis},
           {"block_size", q.block_size}, {"method", q.method}, {"scale_shape", q.scales.shape()}, {"mse", q.mse},
           {"sqnr_db", q.sqnr_db}};
    e["codes"] = blobs.addOwned("codes:" + v->name(), packCodes(q.codes, q.bits));
    e["scales"] = blobs.add("scales:" + v->name(), q.scales.data(), q.scales.nbytes());
    e["zero_points"] = q.zero_points.empty() ? json(nullptr) : json(blobs.addOwned("zero_points:" + v->name(), packCodes(q.zero_points, q.bits)));
    quantized.push_back(e);
  }
  // Activation quantization parameters (qdq pass): per-tensor scale and zero point as numbers.
  json activations = json::array();
  bool any_dynamic = false;
  auto addActivation = [&](const ir::Value* v) {
    if (!v || !v->act_quant) return;
    const ir::ActivationQuant& a = *v->act_quant;
    if (a.dynamic) {
      activations.push_back({{"name", v->name()}, {"dtype", static_cast<int>(a.dtype)}, {"dynamic", true},
                             {"per_token", a.per_token}});
      any_dynamic = true;
      return;
    }
    const int64_t zero = a.zero_point.toInt64s().at(0);
    activations.push_back({{"name", v->name()}, {"dtype", static_cast<int>(a.dtype)}, {"scale", a.scale.data<float>()[0]},
                           {"zero_point", zero}});
  };
  for (ir::Value* v : model.graph->inputs()) addActivation(v);
  for (ir::Node* n : model.graph->nodes())
    for (ir::Value* v : n->outputs()) addActivation(v);
  const uint32_t version = any_dynamic ? kPtqVersion : kPtqVersionStatic;
  const std::string graph_bytes = onnx_io::serializeModelWithPlacement(model, place);
  const size_t graph_blob = blobs.add("graph", graph_bytes.data(), graph_bytes.size());

  json inputs = json::array(), outputs = json::array();
  for (ir::Value* v : model.graph->realInputs()) inputs.push_back(v->name());
  for (ir::Value* v : model.graph->outputs()) outputs.push_back(v->name());
  json header{{"format", "ptq-packed"},
              {"version", version},
              {"provenance",
               {{"tool_version", prov.tool_version},
                {"config", prov.config_json.empty() ? json::object() : json::parse(prov.config_json)},
                {"seed", prov.seed},
                {"source", prov.source},
                {"source_bytes", prov.source_bytes},
                {"calibration_digest", prov.calibration_digest.empty() ? json(nullptr) : json(prov.calibration_digest)}}},
              {"output_form", output_form},
              {"graph",
               {{"blob", graph_blob}, {"encoding", "onnx.ModelProto"}, {"nodes", model.graph->numNodes()},
                {"inputs", inputs}, {"outputs", outputs}}},
              {"quantized", quantized},
              {"activations", activations},
              {"blobs", blobs.describe()}};
  const std::string header_text = header.dump();

  AtomicFile f(path);
  uint8_t pre[32] = {};
  std::memcpy(pre, kPtqMagic, 8);
  const uint32_t flags = 0;
  const uint64_t header_bytes = header_text.size(), header_hash = XXH64(header_text.data(), header_text.size(), 0);
  std::memcpy(pre + 8, &version, 4);
  std::memcpy(pre + 12, &flags, 4);
  std::memcpy(pre + 16, &header_bytes, 8);
  std::memcpy(pre + 24, &header_hash, 8);
  f.write(pre, sizeof pre);
  f.write(header_text);
  const uint64_t data_start = alignUp(32 + header_bytes);
  static const uint8_t zeros[kPtqAlign] = {};
  f.write(zeros, data_start - 32 - header_bytes);
  blobs.writeTo(f);
  f.commit();
  PackStats st;
  st.payload_bytes = blobs.payload();
  st.file_bytes = data_start + blobs.end();
  return st;
}

}  // namespace ptq::packed
