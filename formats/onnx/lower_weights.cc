#include "formats/onnx/lower_weights.h"

#include <algorithm>
#include <cstring>

#include "formats/onnx/opset_upgrade.h"
#include "lib/quant/bitpack.h"
#include "lib/util/error.h"

namespace ptq::onnx_io {

using ir::DType;
using ir::Tensor;
using ir::Value;
using QW = ir::QuantizedWeight;

namespace {

bool isPow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

std::string granularityName(const QW& q) {
  switch (q.granularity) {
    case QW::Granularity::kPerTensor: return "tensor";
    case QW::Granularity::kPerChannel: return "channel";
    case QW::Granularity::kBlocked: return "group";
  }
  return "?";
}

// Can every reader of this weight become a MatMulNBits?
bool fitsMatMulNBits(const ir::Graph& g, const Value* w) {
  const QW& q = *w->quant;
  if (q.bits != 2 && q.bits != 4 && q.bits != 8) return false;
  if (q.granularity == QW::Granularity::kBlocked && (q.axis != 0 || !isPow2(q.block_size) || q.block_size < 16))
    return false;
  if (q.granularity == QW::Granularity::kPerChannel && q.axis != 1) return false;
  if (w->uses().empty() || g.isGraphOutput(w)) return false;
  for (const auto& u : w->uses())
    if (u.node->opType() != "MatMul" || !u.node->domain().empty() || u.index != 1) return false;
  return true;
}

// Opset the DequantizeLinear form of this weight needs.
int64_t dqOpsetNeeded(const QW& q) {
  if (q.bits <= 4 || q.granularity == QW::Granularity::kBlocked) return 21;
  if (q.granularity == QW::Granularity::kPerChannel) return 13;
  return 10;
}

// Codes (one per byte) in the DequantizeLinear container: int4/uint4 packed for <= 4 bits, else int8/uint8.
Tensor containerTensor(const Tensor& bytes, int bits, bool is_signed) {
  if (bits > 4) return bytes;  // already int8/uint8
  const DType t = is_signed ? DType::kInt4 : DType::kUInt4;
  Tensor out(t, bytes.shape());
  quant::packBits(bytes.data<uint8_t>(), bytes.numel(), 4, out.mutableData<uint8_t>());
  return out;
}

int64_t containerBytes(const QW& q) {
  const int64_t n = q.codes.numel();
  const int64_t code_bytes = q.bits <= 4 ? (n + 1) / 2 : n;
  const int64_t s = q.scales.numel();
  const int64_t zp = q.zero_points.empty() ? 0 : (q.bits <= 4 ? (s + 1) / 2 : s);
  return code_bytes + 4 * s + zp;
}

class Lowering {
 public:
  Lowering(ir::Model& m, const LoweringOptions& o, pipeline::Report& r) : model_(m), g_(*m.graph), opts_(o), report_(r) {}

  void run() {
    std::vector<Value*> weights;
    for (Value* v : g_.initializers())
      if (v->quant) weights.push_back(v);
    if (weights.empty()) return;
    std::vector<Value*> as_nbits, as_dq;
    int64_t opset_needed = 0;
    for (Value* w : weights) {
      if (opts_.prefer_matmulnbits && fitsMatMulNBits(g_, w)) {
        as_nbits.push_back(w);
      } else {
        as_dq.push_back(w);
        opset_needed = std::max(opset_needed, dqOpsetNeeded(*w->quant));
      }
    }
    const int64_t opset = model_.opsetVersion();
    if (opset_needed > opset) {
      upgradeOpset(model_, opset_needed);
      report_.warnings.push_back("the model's opset was raised from " + std::to_string(opset) + " to " +
                                 std::to_string(opset_needed) + " for the quantized weights' DequantizeLinear form");
    }
    for (Value* w : as_nbits) lowerToMatMulNBits(w);
    for (Value* w : as_dq) lowerToDequantizeLinear(w);
    if (!as_nbits.empty() && model_.opsetVersion("com.microsoft") == 0) model_.setOpsetVersion("com.microsoft", 1);
    // Raise ir_version for int4 initializers (IR 10 added them).
    for (Value* w : as_dq)
      if (w->quant->bits <= 4 && model_.ir_version < 10) model_.ir_version = 10;
    for (Value* w : weights) {
      w->quant.reset();
      if (w->uses().empty() && !g_.isGraphOutput(w)) g_.eraseValue(w);
    }
  }

