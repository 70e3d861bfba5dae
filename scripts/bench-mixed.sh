#!/usr/bin/env bash
# bench-mixed.sh: mixed precision (bit-allocation) against uniform 3-bit at equal .ptq bytes on the zoo
# language models, perplexity in ONNX Runtime.
#
# For llama-jargon and gpt-fortunes: uniform 3-bit (asymmetric, groups of 128, MSE clip search) and the
# mixed-3bit preset's allocation ({2, 3, 4, 8} bits at avg_bits 3.0 from measured KL sensitivity), each with
# round-to-nearest and with GPTQ codes, calibrated on the zoo's NAME.calib.i64 [64, 128]. Each model is written
# as a .ptq file (its weight bytes printed: codes and zero points at their width, float32 scales), unpacked to
# QDQ and scored by scripts/ort/ort_run.js ppl (zoo protocol, 200 windows of 128).
#
# usage: scripts/bench-mixed.sh [--models "llama-jargon gpt-fortunes"] [--threads N] [--windows W]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZOO=${PTQ_ZOO:-$ROOT/../shared/zoo}
TOOL=${PTQ_TOOL:-$ROOT/build/apps/ptq-tool/ptq-tool}
MODELS="llama-jargon gpt-fortunes"
THREADS=1
WINDOWS=200
while [ $# -gt 0 ]; do
  case $1 in
    --models) MODELS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --windows) WINDOWS=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-mixed.sh: unknown option $1" >&2; exit 1 ;;
  esac
  shift
done
[ -f "$ZOO/llama-jargon.onnx" ] || { echo "bench-mixed.sh: no zoo at $ZOO" >&2; exit 2; }
[ -x "$TOOL" ] || { echo "bench-mixed.sh: build first ($TOOL missing)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# uniform-rtn, mixed-rtn, uniform-gptq, mixed-gptq: the mixed-3bit preset with its last pass swapped.
python3 - "$ROOT/configs/mixed-3bit.json" "$WORK" <<'PY'
import json, sys
preset = json.load(open(sys.argv[1]))
for method in ("rtn", "gptq"):
    for mixed in (False, True):
        c = json.loads(json.dumps(preset))
        c["pipeline"] = (["bit-allocation"] if mixed else []) + [method]
        if not mixed:
            del c["passes"]
        json.dump(c, open(f"{sys.argv[2]}/{'mixed' if mixed else 'uniform'}-{method}.json", "w"))
PY

printf '%-14s %-6s %-8s %12s %10s %8s\n' model method weights ptq_bytes ppl seconds
for m in $MODELS; do
  for method in rtn gptq; do
    for kind in uniform mixed; do
      name=$kind-$method
      t0=$(date +%s.%N)
      "$TOOL" quantize "$ZOO/$m.onnx" --config "$WORK/$name.json" --calib "$ZOO/$m.calib.i64" --calib-shape 64x128 \
        --format packed -o "$WORK/$m.$name.ptq" --report "$WORK/$m.$name.report.json" -j "$THREADS" -q
      t1=$(date +%s.%N)
      "$TOOL" unpack "$WORK/$m.$name.ptq" -o "$WORK/$m.$name.onnx" --format qdq 2>/dev/null
      bytes=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['summary']['weight_bytes_after'])" "$WORK/$m.$name.report.json")
      ppl=$(node "$ROOT/scripts/ort/ort_run.js" ppl "$WORK/$m.$name.onnx" "$ZOO/$m.val.i64" --windows "$WINDOWS" --threads "$THREADS" |
        python3 -c "import json,sys; print('%.3f' % json.loads(sys.stdin.read().strip().splitlines()[-1])['ppl'])")
      printf '%-14s %-6s %-8s %12s %10s %8.1f\n' "$m" "$method" "$kind" "$bytes" "$ppl" "$(echo "$t1 - $t0" | bc)"
      if [ "$kind" = mixed ]; then
        python3 -c "
import json, sys, collections
r = json.load(open(sys.argv[1]))
c = collections.Counter(l['bits'] for l in r['layers'] if 'bits' in l)
print('    bits per layer:', dict(sorted(c.items())), ' '.join('%s=%d' % (l['node'], l['bits']) for l in r['layers'] if l.get('bits', 3) != 3))
" "$WORK/$m.$name.report.json"
      fi
    done
  done
done
