// Weight lowering of legalize (legalize.h): QuantizedWeight annotations -> DequantizeLinear or
// MatMulNBits, in every graph of the model.
#include <algorithm>
#include <cstring>
#include <set>

#include "lib/quant/bitpack.h"
#include "lib/quant/byte_transpose.h"
#include "lib/util/error.h"
#include "passes/legalize/legalize.h"
#include "passes/legalize/opset_upgrade.h"

namespace ptq::legalize {

using ir::DType;
using ir::Tensor;
using ir::Value;
using QW = ir::QuantizedWeight;

namespace {

bool isPow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// Whether a subgraph of `g` (at any depth) reads `name` from an enclosing scope.
bool readByName(const ir::Graph& g, const std::string& name) {
  for (const ir::Node* n : g.nodes())
    for (const auto& [key, attr] : n->attrs) {
      (void)key;
      std::vector<std::shared_ptr<ir::Graph>> subs = attr.graphs;
      if (attr.g) subs.push_back(attr.g);
      for (const auto& sub : subs) {
        if (!sub) continue;
        const ir::Value* v = sub->findValue(name);
        if (v && v->kind() == ir::Value::Kind::kOuterScope) return true;
        if (!v && readByName(*sub, name)) return true;  // a nested body may read it through this one
      }
    }
  return false;
}

// Every graph of the model: the main graph, then subgraphs depth first.
void collectGraphs(ir::Graph& g, std::vector<ir::Graph*>& out) {
  out.push_back(&g);
  for (ir::Node* n : g.nodes())
    for (auto& [key, attr] : n->attrs) {
      (void)key;
      if (attr.g) collectGraphs(*attr.g, out);
      for (auto& sub : attr.graphs)
        if (sub) collectGraphs(*sub, out);
    }
}

// Can every reader of this weight become a MatMulNBits?
bool fitsMatMulNBits(const ir::Graph& g, const Value* w) {
  const QW& q = *w->quant;
  if (readByName(g, w->name())) return false;  // read by a subgraph: keep one DequantizeLinear for all readers
  if (q.bits != 2 && q.bits != 4 && q.bits != 8) return false;
  if (q.granularity == quant::Granularity::kGroup && (q.axis != 0 || !isPow2(q.block_size) || q.block_size < 16))
    return false;
  if (q.granularity == quant::Granularity::kChannel && q.axis != 1) return false;
  if (w->uses().empty() || g.isGraphOutput(w)) return false;
  for (const auto& u : w->uses())
    if (u.node->opType() != "MatMul" || !u.node->domain().empty() || u.index != 1) return false;
  return true;
}

// Opset the DequantizeLinear form of this weight needs.
int64_t dqOpsetNeeded(const QW& q) {
  if (q.bits == 32) return q.granularity == quant::Granularity::kChannel ? 13 : 10;
  if (q.bits <= 4 || q.granularity == quant::Granularity::kGroup) return 21;
  if (q.granularity == quant::Granularity::kChannel) return 13;
  return 10;
}

// Codes (one per byte) in the DequantizeLinear container: int4/uint4 packed for <= 4 bits, else int8/uint8.
Tensor containerTensor(const Tensor& bytes, int bits, bool is_signed) {
  if (bits > 4) return bytes;  // already int8/uint8 (or int32 biases)
  const DType t = is_signed ? DType::kInt4 : DType::kUInt4;
  Tensor out(t, bytes.shape());
  quant::packBits(bytes.data<uint8_t>(), bytes.numel(), 4, out.mutableData<uint8_t>());
  return out;
}

int64_t containerBytes(const QW& q) {
  const int64_t n = q.codes.numel();
  const int64_t code_bytes = q.bits <= 4 ? (n + 1) / 2 : q.bits == 32 ? 4 * n : n;
  const int64_t s = q.scales.numel();
  const int64_t zp = q.zero_points.empty() ? 0 : (q.bits <= 4 ? (s + 1) / 2 : s);
  return code_bytes + 4 * s + zp;
}

class Lowering {
 public:
  Lowering(ir::Model& m, const LegalizeOptions& o, LegalizeResult& r) : model_(m), opts_(o), result_(r) {}

