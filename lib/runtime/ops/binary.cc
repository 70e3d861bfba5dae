// Elementwise ops with numpy broadcasting: Add/Sub/Mul/Div/Pow/Mod/PRelu/BitShift, comparisons,
// And/Or/Xor, variadic Max/Min/Sum/Mean, and Where. Broadcast dims are merged so the inner loop runs
// over the longest contiguous (or constant) stretch; the output reuses an input's buffer when the
// executor hands over its last reference.
#include <cmath>
#include <array>
#include <functional>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {

// Iterates the output in rows of the innermost merged dimension. fn(out_off, in_offs, len, in_inner_strides).
template <size_t N, typename F>
void forEachRow(int threads, const Shape& out_shape, std::array<std::vector<int64_t>, N> strides, F fn) {
  // Merge adjacent dims that are contiguous (or broadcast) for every operand.
  Shape dims;
  std::array<std::vector<int64_t>, N> st;
  for (size_t d = 0; d < out_shape.size(); ++d) {
    if (out_shape[d] == 1) continue;
    bool merge = !dims.empty();
    for (size_t k = 0; k < N && merge; ++k) {
      const int64_t prev = st[k].back(), cur = strides[k][d];
      merge = (prev == cur * out_shape[d]) || (prev == 0 && cur == 0);
    }
    if (merge) {
      dims.back() *= out_shape[d];
      for (size_t k = 0; k < N; ++k) st[k].back() = strides[k][d];
    } else {
      dims.push_back(out_shape[d]);
      for (size_t k = 0; k < N; ++k) st[k].push_back(strides[k][d]);
    }
  }
  if (dims.empty()) {
    dims.push_back(1);
    for (size_t k = 0; k < N; ++k) st[k].push_back(0);
  }
  const int64_t rank = static_cast<int64_t>(dims.size());
  const int64_t inner = dims.back();
  const int64_t rows = ir::shapeNumel(dims) / std::max<int64_t>(inner, 1);
  if (inner == 0 || rows == 0) return;
  std::array<int64_t, N> inner_st;
  for (size_t k = 0; k < N; ++k) inner_st[k] = st[k].back();
  parallelFor(threads, rows, grainFor(inner), [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> idx(rank, 0);
    int64_t rem = r0;
    for (int64_t d = rank - 2; d >= 0; --d) { idx[d] = rem % dims[d]; rem /= dims[d]; }
    std::array<int64_t, N> offs;
    for (int64_t r = r0; r < r1; ++r) {
      for (size_t k = 0; k < N; ++k) {
        int64_t o = 0;
        for (int64_t d = 0; d < rank - 1; ++d) o += idx[d] * st[k][d];
        offs[k] = o;
      }
      fn(r * inner, offs, inner, inner_st);
      for (int64_t d = rank - 2; d >= 0; --d) {
        if (++idx[d] < dims[d]) break;
        idx[d] = 0;
      }
    }
  });
}

// out[i] = f(a[...], b[...]) over the broadcast shape.
template <typename TA, typename TB, typename TO, typename F>
void broadcast2(int threads, const TA* a, const Shape& sa, const TB* b, const Shape& sb, TO* o, const Shape& so, F f) {
  if (sa == so && sb == so) {
    parallelFor(threads, ir::shapeNumel(so), 16384, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) o[i] = f(a[i], b[i]);
    });
    return;
  }
  forEachRow<2>(threads, so, {broadcastStrides(sa, so), broadcastStrides(sb, so)},
                [&](int64_t oo, const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
                  const TA* pa = a + off[0];
                  const TB* pb = b + off[1];
                  TO* po = o + oo;
                  if (st[0] == 1 && st[1] == 1) for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
                  else if (st[0] == 1 && st[1] == 0) { const TB vb = pb[0]; for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], vb); }
                  else if (st[0] == 0 && st[1] == 1) { const TA va = pa[0]; for (int64_t i = 0; i < n; ++i) po[i] = f(va, pb[i]); }
                  else for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i * st[0]], pb[i * st[1]]);
                });
}

enum class Kind { kArith, kCompare, kLogic };

