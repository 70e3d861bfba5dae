// One-input elementwise ops: activations (Relu, Sigmoid, Gelu, HardSwish, ...), math (Exp, Erf,
// Sqrt, Sin, ...), Not/IsNaN/IsInf, and Clip. float32 uses Eigen's vectorised exp/tanh/erf/logistic;
// float64 and integers use scalar code. Work is split in fixed 16K-element chunks of 64-byte aligned
// outputs, so the vector/scalar split (and the result) is the same at any thread count.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>
#include <cmath>
#include <limits>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {
constexpr int64_t kChunk = 16384;
using ArrF = Eigen::Array<float, Eigen::Dynamic, 1>;

template <typename T, typename F>
void mapScalar(ExecContext& ctx, const T* x, T* y, int64_t n, F f) {
  parallelFor(ctx.threads(), n, kChunk, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = f(x[i]);
  });
}

// y = expr(x) with Eigen arrays (float32).
template <typename F>
void mapEigen(ExecContext& ctx, const float* x, float* y, int64_t n, F expr) {
  parallelFor(ctx.threads(), n, kChunk, [&](int64_t b, int64_t e) {
    Eigen::Map<const ArrF> xs(x + b, e - b);
    Eigen::Map<ArrF> ys(y + b, e - b);
    ys = expr(xs);
  });
}

struct Attrs {
  float alpha = 0, beta = 0, gamma = 0;
  bool approx_tanh = false;
  int64_t detect_pos = 1, detect_neg = 1;
};

constexpr float kSqrt1_2 = 0.70710678118654752440f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;

// Floating-point kernels (T = float or double).
template <typename T>
bool runFloat(const std::string& op, const Attrs& a, ExecContext& ctx, const T* x, T* y, int64_t n) {
  constexpr bool f32 = std::is_same_v<T, float>;
  const T alpha = static_cast<T>(a.alpha), beta = static_cast<T>(a.beta), gamma = static_cast<T>(a.gamma);
  auto S = [&](auto f) { mapScalar<T>(ctx, x, y, n, f); };
  if (op == "Relu") S([](T v) { return v > T(0) ? v : T(0); });
  else if (op == "Neg") S([](T v) { return -v; });
  else if (op == "Abs") S([](T v) { return std::abs(v); });
  else if (op == "Sqrt") S([](T v) { return std::sqrt(v); });
  else if (op == "Reciprocal") S([](T v) { return T(1) / v; });
  else if (op == "Floor") S([](T v) { return std::floor(v); });
  else if (op == "Ceil") S([](T v) { return std::ceil(v); });
  else if (op == "Round") S([](T v) { return std::nearbyint(v); });
  else if (op == "Sign") S([](T v) { return v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0)); });
  else if (op == "Exp") {
    if constexpr (f32) mapEigen(ctx, x, y, n, [](const auto& v) { return v.exp(); });
    else S([](T v) { return std::exp(v); });
  } else if (op == "Log") {
    if constexpr (f32) mapEigen(ctx, x, y, n, [](const auto& v) { return v.log(); });
    else S([](T v) { return std::log(v); });
  } else if (op == "Tanh") {
    if constexpr (f32) mapEigen(ctx, x, y, n, [](const auto& v) { return v.tanh(); });
    else S([](T v) { return std::tanh(v); });
  } else if (op == "Erf") {
    if constexpr (f32) mapEigen(ctx, x, y, n, [](const auto& v) { return v.erf(); });
    else S([](T v) { return std::erf(v); });
  } else if (op == "Sigmoid") {
    if constexpr (f32) mapEigen(ctx, x, y, n, [](const auto& v) { return v.logistic(); });
    else S([](T v) { return v >= 0 ? T(1) / (T(1) + std::exp(-v)) : std::exp(v) / (T(1) + std::exp(v)); });
  } else if (op == "Gelu" || op == "FastGelu") {
    if (a.approx_tanh || op == "FastGelu") {
      if constexpr (f32)
        mapEigen(ctx, x, y, n, [](const auto& v) {
          return 0.5f * v * (1.0f + (kSqrt2OverPi * (v + 0.044715f * v * v * v)).tanh());
        });
      else S([](T v) { return T(0.5) * v * (T(1) + std::tanh(T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v))); });
    } else {
      if constexpr (f32) mapEigen(ctx, x, y, n, [](const auto& v) { return 0.5f * v * (1.0f + (v * kSqrt1_2).erf()); });
      else S([](T v) { return T(0.5) * v * (T(1) + std::erf(v * T(kSqrt1_2))); });
    }
  } else if (op == "Sin") S([](T v) { return std::sin(v); });
  else if (op == "Cos") S([](T v) { return std::cos(v); });
  else if (op == "Tan") S([](T v) { return std::tan(v); });
  else if (op == "Asin") S([](T v) { return std::asin(v); });
  else if (op == "Acos") S([](T v) { return std::acos(v); });
  else if (op == "Atan") S([](T v) { return std::atan(v); });
  else if (op == "Sinh") S([](T v) { return std::sinh(v); });
  else if (op == "Cosh") S([](T v) { return std::cosh(v); });
  else if (op == "Asinh") S([](T v) { return std::asinh(v); });
  else if (op == "Acosh") S([](T v) { return std::acosh(v); });
  else if (op == "Atanh") S([](T v) { return std::atanh(v); });
  else if (op == "Softplus") S([](T v) { return v > T(0) ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v)); });
  else if (op == "Softsign") S([](T v) { return v / (T(1) + std::abs(v)); });
  else if (op == "Mish") S([](T v) {
      const T sp = v > T(0) ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
      return v * std::tanh(sp);
    });
  else if (op == "HardSigmoid") S([=](T v) { return std::max(T(0), std::min(T(1), alpha * v + beta)); });
  else if (op == "HardSwish") S([](T v) { return v * std::max(T(0), std::min(T(1), v / T(6) + T(0.5))); });
  else if (op == "LeakyRelu") S([=](T v) { return v >= T(0) ? v : alpha * v; });
  else if (op == "Elu") S([=](T v) { return v >= T(0) ? v : alpha * (std::exp(v) - T(1)); });
  else if (op == "Selu") S([=](T v) { return v > T(0) ? gamma * v : gamma * (alpha * std::exp(v) - alpha); });
  else if (op == "Celu") S([=](T v) { return std::max(T(0), v) + std::min(T(0), alpha * (std::exp(v / alpha) - T(1))); });
  else if (op == "ThresholdedRelu") S([=](T v) { return v > alpha ? v : T(0); });
  else if (op == "Shrink") S([=](T v) { return v < -alpha ? v + beta : (v > alpha ? v - beta : T(0)); });
  else return false;
  return true;
}

