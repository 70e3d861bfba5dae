#!/usr/bin/python3
"""Independent reference of GPTQ (Frantar et al., ICLR 2023, Algorithm 1) for tests/unit/test_gptq.cc.

Written from the paper, not from the C++ code: float64 throughout, no lazy batching (every column's
error is propagated into all later columns at once), H computed here from the inputs X.

  H = (2/N) X^T X                      X: [N, cols] layer inputs, W: [rows, cols] (row = output channel)
  dead columns (H_jj = 0): H_jj = 1, W[:, j] = 0
  act-order: columns by decreasing diag(H) (stable)
  H += damp * mean(diag H) * I;  U = upper Cholesky factor of H^-1 (H^-1 = U^T U)
  for each column j (in processing order):
      q = Q(W[:, j]);  e = (W[:, j] - q) / U_jj;  W[:, later] -= e U[j, later]

Grid (ptq-tool's lib/quant/grid.h convention, which decides the codes the files hold), in float32:
  symmetric:  scale = amax / (2^(b-1) - 1), zero 0, codes -2^(b-1) .. 2^(b-1)-1
  asymmetric: scale = (hi - lo) / (2^b - 1) (difference in float64), zero = rint(-lo / scale) clipped,
              codes 0 .. 2^b - 1;  lo = min(x, 0), hi = max(x, 0); a zero scale becomes 1
  code = clip(rint(x / scale) + zero) (rint: half to even), x^ = (code - zero) * scale
Parameters: per channel (group 0): fitted on W before any update; groups of g columns: fitted when the
group's first column is reached on the weights as updated so far, or (static, and always with
act-order) on W before any update.

usage: gptq_reference.py W.npy X.npy OUT_PREFIX --bits B [--sym] [--group G] [--act-order]
                         [--static-groups] [--damp D]
writes OUT_PREFIX.codes.npy (uint8 codes as bytes, two's complement when symmetric) and prints JSON:
{"error": ||W X^T - W^ X^T||^2 / N, "rtn_error": the same for round-to-nearest on the same grid}
"""
import argparse
import json

import numpy as np

f32 = np.float32


def params(x, bits, sym):
    x = x.astype(f32)
    lo = min(f32(x.min()), f32(0.0))
    hi = max(f32(x.max()), f32(0.0))
    half = 1 << (bits - 1)
    if sym:
        amax = max(-lo, hi)
        scale = f32(amax / f32(half - 1))
        if not scale > 0:
            scale = f32(1.0)
        return scale, 0, -half, half - 1
    levels = (1 << bits) - 1
    scale = f32((np.float64(hi) - np.float64(lo)) / levels)
    if not scale > 0:
        scale = f32(1.0)
    z = np.rint(f32(-lo) / scale)
    z = min(max(z, f32(0.0)), f32(levels))
    return scale, int(z), 0, levels


def quantize(w, p):
    scale, zero, cmin, cmax = p
    q = np.rint(w.astype(f32) / scale) + f32(zero)
    q = np.clip(q, cmin, cmax)
    return q.astype(np.int64), (q - zero).astype(f32) * scale


def gptq(W, H, bits, sym, group, act_order, static_groups, damp, propagate=True):
    rows, cols = W.shape
    W = W.astype(np.float64).copy()
    H = H.copy()
    dead = np.diag(H) == 0
    H[dead, :] = 0
    H[:, dead] = 0
    H[dead, dead] = 1
    W[:, dead] = 0
    starts = list(range(0, cols, group)) if group else [0]
    group_of = np.zeros(cols, dtype=np.int64)
    for g, s in enumerate(starts):
        group_of[s:] = g
    dynamic = group and not act_order and not static_groups and len(starts) > 1
    P = {}
    if not dynamic:
        for r in range(rows):
            for g, s in enumerate(starts):
                e = starts[g + 1] if g + 1 < len(starts) else cols
                P[r, g] = params(W[r, s:e], bits, sym)
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(cols)
    H = H[perm][:, perm]
    W = W[:, perm]
    H = H + damp * np.mean(np.diag(H)) * np.eye(cols)
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    codes = np.zeros((rows, cols), dtype=np.int64)
    Wq = np.zeros((rows, cols), dtype=np.float64)
    for j in range(cols):
        oj = perm[j]
        g = group_of[oj]
        for r in range(rows):
            if dynamic and oj == starts[g]:
                e = starts[g + 1] if g + 1 < len(starts) else cols
                P[r, g] = params(W[r, j:j + (e - oj)], bits, sym)
            c, dq = quantize(np.array([W[r, j]]), P[r, g])
            codes[r, oj] = c[0]
            Wq[r, oj] = dq[0]
        if propagate:
            err = (W[:, j] - Wq[:, oj]) / U[j, j]
            W[:, j + 1:] -= np.outer(err, U[j, j + 1:])
    return codes, Wq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("w")
    ap.add_argument("x")
    ap.add_argument("out")
    ap.add_argument("--bits", type=int, required=True)
    ap.add_argument("--sym", action="store_true")
    ap.add_argument("--group", type=int, default=0)
    ap.add_argument("--act-order", action="store_true")
    ap.add_argument("--static-groups", action="store_true")
    ap.add_argument("--damp", type=float, default=0.01)
    a = ap.parse_args()
    W = np.load(a.w).astype(np.float64)
    X = np.load(a.x).astype(np.float64)
    N = X.shape[0]
    H = 2.0 / N * (X.T @ X)
    codes, Wq = gptq(W, H, a.bits, a.sym, a.group, a.act_order, a.static_groups, a.damp)
    _, Wr = gptq(W, H, a.bits, a.sym, a.group, a.act_order, a.static_groups, a.damp, propagate=False)
    err = float(np.sum(((W - Wq) @ X.T) ** 2) / N)
    rtn = float(np.sum(((W - Wr) @ X.T) ** 2) / N)
    np.save(a.out + ".codes.npy", (codes & 0xFF).astype(np.uint8))
    print(json.dumps({"error": err, "rtn_error": rtn}))


if __name__ == "__main__":
    main()