Kind kindOf(const std::string& op) {
  if (op == "Equal" || op == "Less" || op == "LessOrEqual" || op == "Greater" || op == "GreaterOrEqual") return Kind::kCompare;
  if (op == "And" || op == "Or" || op == "Xor") return Kind::kLogic;
  return Kind::kArith;
}

template <typename T>
T pyMod(T x, T y) {
  if constexpr (std::is_floating_point_v<T>) {
    T r = std::fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return r;
  } else {
    if (y == 0) runError("integer modulo by zero");
    T r = static_cast<T>(x % y);
    if constexpr (std::is_signed_v<T>)
      if (r != 0 && ((r < 0) != (y < 0))) r = static_cast<T>(r + y);
    return r;
  }
}

// Arithmetic on T -> T.
template <typename T>
void arith(const std::string& op, int threads, const Tensor& a, const Tensor& b, Tensor& y, int64_t fmod,
           const std::string& direction) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = outData<T>(y);
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  const Shape& so = y.shape();
  auto B = [&](auto f) { broadcast2<T, T, T>(threads, pa, sa, pb, sb, po, so, f); };
  if (op == "Add") B([](T x, T z) { return static_cast<T>(x + z); });
  else if (op == "Sub") B([](T x, T z) { return static_cast<T>(x - z); });
  else if (op == "Mul") B([](T x, T z) { return static_cast<T>(x * z); });
  else if (op == "Div") {
    if constexpr (std::is_integral_v<T>) {
      for (int64_t i = 0, n = b.numel(); i < n; ++i)
        if (pb[i] == 0) runError("integer division by zero");
    }
    B([](T x, T z) { return static_cast<T>(x / z); });
  } else if (op == "Pow") {
    if (b.numel() == 1 && static_cast<double>(pb[0]) == 2.0) B([](T x, T) { return static_cast<T>(x * x); });
    else if constexpr (std::is_floating_point_v<T>) B([](T x, T z) { return static_cast<T>(std::pow(x, z)); });
    else B([](T x, T z) { return static_cast<T>(std::pow(static_cast<double>(x), static_cast<double>(z))); });
  } else if (op == "Mod") {
    if constexpr (std::is_floating_point_v<T>) B([](T x, T z) { return static_cast<T>(std::fmod(x, z)); });
    else if (fmod) B([](T x, T z) { if (z == 0) runError("integer modulo by zero"); return static_cast<T>(x % z); });
    else B([](T x, T z) { return pyMod<T>(x, z); });
  } else if (op == "PRelu") B([](T x, T s) { return x < T(0) ? static_cast<T>(x * s) : x; });
  else if (op == "BitShift") {
    if constexpr (std::is_integral_v<T>) {
      if (direction == "LEFT") B([](T x, T s) { return static_cast<T>(s >= static_cast<T>(8 * sizeof(T)) ? 0 : x << s); });
      else B([](T x, T s) { return static_cast<T>(s >= static_cast<T>(8 * sizeof(T)) ? 0 : x >> s); });
    }
  } else if (op == "Max") B([](T x, T z) { return x >= z || std::isnan(static_cast<double>(x)) ? x : z; });
  else if (op == "Min") B([](T x, T z) { return x <= z || std::isnan(static_cast<double>(x)) ? x : z; });
  else if (op == "Sum" || op == "Mean") B([](T x, T z) { return static_cast<T>(x + z); });
  else runError("op " + op + " is not arithmetic");
}

template <typename T>
void compare(const std::string& op, int threads, const Tensor& a, const Tensor& b, Tensor& y) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  uint8_t* po = outData<uint8_t>(y);
  auto B = [&](auto f) { broadcast2<T, T, uint8_t>(threads, pa, a.shape(), pb, b.shape(), po, y.shape(), f); };
  if (op == "Equal") B([](T x, T z) { return static_cast<uint8_t>(x == z); });
  else if (op == "Less") B([](T x, T z) { return static_cast<uint8_t>(x < z); });
  else if (op == "LessOrEqual") B([](T x, T z) { return static_cast<uint8_t>(x <= z); });
  else if (op == "Greater") B([](T x, T z) { return static_cast<uint8_t>(x > z); });
  else B([](T x, T z) { return static_cast<uint8_t>(x >= z); });
}