  void run() {
    std::vector<ir::Graph*> graphs;
    collectGraphs(*model_.graph, graphs);
    struct Item {
      ir::Graph* g;
      Value* w;
      bool nbits;
    };
    std::vector<Item> items;
    int64_t opset_needed = 0;
    for (ir::Graph* g : graphs)
      for (Value* v : g->initializers()) {
        if (!v->quant) continue;
        const bool nbits = opts_.prefer_matmulnbits && fitsMatMulNBits(*g, v);
        if (!nbits) opset_needed = std::max(opset_needed, dqOpsetNeeded(*v->quant));
        items.push_back({g, v, nbits});
      }
    if (items.empty()) return;
    const int64_t opset = model_.opsetVersion();
    if (opset_needed > opset) {
      upgradeOpset(model_, opset_needed);
      result_.warnings.push_back("the model's opset was raised from " + std::to_string(opset) + " to " +
                                 std::to_string(opset_needed) + " for the quantized weights' DequantizeLinear form");
    }
    bool any_nbits = false;
    for (const Item& it : items) {
      g_ = it.g;
      const int bits = it.w->quant->bits;  // read first: lowering may erase the value
      if (it.nbits) lowerToMatMulNBits(it.w);
      else lowerToDequantizeLinear(it.w);
      any_nbits = any_nbits || it.nbits;
      if (bits == 32) ++result_.int32_biases;
      // Raise ir_version for int4 initializers (IR 10 added them).
      if (!it.nbits && bits <= 4 && model_.ir_version < 10) model_.ir_version = 10;
    }
    if (any_nbits && model_.opsetVersion("com.microsoft") == 0) model_.setOpsetVersion("com.microsoft", 1);
    for (const Item& it : items) {
      if (erased_.count(it.w)) continue;
      it.w->quant.reset();
      if (it.w->uses().empty() && !it.g->isGraphOutput(it.w) && !readByName(*it.g, it.w->name())) it.g->eraseValue(it.w);
    }
  }

 private:
  void record(Value* w, const std::string& form, int64_t bytes_after) {
    result_.weights.push_back({w, w->name(), form, bytes_after});
  }

  ir::Node* firstNode() const {
    auto nodes = g_->nodes();
    return nodes.empty() ? nullptr : nodes.front();
  }

  void lowerToDequantizeLinear(Value* w) {
    const QW& q = *w->quant;
    record(w, "DequantizeLinear", containerBytes(q));
    const std::string base = w->name();
    Value* codes = g_->addInitializer(g_->uniqueName(base + "_quantized"), containerTensor(q.codes, q.bits, q.is_signed));
    Tensor scales = q.scales;
    if (q.granularity == quant::Granularity::kTensor) scales = scales.reshaped({});
    Value* scale = g_->addInitializer(g_->uniqueName(base + "_scale"), scales);
    std::vector<Value*> inputs{codes, scale};
    if (!q.zero_points.empty()) {
      Tensor zp = containerTensor(q.zero_points, q.bits, q.is_signed);
      if (q.granularity == quant::Granularity::kTensor) zp = zp.reshaped({});
      inputs.push_back(g_->addInitializer(g_->uniqueName(base + "_zero_point"), zp));
    }
    ir::Node* dq = g_->addNode("DequantizeLinear", inputs, {g_->uniqueName(base + "_dequantized")},
                              g_->uniqueName(base + "_DequantizeLinear"), "", firstNode());
    if (q.granularity != quant::Granularity::kTensor) dq->attrs["axis"] = ir::Attribute::ofInt(q.axis);
    if (q.granularity == quant::Granularity::kGroup) dq->attrs["block_size"] = ir::Attribute::ofInt(q.block_size);
    Value* out = dq->output(0);
    out->dtype = DType::kFloat32;
    out->shape = w->shape;
    g_->replaceAllUses(w, out);
    if (readByName(*g_, base)) {
      // Subgraphs read the weight by name: the dequantized value takes the name over.
      w->quant.reset();
      g_->eraseValue(w);
      erased_.insert(w);
      g_->renameValue(out, base);
    }
  }