 private:
  void record(Value* w, const std::string& form, int64_t bytes_after) { recordQuantizedLayer(*w, form, bytes_after, report_); }

  ir::Node* firstNode() const {
    auto nodes = g_.nodes();
    return nodes.empty() ? nullptr : nodes.front();
  }

  void lowerToDequantizeLinear(Value* w) {
    const QW& q = *w->quant;
    record(w, "DequantizeLinear", containerBytes(q));
    const std::string base = w->name();
    Value* codes = g_.addInitializer(g_.uniqueName(base + "_quantized"), containerTensor(q.codes, q.bits, q.is_signed));
    Tensor scales = q.scales;
    if (q.granularity == QW::Granularity::kPerTensor) scales = scales.reshaped({});
    Value* scale = g_.addInitializer(g_.uniqueName(base + "_scale"), scales);
    std::vector<Value*> inputs{codes, scale};
    if (!q.zero_points.empty()) {
      Tensor zp = containerTensor(q.zero_points, q.bits, q.is_signed);
      if (q.granularity == QW::Granularity::kPerTensor) zp = zp.reshaped({});
      inputs.push_back(g_.addInitializer(g_.uniqueName(base + "_zero_point"), zp));
    }
    ir::Node* dq = g_.addNode("DequantizeLinear", inputs, {g_.uniqueName(base + "_dequantized")},
                              g_.uniqueName(base + "_DequantizeLinear"), "", firstNode());
    if (q.granularity != QW::Granularity::kPerTensor) dq->attrs["axis"] = ir::Attribute::ofInt(q.axis);
    if (q.granularity == QW::Granularity::kBlocked) dq->attrs["block_size"] = ir::Attribute::ofInt(q.block_size);
    Value* out = dq->output(0);
    out->dtype = DType::kFloat32;
    out->shape = w->shape;
    g_.replaceAllUses(w, out);
  }