const std::initializer_list<DType> kNumeric = {DType::kFloat32, DType::kFloat64, DType::kInt64,  DType::kInt32,
                                               DType::kInt8,    DType::kUInt8,   DType::kInt16,  DType::kUInt16,
                                               DType::kUInt32,  DType::kUInt64};

void runBinary(const std::string& op, ExecContext& ctx, Tensor a, Tensor b, Tensor& y, int64_t fmod,
               const std::string& direction) {
  const Kind kind = kindOf(op);
  Tensor bb = std::move(b);
  if (op == "Pow" && a.dtype() != bb.dtype()) {  // exponent converted to the base's type
    const std::vector<float> f = bb.toFloats();
    Tensor c = ctx.alloc(a.dtype(), bb.shape());
    if (!dispatchNumeric(a.dtype(), [&](auto tag) {
          using T = decltype(tag);
          for (size_t i = 0; i < f.size(); ++i) outData<T>(c)[i] = static_cast<T>(f[i]);
        }))
      runError("Pow base dtype " + ir::dtypeName(a.dtype()));
    bb = std::move(c);
  } else if (a.dtype() != bb.dtype()) {
    runError("inputs have different dtypes: " + typeShape(a) + " and " + typeShape(bb));
  }
  const Shape so = op == "PRelu" ? a.shape() : broadcastShapes(a.shape(), bb.shape());
  if (op == "PRelu" && broadcastShapes(a.shape(), bb.shape()) != so)
    runError("slope " + typeShape(bb) + " does not broadcast to " + typeShape(a));
  const DType out_t = kind == Kind::kArith ? a.dtype() : DType::kBool;
  // In place over an input that has the output's shape: element i is read before it is written.
  if (kind == Kind::kArith && a.shape() == so) {
    y = ctx.reuse(a, out_t, so);
    if (a.empty()) a = y;
  } else if (kind == Kind::kArith && bb.shape() == so) {
    y = ctx.reuse(bb, out_t, so);
    if (bb.empty()) bb = y;
  } else {
    y = ctx.alloc(out_t, so);
  }
  const Tensor* pa = &a;
  const Tensor* pb = &bb;
  const int th = ctx.threads();
  if (kind == Kind::kLogic) {
    expectType(*pa, DType::kBool, "input");
    const uint8_t* xa = pa->data<uint8_t>();
    const uint8_t* xb = pb->data<uint8_t>();
    uint8_t* po = outData<uint8_t>(y);
    auto B = [&](auto f) { broadcast2<uint8_t, uint8_t, uint8_t>(th, xa, pa->shape(), xb, pb->shape(), po, so, f); };
    if (op == "And") B([](uint8_t x, uint8_t z) { return static_cast<uint8_t>(x && z); });
    else if (op == "Or") B([](uint8_t x, uint8_t z) { return static_cast<uint8_t>(x || z); });
    else B([](uint8_t x, uint8_t z) { return static_cast<uint8_t>((x != 0) != (z != 0)); });
    return;
  }
  if (kind == Kind::kCompare) {
    if (pa->dtype() == DType::kBool) { compare<uint8_t>(op, th, *pa, *pb, y); return; }
    if (!dispatchNumeric(pa->dtype(), [&](auto tag) { compare<decltype(tag)>(op, th, *pa, *pb, y); }))
      runError("dtype " + ir::dtypeName(pa->dtype()) + " is not supported");
    return;
  }
  if (!dispatchNumeric(pa->dtype(), [&](auto tag) { arith<decltype(tag)>(op, th, *pa, *pb, y, fmod, direction); }))
    runError("dtype " + ir::dtypeName(pa->dtype()) + " is not supported");
}

}  // namespace

