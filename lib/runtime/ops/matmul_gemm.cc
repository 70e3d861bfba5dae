// MatMul (numpy semantics: 1-D promotion, broadcast batch dims) and Gemm. float32 goes through
// gemm.h (OpenBLAS or Eigen, fixed tiling); float64 through Eigen; integer MatMul is a plain loop
// (rare in real models).
#include "lib/runtime/gemm.h"
#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"

namespace ptq::runtime::ops {

namespace {

template <typename T>
void intMatMul(const T* a, const T* b, T* c, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      T acc = 0;
      for (int64_t k = 0; k < K; ++k) acc = static_cast<T>(acc + a[i * K + k] * b[k * N + j]);
      c[i * N + j] = acc;
    }
}

}  // namespace

// Shared with MatMulNBits (quant_ops.cc): A [..., K] float32 times dense B [K, N].
void matmulWeights(ExecContext& ctx, const Tensor& a, const float* b, int64_t K, int64_t N, Tensor& y) {
  const int64_t M = a.numel() / std::max<int64_t>(K, 1);
  GemmArgs g;
  g.M = M; g.N = N; g.K = K;
  g.A = a.data<float>(); g.lda = K;
  g.B = b; g.ldb = N;
  g.C = outData<float>(y); g.ldc = N;
  sgemmParallel(g, ctx.threads());
}

Kernel makeMatMul(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 2);
  info.requireType(0, {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64, DType::kUInt32, DType::kUInt64});
  info.requireSameType(0, 1);
  out_types = {info.inType(0)};
  return [](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& a = in[0];
    const Tensor& b = in[1];
    if (a.dtype() != b.dtype()) runError("A is " + typeShape(a) + " but B is " + typeShape(b));
    if (a.rank() == 0 || b.rank() == 0) runError("MatMul inputs must have rank >= 1");
    Shape sa = a.shape(), sb = b.shape();
    const bool a_vec = sa.size() == 1, b_vec = sb.size() == 1;
    if (a_vec) sa.insert(sa.begin(), 1);
    if (b_vec) sb.push_back(1);
    const int64_t M = sa[sa.size() - 2], K = sa.back(), N = sb.back();
    if (sb[sb.size() - 2] != K) runError("A " + typeShape(a) + " and B " + typeShape(b) + " have different inner dimensions");
    const Shape ba(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
    const Shape batch = broadcastShapes(ba, bb);
    Shape so = batch;
    if (!a_vec) so.push_back(M);
    if (!b_vec) so.push_back(N);
    Tensor y = ctx.alloc(a.dtype(), so);
    const int64_t nb = ir::shapeNumel(batch);
    if (y.numel() == 0) { out[0] = std::move(y); return; }
    if (K == 0) {
      std::fill_n(outData<uint8_t>(y), y.nbytes(), uint8_t{0});
      out[0] = std::move(y);
      return;
    }
    // Batch offsets (elements) of A and B for each output batch index.
    std::vector<int64_t> a_off(nb), b_off(nb), c_off(nb);
    const std::vector<int64_t> sta = broadcastStrides(ba, batch), stb = broadcastStrides(bb, batch);
    std::vector<int64_t> idx(batch.size(), 0);
    for (int64_t i = 0; i < nb; ++i) {
      int64_t oa = 0, ob = 0;
      for (size_t d = 0; d < batch.size(); ++d) { oa += idx[d] * sta[d]; ob += idx[d] * stb[d]; }
      a_off[i] = oa * M * K;
      b_off[i] = ob * K * N;
      c_off[i] = i * M * N;
      for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
        if (++idx[d] < batch[d]) break;
        idx[d] = 0;
      }
    }
    if (a.dtype() == DType::kFloat32) {
      GemmArgs g;
      g.M = M; g.N = N; g.K = K;
      g.A = a.data<float>(); g.lda = K;
      g.B = b.data<float>(); g.ldb = N;
      g.C = outData<float>(y); g.ldc = N;
      // B shared by every batch (weights): one tall GEMM over all rows of A.
      const bool shared_b = bb.empty() || ir::shapeNumel(bb) == 1;
      const bool a_dense = ir::shapeNumel(ba) == nb;
      if (shared_b && a_dense) {
        g.M = M * nb;
        sgemmParallel(g, ctx.threads());
      } else {
        sgemmBatchedOffsets(g, nb, a_off.data(), b_off.data(), c_off.data(), ctx.threads());
      }
    } else if (a.dtype() == DType::kFloat64) {
      for (int64_t i = 0; i < nb; ++i)
        dgemm(false, false, M, N, K, 1.0, a.data<double>() + a_off[i], K, b.data<double>() + b_off[i], N, 0.0,
              outData<double>(y) + c_off[i], N);
    } else {
      dispatchInt(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        for (int64_t i = 0; i < nb; ++i)
          intMatMul<T>(a.data<T>() + a_off[i], b.data<T>() + b_off[i], outData<T>(y) + c_off[i], M, N, K);
      });
    }
    out[0] = std::move(y);
  };
}