  void lowerToMatMulNBits(Value* w) {
    const QW& q = *w->quant;
    const int64_t K = q.codes.shape()[0], N = q.codes.shape()[1];
    const int bits = q.bits;
    const int64_t block = q.granularity == quant::Granularity::kGroup ? q.block_size : std::min<int64_t>(128, std::max<int64_t>(16, pow2AtLeast(K)));
    const int64_t k_blocks = (K + block - 1) / block;
    const int64_t blob = block * bits / 8;
    const int32_t offset = q.is_signed ? (1 << (bits - 1)) : 0;  // MatMulNBits codes are unsigned

    // B: [N, k_blocks, blob], codes of column n along K, low bits first, K padded with zeros.
    Tensor b(DType::kUInt8, {N, k_blocks, blob});
    uint8_t* bp = b.mutableData<uint8_t>();
    // Columns are read kColumnTile at a time, a cache line of each code row: reading one column
    // of [K, N] at a time touched a cache line per code (8% of a w4a16 quantize of GPT-2 small).
    constexpr int64_t kColumnTile = 64;
    const int64_t padded = k_blocks * block;
    std::vector<uint8_t> columns(static_cast<size_t>(kColumnTile * padded), 0);
    const uint8_t* codes = q.codes.data<uint8_t>();
    // A code's unsigned value is its byte plus the offset, modulo 256 (a signed code is stored as
    // its two's complement byte), so the offset is added after the transpose.
    for (int64_t n0 = 0; n0 < N; n0 += kColumnTile) {
      const int64_t tn = std::min(kColumnTile, N - n0);
      const int64_t tn16 = tn / 16 * 16, k16 = K / 16 * 16;
      for (int64_t k = 0; k < k16; k += 16)
        for (int64_t c = 0; c < tn16; c += 16)
          quant::transposeBytes16x16(codes + k * N + n0 + c, N, columns.data() + c * padded + k, padded);
      for (int64_t k = 0; k < K; ++k) {
        const uint8_t* row = codes + k * N + n0;
        for (int64_t c = k < k16 ? tn16 : 0; c < tn; ++c) columns[static_cast<size_t>(c * padded + k)] = row[c];
      }
      for (int64_t c = 0; c < tn; ++c) {
        uint8_t* column = columns.data() + c * padded;
        if (offset)
          for (int64_t k = 0; k < K; ++k) column[k] = static_cast<uint8_t>(column[k] + offset);
        quant::packBits(column, padded, bits, bp + (n0 + c) * k_blocks * blob);
      }
    }
    // scales: [N, k_blocks]
    Tensor scales(DType::kFloat32, {N, k_blocks});
    float* sp = scales.mutableData<float>();
    const float* qs = q.scales.data<float>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t kb = 0; kb < k_blocks; ++kb)
        sp[n * k_blocks + kb] = q.granularity == quant::Granularity::kGroup ? qs[kb * N + n]
                                : q.granularity == quant::Granularity::kChannel ? qs[n] : qs[0];
    const std::string base = w->name();
    std::vector<Value*> extra{g_->addInitializer(g_->uniqueName(base + "_nbits"), b),
                              g_->addInitializer(g_->uniqueName(base + "_scales"), scales)};
    int64_t bytes = static_cast<int64_t>(b.nbytes() + scales.nbytes());
    if (!q.zero_points.empty()) {
      // Packed uint8 zero points: [N, ceil(k_blocks * bits / 8)].
      const int64_t zp_bytes = (k_blocks * bits + 7) / 8;
      Tensor zp(DType::kUInt8, {N, zp_bytes});
      std::vector<uint8_t> row(static_cast<size_t>(k_blocks));
      const uint8_t* qz = q.zero_points.data<uint8_t>();
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t kb = 0; kb < k_blocks; ++kb) {
          const uint8_t byte = q.granularity == quant::Granularity::kGroup ? qz[kb * N + n]
                               : q.granularity == quant::Granularity::kChannel ? qz[n] : qz[0];
          row[static_cast<size_t>(kb)] = static_cast<uint8_t>(codeValue(byte, q.is_signed) + offset);
        }
        quant::packBits(row.data(), k_blocks, bits, zp.mutableData<uint8_t>() + n * zp_bytes);
      }
      extra.push_back(g_->addInitializer(g_->uniqueName(base + "_zero_points"), zp));
      bytes += static_cast<int64_t>(zp.nbytes());
    }
    record(w, "MatMulNBits", bytes);
    const auto uses = w->uses();
    for (const auto& u : uses) {
      ir::Node* mm = u.node;
      std::vector<Value*> inputs{mm->input(0)};
      inputs.insert(inputs.end(), extra.begin(), extra.end());
      ir::Node* nb = g_->replaceNode(mm, "MatMulNBits", inputs, "com.microsoft");
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
  ir::Graph* g_ = nullptr;
  const LegalizeOptions& opts_;
  LegalizeResult& result_;
  std::set<const Value*> erased_;
};

}  // namespace

void lowerQuantizedWeights(ir::Model& model, const LegalizeOptions& opts, LegalizeResult& result) {
  Lowering(model, opts, result).run();
}

}  // namespace ptq::legalize