Kernel makeBinary(const NodeInfo& info, std::vector<DType>& out_types) {
  const std::string op = info.node.opType();
  info.requireInputs(2, 2);
  const Kind kind = kindOf(op);
  if (kind == Kind::kLogic) {
    info.requireType(0, {DType::kBool});
    info.requireType(1, {DType::kBool});
  } else if (op == "BitShift") {
    info.requireType(0, {DType::kUInt8, DType::kUInt16, DType::kUInt32, DType::kUInt64});
    info.requireSameType(0, 1);
  } else if (op == "Pow") {
    info.requireType(0, {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64});
    info.requireType(1, kNumeric);
  } else if (kind == Kind::kCompare && op == "Equal") {
    std::initializer_list<DType> eq = {DType::kFloat32, DType::kFloat64, DType::kInt64, DType::kInt32, DType::kInt8,
                                       DType::kUInt8, DType::kInt16, DType::kUInt16, DType::kUInt32, DType::kUInt64,
                                       DType::kBool};
    info.requireType(0, eq);
    info.requireSameType(0, 1);
  } else {
    info.requireType(0, kNumeric);
    info.requireSameType(0, 1);
  }
  if (op == "Mod" && ir::dtypeIsFloat(info.inType(0)) && info.attrInt("fmod", 0) != 1)
    info.unsupported("floating-point Mod requires fmod=1");
  out_types = {kind == Kind::kArith ? info.inType(0) : DType::kBool};
  const int64_t fmod = info.attrInt("fmod", 0);
  const std::string direction = info.attrString("direction", "LEFT");
  return [op, fmod, direction](ExecContext& ctx, TensorList& in, TensorList& out) {
    Tensor a = std::move(in[0]), b = std::move(in[1]);
    Tensor y;
    runBinary(op, ctx, std::move(a), std::move(b), y, fmod, direction);
    out[0] = std::move(y);
  };
}

Kernel makeVariadic(const NodeInfo& info, std::vector<DType>& out_types) {
  const std::string op = info.node.opType();
  info.requireInputs(1, 1u << 20);
  if (op == "Mean") info.requireType(0, kFloatTypes);
  else info.requireType(0, kNumeric);
  info.requireSameType(0, info.numInputs() - 1);
  out_types = {info.inType(0)};
  return [op](ExecContext& ctx, TensorList& in, TensorList& out) {
    Tensor acc = std::move(in[0]);
    if (in.size() == 1) {  // a copy, not an alias: the output is a new value
      Tensor y = ctx.alloc(acc.dtype(), acc.shape());
      if (acc.nbytes()) std::memcpy(outData<uint8_t>(y), acc.data(), acc.nbytes());
      acc = std::move(y);
    }
    for (size_t k = 1; k < in.size(); ++k) {
      Tensor y;
      runBinary(op, ctx, std::move(acc), std::move(in[k]), y, 0, "");
      acc = std::move(y);
    }
    if (op == "Mean" && in.size() > 1) {
      const double n = static_cast<double>(in.size());
      dispatchFloat(acc.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T* p = outData<T>(acc);
        for (int64_t i = 0, m = acc.numel(); i < m; ++i) p[i] = static_cast<T>(p[i] / n);
      });
    }
    out[0] = std::move(acc);
  };
}

Kernel makeWhere(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(3, 3);
  info.requireType(0, {DType::kBool});
  requireMovable(info, 1);
  info.requireSameType(1, 2);
  out_types = {info.inType(1)};
  return [](ExecContext& ctx, TensorList& in, TensorList& out) {
    expectType(in[0], DType::kBool, "condition");
    if (in[1].dtype() != in[2].dtype()) runError("X and Y have different dtypes");
    const Shape so = broadcastShapes(broadcastShapes(in[0].shape(), in[1].shape()), in[2].shape());
    Tensor y = ctx.alloc(in[1].dtype(), so);
    const uint8_t* c = in[0].data<uint8_t>();
    std::array<std::vector<int64_t>, 3> st = {broadcastStrides(in[0].shape(), so), broadcastStrides(in[1].shape(), so),
                                              broadcastStrides(in[2].shape(), so)};
    dispatchBytes(y.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* x1 = in[1].data<T>();
      const T* x2 = in[2].data<T>();
      T* o = outData<T>(y);
      forEachRow<3>(ctx.threads(), so, st,
                    [&](int64_t oo, const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& s) {
                      for (int64_t i = 0; i < n; ++i)
                        o[oo + i] = c[off[0] + i * s[0]] ? x1[off[1] + i * s[1]] : x2[off[2] + i * s[2]];
                    });
    });
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
