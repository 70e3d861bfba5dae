// QuantizeLinear / DequantizeLinear (per-tensor, per-axis, and opset-21 block-wise; int8, uint8,
// int16, uint16, int32 (dequantize only), int4 and uint4 packed two per byte, low nibble first) and
// com.microsoft MatMulNBits (2/4/8-bit weights, packed or float zero points, optional bias): the
// weight is dequantized per call into a scratch matrix and multiplied by GEMM, so peak memory stays
// at the packed weights plus one dense layer.
#include <cmath>
#include <limits>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {

bool isQuantType(DType t) {
  return t == DType::kInt8 || t == DType::kUInt8 || t == DType::kInt16 || t == DType::kUInt16 || t == DType::kInt4 ||
         t == DType::kUInt4;
}

void qrange(DType t, int32_t* lo, int32_t* hi) {
  switch (t) {
    case DType::kInt8: *lo = -128; *hi = 127; return;
    case DType::kUInt8: *lo = 0; *hi = 255; return;
    case DType::kInt16: *lo = -32768; *hi = 32767; return;
    case DType::kUInt16: *lo = 0; *hi = 65535; return;
    case DType::kInt4: *lo = -8; *hi = 7; return;
    case DType::kUInt4: *lo = 0; *hi = 15; return;
    default: *lo = std::numeric_limits<int32_t>::min(); *hi = std::numeric_limits<int32_t>::max(); return;
  }
}

// Integer tensor (incl. packed 4-bit) -> int32 values.
std::vector<int32_t> readInts32(const Tensor& t) {
  const int64_t n = t.numel();
  std::vector<int32_t> v(static_cast<size_t>(n));
  const uint8_t* p = static_cast<const uint8_t*>(t.data());
  switch (t.dtype()) {
    case DType::kInt8: for (int64_t i = 0; i < n; ++i) v[i] = reinterpret_cast<const int8_t*>(p)[i]; break;
    case DType::kUInt8: for (int64_t i = 0; i < n; ++i) v[i] = p[i]; break;
    case DType::kInt16: for (int64_t i = 0; i < n; ++i) v[i] = t.data<int16_t>()[i]; break;
    case DType::kUInt16: for (int64_t i = 0; i < n; ++i) v[i] = t.data<uint16_t>()[i]; break;
    case DType::kInt32: for (int64_t i = 0; i < n; ++i) v[i] = t.data<int32_t>()[i]; break;
    case DType::kInt4: case DType::kUInt4:
      for (int64_t i = 0; i < n; ++i) {
        int32_t q = (i & 1) ? (p[i / 2] >> 4) : (p[i / 2] & 0xf);
        if (t.dtype() == DType::kInt4 && q >= 8) q -= 16;
        v[i] = q;
      }
      break;
    default: runError("cannot read " + ir::dtypeName(t.dtype()) + " as quantized integers");
  }
  return v;
}

// How a scale/zero-point tensor maps onto x: index of the parameter for element (o, a, i).
struct ParamLayout {
  int64_t outer = 1, len = 1, inner = 1;  // x viewed as [outer, len, inner] around `axis`
  int64_t block = 0;                      // 0: per-tensor or per-axis; else block-wise along axis
  bool per_tensor = true;
  int64_t nblocks = 1;
  int64_t index(int64_t o, int64_t a, int64_t i) const {
    if (per_tensor) return 0;
    if (block == 0) return a;
    return (o * nblocks + a / block) * inner + i;
  }
};

ParamLayout layoutFor(const Tensor& x, const Tensor& scale, int64_t axis_attr, int64_t block) {
  ParamLayout L;
  const int64_t r = x.rank();
  if (scale.numel() == 1 && block == 0) return L;
  L.per_tensor = false;
  const int64_t axis = normAxis(axis_attr, r);
  L.outer = dimProduct(x.shape(), 0, axis);
  L.len = x.shape()[axis];
  L.inner = dimProduct(x.shape(), axis + 1, r);
  if (block > 0) {
    L.block = block;
    L.nblocks = (L.len + block - 1) / block;
    Shape want = x.shape();
    want[axis] = L.nblocks;
    if (scale.shape() != want) runError("block-wise scale " + typeShape(scale) + " should be " + ir::shapeToString(want));
  } else if (scale.rank() != 1 || scale.numel() != L.len) {
    runError("per-axis scale " + typeShape(scale) + " does not match axis " + std::to_string(axis) + " of " + typeShape(x));
  }
  return L;
}

