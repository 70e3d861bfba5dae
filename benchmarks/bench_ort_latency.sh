#!/bin/bash
# How fast the quantized outputs run in ONNX Runtime (issue 12, target 4): fp32 against w8a8 (QDQ),
# w4a16 as MatMulNBits with accuracy_level 0 (fp32 compute) and 4 (int8 compute), for the zoo LMs
# and, with --gpt2, the GPT-2-small-shaped model of ../shared/tools/make_gpt2.py. Each model's
# variants are timed in one ORT process, interleaved (benchmarks/bench_ort_latency.js), so the
# ratios to fp32 are measured in the same run. Prints median ms per run and the ratio fp32/variant
# (> 1: faster than fp32).
#
# usage: benchmarks/bench_ort_latency.sh [--threads N] [--shapes "1x128 8x128"] [--gpt2] [--work DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOL=${PTQ_TOOL:-$ROOT/build/apps/ptq-tool/ptq-tool}
ZOO=${PTQ_ZOO:-$ROOT/../shared/zoo}
MAKE_GPT2=${MAKE_GPT2:-$ROOT/../shared/tools/make_gpt2.py}
PY=/usr/bin/python3
THREADS=1 SHAPES="1x128 8x128" WORK=/tmp/ptq-bench-ort MODELS="llama-jargon gpt-fortunes"
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift ;;
    --shapes) SHAPES=$2; shift ;;
    --gpt2) MODELS="$MODELS gpt2" ;;
    --work) WORK=$2; shift ;;
    *) echo "bench_ort_latency.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$TOOL" ] || { echo "bench_ort_latency.sh: no $TOOL (build first)" >&2; exit 2; }
mkdir -p "$WORK"

printf '%-14s %-7s %10s %16s %16s %16s\n' model shape "fp32 ms" "w8a8 ms (x)" "w4a16 l0 ms (x)" "w4a16 l4 ms (x)"
for m in $MODELS; do
  if [ "$m" = gpt2 ]; then
    model="$WORK/gpt2.onnx" calib="$WORK/gpt2.calib.i64" cshape=32x128
    if [ ! -f "$model" ]; then
      "$PY" "$MAKE_GPT2" --out-dir "$WORK" --lm-head tied --skip-check >&2
      rm -f "$WORK/gpt2.ggml.bin"
    fi
    [ -f "$calib" ] || "$PY" -c "import numpy as np; np.random.default_rng(0).integers(0, 50257, size=(32, 128), dtype=np.int64).tofile('$calib')"
  else
    model="$ZOO/$m.onnx" calib="$ZOO/$m.calib.i64" cshape=64x128
  fi
  q() { "$TOOL" quantize "$model" -q -j "$THREADS" "$@"; }
  q -c w8a8 --calib "$calib" --calib-shape "$cshape" -o "$WORK/$m.w8a8.onnx"
  q -c w4a16 --format matmulnbits -o "$WORK/$m.w4a16-l0.onnx"
  q -c w4a16 --format matmulnbits --accuracy-level 4 -o "$WORK/$m.w4a16-l4.onnx"
  for shape in $SHAPES; do
    out=$(node "$ROOT/benchmarks/bench_ort_latency.js" "$calib" "$shape" --threads "$THREADS" "$model" \
      "$WORK/$m.w8a8.onnx" "$WORK/$m.w4a16-l0.onnx" "$WORK/$m.w4a16-l4.onnx")
    mapfile -t ms < <(sed -E 's/.*"ms":([0-9.]+).*/\1/' <<<"$out")
    cell() { printf '%.2f (%.2fx)' "$1" "$(echo "${ms[0]} / $1" | bc -l)"; }
    printf '%-14s %-7s %10.2f %16s %16s %16s\n' "$m" "$shape" "${ms[0]}" "$(cell "${ms[1]}")" "$(cell "${ms[2]}")" "$(cell "${ms[3]}")"
  done
done