Kernel makeGemm(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(2, 3);
  info.requireType(0, kFloatTypes);
  info.requireSameType(0, 2);
  out_types = {info.inType(0)};
  const bool ta = info.attrInt("transA", 0) != 0, tb = info.attrInt("transB", 0) != 0;
  const float alpha = info.attrFloat("alpha", 1.0f), beta = info.attrFloat("beta", 1.0f);
  return [=](ExecContext& ctx, TensorList& in, TensorList& out) {
    const Tensor& a = in[0];
    const Tensor& b = in[1];
    if (a.rank() != 2 || b.rank() != 2) runError("Gemm needs 2-D A and B, got " + typeShape(a) + ", " + typeShape(b));
    const int64_t M = ta ? a.shape()[1] : a.shape()[0], K = ta ? a.shape()[0] : a.shape()[1];
    const int64_t N = tb ? b.shape()[0] : b.shape()[1], Kb = tb ? b.shape()[1] : b.shape()[0];
    if (K != Kb) runError("A " + typeShape(a) + " and B " + typeShape(b) + " have different inner dimensions");
    Tensor y = ctx.alloc(a.dtype(), {M, N});
    const bool has_c = in.size() > 2 && !in[2].empty() && beta != 0.0f;
    if (has_c) {
      const Tensor& c = in[2];
      if (broadcastShapes(c.shape(), {M, N}) != Shape{M, N}) runError("C " + typeShape(c) + " does not broadcast to [M, N]");
      stridedCopy(c.data(), outData<uint8_t>(y), ir::dtypeBits(c.dtype()) / 8, {M, N}, broadcastStrides(c.shape(), {M, N}),
                  ctx.threads());
    }
    if (a.dtype() == DType::kFloat32) {
      float* py = outData<float>(y);
      if (has_c && beta != 1.0f)
        for (int64_t i = 0; i < M * N; ++i) py[i] *= beta;
      GemmArgs g;
      g.trans_a = ta; g.trans_b = tb;
      g.M = M; g.N = N; g.K = K;
      g.alpha = alpha;
      g.A = a.data<float>(); g.lda = a.shape()[1];
      g.B = b.data<float>(); g.ldb = b.shape()[1];
      g.beta = has_c ? 1.0f : 0.0f;
      g.C = py; g.ldc = N;
      sgemmParallel(g, ctx.threads());
    } else {
      double* py = outData<double>(y);
      if (has_c && beta != 1.0f)
        for (int64_t i = 0; i < M * N; ++i) py[i] *= beta;
      dgemm(ta, tb, M, N, K, alpha, a.data<double>(), a.shape()[1], b.data<double>(), b.shape()[1], has_c ? 1.0 : 0.0,
            py, N);
    }
    out[0] = std::move(y);
  };
}

}  // namespace ptq::runtime::ops
