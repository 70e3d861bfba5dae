// Cast / CastLike between float32/64, float16, bfloat16, the integer types and bool.
// Float -> integer truncates toward zero and saturates (NaN -> 0), as ONNX Runtime does on x86.
#include <cmath>
#include <limits>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {

bool castable(DType t) {
  switch (t) {
    case DType::kFloat32: case DType::kFloat64: case DType::kFloat16:
    case DType::kInt8: case DType::kInt16: case DType::kInt32: case DType::kInt64:
    case DType::kUInt8: case DType::kUInt16: case DType::kUInt32: case DType::kUInt64: case DType::kBool:
      return true;
    default: return false;
  }
}

uint16_t floatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

template <typename D, typename S>
D convert(S v) {
  if constexpr (std::is_same_v<D, bool>) {
    return v != S(0);
  } else if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) {
    if (std::isnan(v)) return D(0);
    if (v <= static_cast<S>(std::numeric_limits<D>::lowest())) return std::numeric_limits<D>::lowest();
    if (v >= static_cast<S>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
    return static_cast<D>(v);
  } else {
    return static_cast<D>(v);
  }
}

// dst[i] = D(src[i]) for a source of any castable dtype.
template <typename D>
void castInto(const Tensor& src, D* dst, int threads) {
  const int64_t n = src.numel();
  auto loop = [&](auto read) {
    parallelFor(threads, n, 16384, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) dst[i] = read(i);
    });
  };
  switch (src.dtype()) {
    case DType::kFloat16: {
      const uint16_t* p = src.data<uint16_t>();
      loop([&](int64_t i) { return convert<D, float>(ir::halfToFloat(p[i])); });
      return;
    }
    case DType::kBFloat16: {
      const uint16_t* p = src.data<uint16_t>();
      loop([&](int64_t i) { return convert<D, float>(ir::bfloat16ToFloat(p[i])); });
      return;
    }
    case DType::kBool: {
      const uint8_t* p = src.data<uint8_t>();
      loop([&](int64_t i) { return static_cast<D>(p[i] != 0); });
      return;
    }
    default:
      if (!dispatchNumeric(src.dtype(), [&](auto tag) {
            using S = decltype(tag);
            const S* p = src.data<S>();
            loop([&](int64_t i) { return convert<D, S>(p[i]); });
          }))
        runError("cannot cast from " + ir::dtypeName(src.dtype()));
  }
}

Tensor castTensor(ExecContext& ctx, const Tensor& src, DType to) {
  if (src.dtype() == to) return src;
  Tensor y = ctx.alloc(to, src.shape());
  const int th = ctx.threads();
  if (to == DType::kFloat16 || to == DType::kBFloat16) {
    std::vector<float> f(static_cast<size_t>(src.numel()));
    castInto<float>(src, f.data(), th);
    uint16_t* o = outData<uint16_t>(y);
    for (size_t i = 0; i < f.size(); ++i) o[i] = to == DType::kFloat16 ? ir::floatToHalf(f[i]) : floatToBf16(f[i]);
  } else if (to == DType::kBool) {
    std::vector<uint8_t> b(static_cast<size_t>(src.numel()));
    castInto<bool>(src, reinterpret_cast<bool*>(b.data()), th);
    std::memcpy(outData<uint8_t>(y), b.data(), b.size());
  } else if (!dispatchNumeric(to, [&](auto tag) { castInto<decltype(tag)>(src, outData<decltype(tag)>(y), th); })) {
    runError("cannot cast to " + ir::dtypeName(to));
  }
  return y;
}

}  // namespace

Kernel makeCast(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1);
  if (!info.node.hasAttr("to")) info.unsupported("missing attribute 'to'");
  const int64_t to_i = info.attrInt("to", 0);
  const DType to = static_cast<DType>(to_i);
  if (!ir::dtypeIsKnown(static_cast<int32_t>(to_i)) || !castable(to))
    info.unsupported("cast to " + ir::dtypeName(to));
  if (info.inType(0) != DType::kUndefined && !castable(info.inType(0)))
    info.unsupported("cast from " + ir::dtypeName(info.inType(0)));
  out_types = {to};
  return [to](ExecContext& ctx, TensorList& in, TensorList& out) { out[0] = castTensor(ctx, in[0], to); };
}

Kernel makeCastLike(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 2);
  const DType to = info.inType(1);
  if (to == DType::kUndefined) info.unsupported("target dtype unknown at planning");
  if (!castable(to)) info.unsupported("cast to " + ir::dtypeName(to));
  if (info.inType(0) != DType::kUndefined && !castable(info.inType(0)))
    info.unsupported("cast from " + ir::dtypeName(info.inType(0)));
  out_types = {to};
  return [to](ExecContext& ctx, TensorList& in, TensorList& out) { out[0] = castTensor(ctx, in[0], to); };
}

}  // namespace ptq::runtime::ops