  void lowerToMatMulNBits(Value* w) {
    const QW& q = *w->quant;
    const int64_t K = q.codes.shape()[0], N = q.codes.shape()[1];
    const int bits = q.bits;
    const int64_t block = q.granularity == QW::Granularity::kBlocked ? q.block_size : std::min<int64_t>(128, std::max<int64_t>(16, pow2AtLeast(K)));
    const int64_t k_blocks = (K + block - 1) / block;
    const int64_t blob = block * bits / 8;
    const int32_t offset = q.is_signed ? (1 << (bits - 1)) : 0;  // MatMulNBits codes are unsigned

    // B: [N, k_blocks, blob], codes of column n along K, low bits first, K padded with zeros.
    Tensor b(DType::kUInt8, {N, k_blocks, blob});
    uint8_t* bp = b.mutableData<uint8_t>();
    std::vector<uint8_t> column(static_cast<size_t>(k_blocks * block), 0);
    const uint8_t* codes = q.codes.data<uint8_t>();
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k)
        column[static_cast<size_t>(k)] = static_cast<uint8_t>(codeValue(codes[k * N + n], q.is_signed) + offset);
      quant::packBits(column.data(), k_blocks * block, bits, bp + n * k_blocks * blob);
    }
    // scales: [N, k_blocks]
    Tensor scales(DType::kFloat32, {N, k_blocks});
    float* sp = scales.mutableData<float>();
    const float* qs = q.scales.data<float>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t kb = 0; kb < k_blocks; ++kb)
        sp[n * k_blocks + kb] = q.granularity == QW::Granularity::kBlocked ? qs[kb * N + n]
                                : q.granularity == QW::Granularity::kPerChannel ? qs[n] : qs[0];
    const std::string base = w->name();
    std::vector<Value*> extra{g_.addInitializer(g_.uniqueName(base + "_nbits"), b),
                              g_.addInitializer(g_.uniqueName(base + "_scales"), scales)};
    int64_t bytes = static_cast<int64_t>(b.nbytes() + scales.nbytes());
    if (!q.zero_points.empty()) {
      // Packed uint8 zero points: [N, ceil(k_blocks * bits / 8)].
      const int64_t zp_bytes = (k_blocks * bits + 7) / 8;
      Tensor zp(DType::kUInt8, {N, zp_bytes});
      std::vector<uint8_t> row(static_cast<size_t>(k_blocks));
      const uint8_t* qz = q.zero_points.data<uint8_t>();
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t kb = 0; kb < k_blocks; ++kb) {
          const uint8_t byte = q.granularity == QW::Granularity::kBlocked ? qz[kb * N + n]
                               : q.granularity == QW::Granularity::kPerChannel ? qz[n] : qz[0];
          row[static_cast<size_t>(kb)] = static_cast<uint8_t>(codeValue(byte, q.is_signed) + offset);
        }
        quant::packBits(row.data(), k_blocks, bits, zp.mutableData<uint8_t>() + n * zp_bytes);
      }
      extra.push_back(g_.addInitializer(g_.uniqueName(base + "_zero_points"), zp));
      bytes += static_cast<int64_t>(zp.nbytes());
    }
    record(w, "MatMulNBits", bytes);
    const auto uses = w->uses();
    for (const auto& u : uses) {
      ir::Node* mm = u.node;
      std::vector<Value*> inputs{mm->input(0)};
      inputs.insert(inputs.end(), extra.begin(), extra.end());
      ir::Node* nb = g_.replaceNode(mm, "MatMulNBits", inputs, "com.microsoft");
      nb->attrs["K"] = ir::Attribute::ofInt(K);
      nb->attrs["N"] = ir::Attribute::ofInt(N);
      nb->attrs["bits"] = ir::Attribute::ofInt(bits);
      nb->attrs["block_size"] = ir::Attribute::ofInt(block);
      if (opts_.matmulnbits_accuracy_level)
        nb->attrs["accuracy_level"] = ir::Attribute::ofInt(opts_.matmulnbits_accuracy_level);
    }
  }

  static int32_t codeValue(uint8_t byte, bool is_signed) {
    return is_signed ? static_cast<int32_t>(static_cast<int8_t>(byte)) : static_cast<int32_t>(byte);
  }
  static int64_t pow2AtLeast(int64_t v) {
    int64_t p = 1;
    while (p < v) p <<= 1;
    return p;
  }

  ir::Model& model_;
  ir::Graph& g_;
  const LoweringOptions& opts_;
  pipeline::Report& report_;
};

}  // namespace

void recordQuantizedLayer(const ir::Value& w, const std::string& form, int64_t bytes_after, pipeline::Report& report) {
  const QW& q = *w.quant;
  pipeline::LayerRecord r;
  const ir::Node* reader = w.uses().empty() ? nullptr : w.uses()[0].node;
  r.node = reader ? reader->name : "";
  r.op_type = reader ? reader->opType() : "";
  r.weight = w.name();
  r.shape = w.initializer.shape();
  r.action = "quantized (" + (q.method.empty() ? std::string("rtn") : q.method) + ")";
  r.bits = q.bits;
  r.granularity = granularityName(q);
  r.group_size = q.block_size;
  r.symmetric = q.symmetric;
  r.mse = q.mse;
  r.sqnr_db = q.sqnr_db;
  r.bytes_before = static_cast<int64_t>(w.initializer.nbytes());
  r.bytes_after = bytes_after;
  r.form = form;
  if (pipeline::LayerRecord* existing = report.findLayer(w.name())) *existing = r;
  else report.layers.push_back(r);
}

void lowerQuantizedWeights(ir::Model& model, const LoweringOptions& opts, pipeline::Report& report) {
  Lowering(model, opts, report).run();
}

}  // namespace ptq::onnx_io
