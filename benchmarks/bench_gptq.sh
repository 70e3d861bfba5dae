#!/usr/bin/env bash
# bench_gptq.sh: GPTQ time and memory (printed, not a timed test).
#
# Quantizes with the w4a16-gptq preset and prints, per model: whole-run wall time and peak RSS
# (/usr/bin/time), the gptq pass's time, and GPTQ time per layer against layer size (from the report's
# per-layer "seconds": the solver's share; the forward passes are the rest of the pass time).
# Models: the two zoo LMs (their 64 x 128 calibration windows) and a synthetic GPT-2-small-shaped model
# (768 wide, 12 layers, tied head: 85M linear weights; /work/shared/tools/make_gpt2.py or
# ../shared/tools/make_gpt2.py) with 128 random calibration sequences of 128 tokens.
#
# usage: benchmarks/bench_gptq.sh [--threads N] [--models "llama-jargon gpt-fortunes gpt2"] [--work DIR]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZOO=${PTQ_ZOO:-$ROOT/../shared/zoo}
TOOL=${PTQ_TOOL:-$ROOT/build/apps/ptq-tool/ptq-tool}
MAKE_GPT2=${MAKE_GPT2:-$ROOT/../shared/tools/make_gpt2.py}
PY=/usr/bin/python3
THREADS=0
MODELS="llama-jargon gpt-fortunes gpt2"
WORK=${PTQ_CACHE:-$HOME/.cache/ptq-tool}/bench-gptq
while [ $# -gt 0 ]; do
  case $1 in
    --threads) THREADS=$2; shift ;;
    --models) MODELS=$2; shift ;;
    --work) WORK=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_gptq.sh: unknown option $1" >&2; exit 1 ;;
  esac
  shift
done
mkdir -p "$WORK"

for m in $MODELS; do
  if [ "$m" = gpt2 ]; then
    model="$WORK/gpt2.onnx" calib="$WORK/gpt2.calib.i64" shape=128x128
    if [ ! -f "$model" ]; then
      "$PY" "$MAKE_GPT2" --out-dir "$WORK" --lm-head tied --skip-check >&2
      rm -f "$WORK/gpt2.ggml.bin"
    fi
    [ -f "$calib" ] || "$PY" -c "import numpy as np; np.random.default_rng(0).integers(0, 50257, size=(128, 128), dtype=np.int64).tofile('$calib')"
  else
    model="$ZOO/$m.onnx" calib="$ZOO/$m.calib.i64" shape=64x128
  fi
  out="$WORK/$m.w4a16-gptq.onnx" report="$WORK/$m.report.json"
  /usr/bin/time -v "$TOOL" quantize "$model" --config w4a16-gptq --calib "$calib" --calib-shape "$shape" -j "$THREADS" \
    -o "$out" --report "$report" -q 2> "$WORK/$m.time.txt" || { cat "$WORK/$m.time.txt" >&2; exit 1; }
  wall=$(grep "Elapsed (wall clock)" "$WORK/$m.time.txt" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$WORK/$m.time.txt" | awk '{print $NF}')
  "$PY" - "$report" "$m" "$wall" "$rss" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
name, wall, rss_kb = sys.argv[2], sys.argv[3], int(sys.argv[4])
p = next(p for p in r["passes"] if p["name"] == "gptq")
layers = [l for l in r["layers"] if "metrics" in l and "gptq_loss" in l["metrics"]]
weights = sum(l["shape"][0] * l["shape"][1] for l in layers)
print(f"{name}: {len(layers)} layers, {weights / 1e6:.1f}M weights; wall {wall}, peak RSS {rss_kb / 1024:.0f} MB; "
      f"gptq pass {p['seconds']:.1f} s (solver {sum(l['metrics']['seconds'] for l in layers):.1f} s), "
      f"node executions {p['counters']['node_executions']} = "
      f"{p['counters']['node_executions'] / p['counters']['forward_pass_node_executions']:.2f} forward passes")
by_shape = {}
for l in layers:
    by_shape.setdefault(tuple(l["shape"]), []).append(l["metrics"]["seconds"])
for shape, secs in sorted(by_shape.items(), key=lambda kv: kv[0][0] * kv[0][1]):
    print(f"  {shape[0]:>5} x {shape[1]:<5} x{len(secs):<3} solver {sum(secs) / len(secs):.3f} s per layer")
EOF
  rm -f "$out"
done