// Scale, zero point (0 when absent) and their layout, shared by QuantizeLinear and DequantizeLinear.
struct QuantParams {
  ParamLayout layout;
  std::vector<float> scale;
  std::vector<int32_t> zero;
};

QuantParams readQuantParams(const TensorList& in, int64_t axis, int64_t block) {
  const Tensor& scale = in[1];
  const bool has_zp = in.size() > 2 && !in[2].empty();
  QuantParams p;
  p.layout = layoutFor(in[0], scale, axis, block);
  if (has_zp && in[2].shape() != scale.shape()) runError("zero point " + typeShape(in[2]) + " differs from scale " + typeShape(scale));
  p.scale = scale.toFloats();
  p.zero = has_zp ? readInts32(in[2]) : std::vector<int32_t>(p.scale.size(), 0);
  return p;
}

void writeQuant(Tensor& y, const std::vector<int32_t>& q) {
  const int64_t n = static_cast<int64_t>(q.size());
  switch (y.dtype()) {
    case DType::kInt8: for (int64_t i = 0; i < n; ++i) outData<int8_t>(y)[i] = static_cast<int8_t>(q[i]); break;
    case DType::kUInt8: for (int64_t i = 0; i < n; ++i) outData<uint8_t>(y)[i] = static_cast<uint8_t>(q[i]); break;
    case DType::kInt16: for (int64_t i = 0; i < n; ++i) outData<int16_t>(y)[i] = static_cast<int16_t>(q[i]); break;
    case DType::kUInt16: for (int64_t i = 0; i < n; ++i) outData<uint16_t>(y)[i] = static_cast<uint16_t>(q[i]); break;
    default: {  // 4-bit
      uint8_t* p = outData<uint8_t>(y);
      std::fill_n(p, y.nbytes(), uint8_t{0});
      for (int64_t i = 0; i < n; ++i) p[i / 2] |= static_cast<uint8_t>((q[i] & 0xf) << ((i & 1) * 4));
    }
  }
}

}  // namespace

Tensor quantizeLinear(ExecContext& ctx, const TensorList& in, int64_t axis, int64_t block, DType out_t) {
  const Tensor& x = in[0];
  const QuantParams P = readQuantParams(in, axis, block);
  const ParamLayout& L = P.layout;
  const std::vector<float>& s = P.scale;
  const std::vector<int32_t>& zp = P.zero;
  int32_t lo, hi;
  qrange(out_t, &lo, &hi);
  const float* px = x.data<float>();
  std::vector<int32_t> q(static_cast<size_t>(x.numel()));
  const int64_t outer = L.per_tensor ? 1 : L.outer, len = L.per_tensor ? x.numel() : L.len, inner = L.per_tensor ? 1 : L.inner;
  parallelFor(ctx.threads(), outer * len, grainFor(inner), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / len, a = t % len;
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = L.index(o, a, i);
        // float32 division, as ONNX Runtime and the reference do (double would round 25.4999 vs 25.5)
        const double v = static_cast<double>(std::nearbyint(px[t * inner + i] / s[k])) + zp[k];
        q[t * inner + i] = static_cast<int32_t>(std::min<double>(std::max<double>(v, lo), hi));
      }
    }
  });
  Tensor y = ctx.alloc(out_t, x.shape());
  writeQuant(y, q);
  return y;
}