template <typename T>
bool runInt(const std::string& op, ExecContext& ctx, const T* x, T* y, int64_t n) {
  auto S = [&](auto f) { mapScalar<T>(ctx, x, y, n, f); };
  if (op == "Relu") S([](T v) { return v > T(0) ? v : T(0); });
  else if (op == "Neg") S([](T v) { return static_cast<T>(-v); });
  else if (op == "Abs") S([](T v) { return v < T(0) ? static_cast<T>(-v) : v; });
  else if (op == "Sign") S([](T v) { return static_cast<T>(v > T(0) ? 1 : (v < T(0) ? -1 : 0)); });
  else return false;
  return true;
}

bool isFloatOnly(const std::string& op) {
  return !(op == "Relu" || op == "Neg" || op == "Abs" || op == "Sign" || op == "Not" || op == "IsNaN" || op == "IsInf");
}
}  // namespace

Kernel makeUnary(const NodeInfo& info, std::vector<DType>& out_types) {
  const std::string op = info.node.opType();
  info.requireInputs(1, 1);
  const DType t = info.inType(0);
  Attrs a;
  if (op == "HardSigmoid") { a.alpha = info.attrFloat("alpha", 0.2f); a.beta = info.attrFloat("beta", 0.5f); }
  if (op == "LeakyRelu") a.alpha = info.attrFloat("alpha", 0.01f);
  if (op == "Elu" || op == "Celu" || op == "ThresholdedRelu") a.alpha = info.attrFloat("alpha", 1.0f);
  if (op == "Selu") { a.alpha = info.attrFloat("alpha", 1.67326319217681884765625f); a.gamma = info.attrFloat("gamma", 1.05070102214813232421875f); }
  if (op == "Shrink") { a.alpha = info.attrFloat("lambd", 0.5f); a.beta = info.attrFloat("bias", 0.0f); }
  if (op == "Gelu") {
    const std::string approx = info.attrString("approximate", "none");
    if (approx != "none" && approx != "tanh") info.unsupported("approximate='" + approx + "'");
    a.approx_tanh = approx == "tanh";
  }
  if (op == "IsInf") { a.detect_pos = info.attrInt("detect_positive", 1); a.detect_neg = info.attrInt("detect_negative", 1); }

  if (op == "Not") {
    info.requireType(0, {DType::kBool});
    out_types = {DType::kBool};
    return [](ExecContext& ctx, TensorList& in, TensorList& out) {
      expectType(in[0], DType::kBool, "input");
      Tensor y = ctx.reuse(in[0], DType::kBool, in[0].shape());
      const uint8_t* x = (in[0].empty() ? y : in[0]).data<uint8_t>();
      uint8_t* o = outData<uint8_t>(y);
      for (int64_t i = 0, n = y.numel(); i < n; ++i) o[i] = x[i] ? 0 : 1;
      out[0] = std::move(y);
    };
  }
  if (op == "IsNaN" || op == "IsInf") {
    info.requireType(0, kFloatTypes);
    out_types = {DType::kBool};
    return [op, a](ExecContext& ctx, TensorList& in, TensorList& out) {
      Tensor y = ctx.alloc(DType::kBool, in[0].shape());
      uint8_t* o = outData<uint8_t>(y);
      const int64_t n = y.numel();
      const std::vector<float> xs = in[0].toFloats();  // double -> float keeps NaN/Inf
      for (int64_t i = 0; i < n; ++i) {
        const float v = xs[i];
        if (op == "IsNaN") o[i] = std::isnan(v);
        else o[i] = std::isinf(v) && ((v > 0 && a.detect_pos) || (v < 0 && a.detect_neg));
      }
      out[0] = std::move(y);
    };
  }
  if (isFloatOnly(op)) info.requireType(0, kFloatTypes);
  else info.requireType(0, {DType::kFloat32, DType::kFloat64, DType::kInt64, DType::kInt32, DType::kInt8,
                            DType::kInt16, DType::kUInt8, DType::kUInt16, DType::kUInt32, DType::kUInt64});
  if (op == "Neg" && (t == DType::kUInt8 || t == DType::kUInt16 || t == DType::kUInt32 || t == DType::kUInt64))
    info.unsupported("Neg of an unsigned type");
  out_types = {t};
  return [op, a](ExecContext& ctx, TensorList& in, TensorList& out) {
    const DType dt = in[0].dtype();
    InPlace ip = inPlace(ctx, in[0], dt);
    Tensor& y = ip.y;
    const int64_t n = y.numel();
    bool ok = false;
    if (dt == DType::kFloat32) ok = runFloat<float>(op, a, ctx, static_cast<const float*>(ip.x), outData<float>(y), n);
    else if (dt == DType::kFloat64) ok = runFloat<double>(op, a, ctx, static_cast<const double*>(ip.x), outData<double>(y), n);
    else dispatchInt(dt, [&](auto tag) {
        using T = decltype(tag);
        ok = runInt<T>(op, ctx, static_cast<const T*>(ip.x), outData<T>(y), n);
      });
    if (!ok) runError("input dtype " + ir::dtypeName(dt) + " is not supported");
    out[0] = std::move(y);
  };
}

