#!/usr/bin/env bash
# bench-gptq.sh: GPTQ against round-to-nearest on the zoo language models, perplexity in ONNX Runtime.
#
# For llama-jargon and gpt-fortunes, quantizes weights (all linears, lm head included) at 4-bit groups of 128,
# 3-bit per channel and 2-bit groups of 64 (asymmetric, MSE clip search of every range) with rtn, gptq and
# gptq with act-order, calibrating on the zoo's NAME.calib.i64 [64, 128], and prints validation perplexity in
# ONNX Runtime (scripts/ort/ort_run.js ppl: zoo protocol, 200 windows of 128), the share of RTN's gap to fp32
# that GPTQ closes, and the quantize wall time (on a shared machine: indicative only).
#
# usage: scripts/bench-gptq.sh [--models "llama-jargon gpt-fortunes"] [--samples N] [--threads N] [--windows W]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZOO=${PTQ_ZOO:-$ROOT/../shared/zoo}
TOOL=${PTQ_TOOL:-$ROOT/build/apps/ptq-tool/ptq-tool}
MODELS="llama-jargon gpt-fortunes"
SAMPLES=64
THREADS=0
WINDOWS=200
while [ $# -gt 0 ]; do
  case $1 in
    --models) MODELS=$2; shift ;;
    --samples) SAMPLES=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --windows) WINDOWS=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-gptq.sh: unknown option $1" >&2; exit 1 ;;
  esac
  shift
done
[ -f "$ZOO/llama-jargon.onnx" ] || { echo "bench-gptq.sh: no zoo at $ZOO" >&2; exit 2; }
[ -x "$TOOL" ] || { echo "bench-gptq.sh: build first ($TOOL missing)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

config() {  # NAME BITS GRANULARITY GROUP PIPELINE PASSES
  local group=""
  [ "$3" = group ] && group=", \"group_size\": $4"
  cat > "$WORK/$1.json" <<EOF
{"name": "$1", "format": "qdq", "pipeline": ["$5"], "passes": {$6},
 "weights": {"bits": $2, "symmetric": false, "granularity": "$3"$group, "clip_search": "mse"}}
EOF
}

ppl() { node "$ROOT/scripts/ort/ort_run.js" ppl "$1" "$2" --windows "$WINDOWS" | tail -1 | sed 's/.*"ppl":\([0-9.e+-]*\).*/\1/'; }

printf '| model | setting | fp32 | RTN | GPTQ | GPTQ act-order | gap closed (GPTQ / act-order) | seconds RTN / GPTQ / act-order |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for m in $MODELS; do
  model="$ZOO/$m.onnx" val="$ZOO/$m.val.i64" calib="$ZOO/$m.calib.i64"
  fp32=$(ppl "$model" "$val")
  for s in "4 group 128" "3 channel 0" "2 group 64"; do
    set -- $s
    label="$1-bit $( [ "$2" = group ] && echo "g$3" || echo "per-channel")"
    declare -A P T
    for method in rtn gptq gptq-ao; do
      case $method in
        rtn) config "$method" "$1" "$2" "$3" rtn "" ;;
        gptq) config "$method" "$1" "$2" "$3" gptq "" ;;
        gptq-ao) config "$method" "$1" "$2" "$3" gptq '"gptq": {"act_order": true}' ;;
      esac
      out="$WORK/$m.$method.onnx"
      t0=$(date +%s.%N)
      nice "$TOOL" quantize "$model" --config "$WORK/$method.json" --calib "$calib" --calib-shape 64x128 \
        --calib-samples "$SAMPLES" -j "$THREADS" -o "$out" -q
      T[$method]=$(echo "$(date +%s.%N) - $t0" | bc)
      P[$method]=$(ppl "$out" "$val")
      rm -f "$out"
    done
    closed() { echo "scale=2; (${P[rtn]} - $1) / (${P[rtn]} - $fp32)" | bc; }
    printf '| %s | %s | %.3f | %.3f | %.3f | %.3f | %s / %s | %.1f / %.1f / %.1f |\n' "$m" "$label" "$fp32" "${P[rtn]}" \
      "${P[gptq]}" "${P[gptq-ao]}" "$(closed "${P[gptq]}")" "$(closed "${P[gptq-ao]}")" "${T[rtn]}" "${T[gptq]}" "${T[gptq-ao]}"
  done
done