Tensor dequantizeLinear(ExecContext& ctx, const TensorList& in, int64_t axis, int64_t block) {
  const Tensor& x = in[0];
  const QuantParams P = readQuantParams(in, axis, block);
  const ParamLayout& L = P.layout;
  const std::vector<float>& s = P.scale;
  const std::vector<int32_t>& zp = P.zero;
  const std::vector<int32_t> q = readInts32(x);
  Tensor y = ctx.alloc(DType::kFloat32, x.shape());
  float* py = outData<float>(y);
  const int64_t outer = L.per_tensor ? 1 : L.outer, len = L.per_tensor ? x.numel() : L.len, inner = L.per_tensor ? 1 : L.inner;
  parallelFor(ctx.threads(), outer * len, grainFor(inner), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / len, a = t % len;
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = L.index(o, a, i);
        py[t * inner + i] = static_cast<float>(q[t * inner + i] - zp[k]) * s[k];
      }
    }
  });
  return y;
}

Kernel makeQuantizeLinear(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 3);
  info.requireType(0, {DType::kFloat32});
  info.requireType(1, {DType::kFloat32});
  DType out_t = DType::kUInt8;
  if (info.hasInput(2)) out_t = info.inType(2);
  else if (info.node.hasAttr("output_dtype")) out_t = static_cast<DType>(info.attrInt("output_dtype", 2));
  if (out_t == DType::kUndefined) info.unsupported("zero point dtype unknown at planning");
  if (!isQuantType(out_t)) info.unsupported("quantization to " + ir::dtypeName(out_t));
  const int64_t axis = info.attrInt("axis", 1), block = info.attrInt("block_size", 0);
  if (block < 0) info.unsupported("negative block_size");
  out_types = {out_t};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) { out[0] = quantizeLinear(ctx, in, axis, block, out_t); };
}

// DynamicQuantizeLinear: uint8, scale = (max(x,0) - min(x,0)) / 255, zero point rounded and clipped.
TensorList dynamicQuantizeLinear(ExecContext& ctx, const Tensor& x) {
  const float* px = x.data<float>();
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0, n = x.numel(); i < n; ++i) { lo = std::min(lo, px[i]); hi = std::max(hi, px[i]); }
  const float scale = (hi - lo) / 255.0f;
  const float zpf = scale == 0.0f ? 0.0f : std::nearbyint(std::min(255.0f, std::max(0.0f, 0.0f - lo / scale)));
  const int32_t zp = static_cast<int32_t>(zpf);
  Tensor y = ctx.alloc(DType::kUInt8, x.shape());
  for (int64_t i = 0, n = x.numel(); i < n; ++i) {
    const float q = scale == 0.0f ? 0.0f : std::nearbyint(px[i] / scale);
    outData<uint8_t>(y)[i] = static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, q + static_cast<float>(zp))));
  }
  Tensor s = ctx.alloc(DType::kFloat32, {});
  *outData<float>(s) = scale;
  Tensor z = ctx.alloc(DType::kUInt8, {});
  *outData<uint8_t>(z) = static_cast<uint8_t>(zp);
  return {std::move(y), std::move(s), std::move(z)};
}

Kernel makeDynamicQuantizeLinear(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1);
  info.requireType(0, {DType::kFloat32});
  out_types = {DType::kUInt8, DType::kFloat32, DType::kUInt8};
  return [](ExecContext& ctx, TensorList& in, TensorList& out) {
    TensorList r = dynamicQuantizeLinear(ctx, in[0]);
    for (size_t k = 0; k < out.size() && k < r.size(); ++k) out[k] = std::move(r[k]);
  };
}

Kernel makeDequantizeLinear(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 3);
  info.requireType(0, {DType::kInt8, DType::kUInt8, DType::kInt16, DType::kUInt16, DType::kInt32, DType::kInt4, DType::kUInt4});
  info.requireType(1, {DType::kFloat32});
  if (info.hasInput(2) && info.inType(2) != DType::kUndefined && info.inType(0) != DType::kUndefined &&
      info.inType(2) != info.inType(0))
    info.unsupported("zero point dtype " + ir::dtypeName(info.inType(2)) + " differs from x's " + ir::dtypeName(info.inType(0)));
  const int64_t axis = info.attrInt("axis", 1), block = info.attrInt("block_size", 0);
  out_types = {DType::kFloat32};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) { out[0] = dequantizeLinear(ctx, in, axis, block); };
}