// Clip: min/max attributes before opset 11, optional inputs after.
Kernel makeClip(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, info.opset < 11 ? 1 : 3);
  const DType t = info.inType(0);
  info.requireType(0, {DType::kFloat32, DType::kFloat64, DType::kInt64, DType::kInt32, DType::kInt8, DType::kUInt8,
                       DType::kInt16, DType::kUInt16, DType::kUInt32, DType::kUInt64});
  info.requireSameType(0, 2);
  out_types = {t};
  const bool attrs = info.opset < 11;
  const float amin = info.attrFloat("min", -std::numeric_limits<float>::infinity());
  const float amax = info.attrFloat("max", std::numeric_limits<float>::infinity());
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const DType dt = in[0].dtype();
    InPlace ip = inPlace(ctx, in[0], dt);
    Tensor& y = ip.y;
    const int64_t n = y.numel();
    auto run = [&](auto tag) {
      using T = decltype(tag);
      T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
      if constexpr (std::is_floating_point_v<T>) { lo = -std::numeric_limits<T>::infinity(); hi = -lo; }
      if (attrs) { lo = static_cast<T>(amin); hi = static_cast<T>(amax); }
      if (in.size() > 1 && !in[1].empty()) {
        if (in[1].numel() != 1) runError("min must be a scalar");
        lo = in[1].data<T>()[0];
      }
      if (in.size() > 2 && !in[2].empty()) {
        if (in[2].numel() != 1) runError("max must be a scalar");
        hi = in[2].data<T>()[0];
      }
      mapScalar<T>(ctx, static_cast<const T*>(ip.x), outData<T>(y), n, [=](T v) { return std::min(std::max(v, lo), hi); });
    };
    if (!dispatchNumeric(dt, run)) runError("input dtype " + ir::dtypeName(dt) + " is not supported");
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
