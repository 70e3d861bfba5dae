#!/usr/bin/env bash
# bench-rotate.sh: the rotation / reparameterization measuring script (issue 9).
#
# 1. What rotation does to the activations: for llama-jargon, gpt-fortunes, vit_digits and their planted-outlier
#    copies, the fp32 model and its rotated fp32 copy ("pipeline": ["fold-norms", "hadamard-rotation"]) side by
#    side: per-layer input kurtosis and max/mean channel ratio (build/benchmarks/bench_activation_stats); the
#    per-layer tables go to CACHE/stats-NAME.md, the means are printed.
# 2. Accuracy: scripts/bench-smooth.sh with the W4A4 / W4A8 / ViT presets and their naive baselines
#    (benchmarks/configs/w4a4-naive.json: static per-tensor 4-bit activations, MSE observer; w4a4-token.json:
#    per-token 4-bit without rotation): perplexity / top-1, ONNX Runtime latency, -j1 = -j2 byte identity.
#
# usage: scripts/bench-rotate.sh [--quick] [--stats-only] [bench-smooth options...]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZOO=${PTQ_ZOO:-$ROOT/../shared/zoo}
TOOL=${PTQ_TOOL:-$ROOT/build/apps/ptq-tool/ptq-tool}
STATS=${PTQ_STATS:-$ROOT/build/benchmarks/bench_activation_stats}
CACHE=${PTQ_CACHE:-$HOME/.cache/ptq-tool}/bench
PY=/usr/bin/python3
STATS_ONLY=0
PASS=()
for a in "$@"; do
  case $a in
    --stats-only) STATS_ONLY=1 ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    *) PASS+=("$a") ;;
  esac
done
die() { echo "bench-rotate: $*" >&2; exit 2; }
[ -x "$TOOL" ] || die "no ptq-tool at $TOOL"
[ -x "$STATS" ] || die "no $STATS (ninja -C build bench_activation_stats)"
[ -d "$ZOO" ] || die "no zoo at $ZOO"
mkdir -p "$CACHE"
ROT_CFG=$CACHE/rotate-fp32.json
echo '{"name": "rotate-fp32", "pipeline": ["fold-norms", "hadamard-rotation"]}' >"$ROT_CFG"

echo "## Activation statistics: fp32 vs rotated fp32 (kurtosis; max/mean of per-channel absmax), linear-layer inputs"
echo
echo "| model | layers | kurtosis before | after | max/mean before | after |"
echo "|---|---|---|---|---|---|"
for name in llama-jargon gpt-fortunes vit_digits; do
  for variant in plain outliers; do
    src=$ZOO/$name.onnx
    if [ $variant = outliers ]; then
      src=$CACHE/$name.outlier-k3-f40-s0.onnx
      if [ ! -f "$src" ]; then
        "$PY" "$ROOT/scripts/make-outlier-copy.py" "$ZOO/$name.onnx" -o "$src" --channels 3 --factor 40 --seed 0 -q >/dev/null 2>&1 \
          || die "make-outlier-copy.py failed on $name"
      fi
    fi
    rot=$CACHE/$name.$variant.rotated.onnx
    "$TOOL" quantize "$src" --config "$ROT_CFG" -o "$rot" -q >/dev/null 2>&1 || die "rotating $src failed"
    if [ $name = vit_digits ]; then data=(--data "x=$ZOO/calib_x_256x1x20x20_f32.bin" --shape 256x1x20x20 --samples 64)
    else data=(--tokens "$ZOO/$name.val.i64" --windows 16); fi
    table=$CACHE/stats-$name.$variant.md
    "$STATS" "$src" "$rot" "${data[@]}" >"$table"
    label=$name; [ $variant = outliers ] && label="$name+outliers"
    grep '^| mean of' "$table" | awk -F'|' -v m="$label" '{gsub(/ *mean of | layers */,"",$2); printf "| %s | %s |%s|%s|%s|%s|\n", m, $2, $4, $5, $6, $7}'
  done
done
echo
echo "(per-layer tables: $CACHE/stats-*.md)"
[ "$STATS_ONLY" = 1 ] && exit 0

exec "$ROOT/scripts/bench-smooth.sh" --presets "$ROOT/benchmarks/configs/w4a4-naive.json $ROOT/benchmarks/configs/w4a4-token.json w4a4-rotate w4a8 w4a8-rotate w8a8 w8a8-vit w4a4-vit" "${PASS[@]}"