Kernel makeMatMulNBits(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(3, 6);
  info.requireType(0, {DType::kFloat32});
  info.requireType(1, {DType::kUInt8});
  info.requireType(2, {DType::kFloat32});
  const int64_t K = info.attrInt("K", 0), N = info.attrInt("N", 0), bits = info.attrInt("bits", 4);
  const int64_t block = info.attrInt("block_size", 0);
  if (K <= 0 || N <= 0) info.unsupported("attributes K and N must be positive");
  if (bits != 2 && bits != 4 && bits != 8) info.unsupported("bits=" + std::to_string(bits));
  if (block < 16 || (block & (block - 1))) info.unsupported("block_size=" + std::to_string(block));
  if (info.hasInput(4)) info.unsupported("g_idx");
  info.requireType(3, {DType::kUInt8, DType::kFloat32});
  info.requireType(5, {DType::kFloat32});
  out_types = {DType::kFloat32};
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& a = in[0];
    if (a.rank() < 1 || a.shape().back() != K) runError("A " + typeShape(a) + " does not end in K=" + std::to_string(K));
    const int64_t kb = (K + block - 1) / block, blob = block * bits / 8;
    if (in[1].numel() != N * kb * blob) runError("B " + typeShape(in[1]) + " should hold N x ceil(K/block) x block*bits/8 bytes");
    if (in[2].numel() != N * kb) runError("scales " + typeShape(in[2]) + " should hold N x ceil(K/block) values");
    const bool has_zp = in.size() > 3 && !in[3].empty();
    const bool zp_float = has_zp && in[3].dtype() == DType::kFloat32;
    const int64_t zp_row = (kb * bits + 7) / 8;
    if (has_zp && !zp_float && in[3].numel() != N * zp_row) runError("packed zero points should hold N x ceil(k_blocks*bits/8) bytes");
    if (zp_float && in[3].numel() != N * kb) runError("zero points should hold N x k_blocks values");
    const uint8_t* pb = in[1].data<uint8_t>();
    const float* ps = in[2].data<float>();
    const uint32_t mask = (1u << bits) - 1;
    const float dflt_zp = static_cast<float>(1 << (bits - 1));
    // W dequantized as [K, N], the layout of the MatMul it replaces: the GEMM then sums in the same
    // order as the simulated MatMul (oneDNN's transposed-B kernels round differently).
    std::vector<float> w(static_cast<size_t>(N * K));
    parallelFor(ctx.threads(), N, grainFor(K), [&](int64_t s, int64_t e) {
      for (int64_t n = s; n < e; ++n)
        for (int64_t b = 0; b < kb; ++b) {
          float zp = dflt_zp;
          if (zp_float) zp = in[3].data<float>()[n * kb + b];
          else if (has_zp) {
            const int64_t bit = b * bits;
            zp = static_cast<float>((in[3].data<uint8_t>()[n * zp_row + bit / 8] >> (bit % 8)) & mask);
          }
          const float sc = ps[n * kb + b];
          const uint8_t* blk = pb + (n * kb + b) * blob;
          const int64_t k0 = b * block, k1 = std::min(K, k0 + block);
          for (int64_t k = k0; k < k1; ++k) {
            const int64_t bit = (k - k0) * bits;
            const float q = static_cast<float>((blk[bit / 8] >> (bit % 8)) & mask);
            w[k * N + n] = (q - zp) * sc;
          }
        }
    });
    Shape so = a.shape();
    so.back() = N;
    Tensor y = ctx.alloc(DType::kFloat32, so);
    matmulWeights(ctx, a, w.data(), K, N, y);
    const int64_t M = a.numel() / K;
    if (in.size() > 5 && !in[5].empty()) {
      if (in[5].numel() != N) runError("bias must have N elements");
      const float* bias = in[5].data<float>();
      float* py = outData<float>(y);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) py[m * N + n] += bias[n];
    }
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
