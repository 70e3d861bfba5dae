#!/usr/bin/env bash
# bench-smooth.sh: the SmoothQuant measuring script (issue 8).
#
# For llama-jargon, gpt-fortunes and their planted-outlier copies (scripts/make-outlier-copy.py), quantizes with
# every W8A8 preset that exists (configs/w8a8.json: naive static; configs/w8a8-smooth.json, configs/w8a8-dynamic.json
# when present) on the zoo's NAME.calib.i64 and prints: perplexity (ptq-tool eval, zoo protocol: windows of 128 of
# NAME.val.i64), its change vs fp32, ONNX Runtime latency of a [1,128] window vs fp32 (scripts/ort/time_model.js), and
# whether quantizing with --threads 1 and --threads 2 gives byte-identical files. For vit_digits and its outlier copy:
# top-1 accuracy on the 1000 test digits and top-1 agreement with fp32.
#
# usage: scripts/bench-smooth.sh [--quick] [options]   (--help for the options)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZOO=${PTQ_ZOO:-$ROOT/../shared/zoo}
TOOL=${PTQ_TOOL:-$ROOT/build/apps/ptq-tool/ptq-tool}
CACHE=${PTQ_CACHE:-$HOME/.cache/ptq-tool}/bench
PY=/usr/bin/python3
QUICK=0
WINDOWS=
RUNS=
OPT=all
ORT_THREADS=1
EVAL_THREADS=0
CHANNELS=3 FACTOR=40 SEED=0
MODELS="llama-jargon gpt-fortunes vit_digits"
PRESETS="w8a8 w8a8-smooth w8a8-dynamic"
KEEP=0
CONFIGS=

usage() {
  cat <<EOF
usage: scripts/bench-smooth.sh [--quick] [options]

  --quick            40 eval windows, 250 test digits, 30 timed runs (default: 200 windows, 1000 digits, 100 runs)
  --windows N        eval windows of 128 tokens (overrides the mode)
  --runs N           timed ONNX Runtime runs per model (median reported; after N/10, at least 3, warm-up runs)
  --opt LEVEL        ONNX Runtime graph optimisation for timing: disable|basic|extended|all (default all)
  --ort-threads N    ONNX Runtime intra-op threads for timing (default 1)
  --eval-threads N   ptq-tool eval threads (default 0 = all cores)
  --models "A B"     subset of: llama-jargon gpt-fortunes vit_digits (default all three)
  --presets "A B"    presets to try (default "w8a8 w8a8-smooth w8a8-dynamic"; missing configs are skipped);
                     an entry with a / or ending in .json is a config file, shown under its basename
  --channels K --factor F --seed S   outlier copies: K channels per norm scaled by F (default 3, 40, 0)
  --tool BIN         ptq-tool binary (default \$PTQ_TOOL or build/apps/ptq-tool/ptq-tool)
  --zoo DIR          evaluation zoo (default \$PTQ_ZOO or ../shared/zoo beside the checkout)
  --cache DIR        outlier copies, quantized models, logs (default \${PTQ_CACHE:-~/.cache/ptq-tool}/bench)
  --configs DIR      where the presets' NAME.json live (default configs/ of this checkout)
  --keep             keep the quantized models (default: deleted after measuring)

The table is printed on stdout and saved as CACHE/results-<mode>.md (with a .tsv beside it).
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --full) QUICK=0 ;;
    --windows) WINDOWS=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --opt) OPT=$2; shift ;;
    --ort-threads) ORT_THREADS=$2; shift ;;
    --eval-threads) EVAL_THREADS=$2; shift ;;
    --models) MODELS=$2; shift ;;
    --presets) PRESETS=$2; shift ;;
    --channels) CHANNELS=$2; shift ;;
    --factor) FACTOR=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --tool) TOOL=$2; shift ;;
    --zoo) ZOO=$2; shift ;;
    --cache) CACHE=$2; shift ;;
    --keep) KEEP=1 ;;
    --configs) CONFIGS=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-smooth: unknown argument '$1' (see --help)" >&2; exit 1 ;;
  esac
  shift
done

if [ "$QUICK" = 1 ]; then MODE=quick; : "${WINDOWS:=40}" "${RUNS:=30}"; DIGITS=250
else MODE=full; : "${WINDOWS:=200}" "${RUNS:=100}"; DIGITS=1000; fi
WARMUP=$(( RUNS / 10 > 3 ? RUNS / 10 : 3 ))

die() { echo "bench-smooth: $*" >&2; exit 2; }
log() { echo "[bench-smooth] $*" >&2; }
[ -x "$TOOL" ] || die "no ptq-tool binary at $TOOL (build it, or give --tool / PTQ_TOOL)"
[ -d "$ZOO" ] || die "no zoo at $ZOO (give --zoo or PTQ_ZOO)"
"$PY" -c 'import onnx, numpy' 2>/dev/null || die "$PY with python3-onnx and python3-numpy is needed (apt-get install python3-onnx python3-numpy)"
command -v node >/dev/null || die "node is needed for ONNX Runtime (scripts/setup-deps.sh)"
[ -d "$ROOT/scripts/ort/node_modules/onnxruntime-node" ] || die "onnxruntime-node missing in scripts/ort/node_modules (scripts/setup-deps.sh)"
TOOL=$(cd "$(dirname "$TOOL")" && pwd)/$(basename "$TOOL")
ZOO=$(cd "$ZOO" && pwd)
mkdir -p "$CACHE/run" "$CACHE/logs"
CACHE=$(cd "$CACHE" && pwd)
RUN=$CACHE/run LOGS=$CACHE/logs

# json FILE EXPR: print a field of a JSON report (EXPR is Python on `d`)
json() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# ---------------------------------------------------------------- outlier copies (cached)
OUTLIER_TAG=k$CHANNELS-f$FACTOR-s$SEED
outlier_copy() {   # NAME -> path of the (cached, checked) outlier copy
  local name=$1 src=$ZOO/$1.onnx out=$CACHE/$1.outlier-$OUTLIER_TAG.onnx
  if [ ! -f "$out" ] || [ "$src" -nt "$out" ] || [ "$ROOT/scripts/make-outlier-copy.py" -nt "$out" ]; then
    log "making the outlier copy of $name ($OUTLIER_TAG)"
    "$PY" "$ROOT/scripts/make-outlier-copy.py" "$src" -o "$out" --channels "$CHANNELS" --factor "$FACTOR" \
      --seed "$SEED" --json "$CACHE/$name.outlier-$OUTLIER_TAG.json" -q >"$LOGS/$name.outlier.log" 2>&1 \
      || { cat "$LOGS/$name.outlier.log" >&2; die "make-outlier-copy.py failed on $name"; }
    sed 's/^/  /' "$LOGS/$name.outlier.log" >&2
  fi
  echo "$out"
}

# ---------------------------------------------------------------- presets
CONFIGS=$(cd "${CONFIGS:-$ROOT/configs}" && pwd) || die "no configs folder ${CONFIGS:-$ROOT/configs}"
PRESET_FILES=()
declare -A CFG=()
for p in $PRESETS; do
  if [[ $p == */* || $p == *.json ]]; then          # a config file of one's own (ablations): named by its basename
    [ -f "$p" ] || die "config file $p does not exist"
    n=$(basename "${p%.json}"); CFG[$n]=$(cd "$(dirname "$p")" && pwd)/$(basename "$p"); PRESET_FILES+=("$n")
  elif [ -f "$CONFIGS/$p.json" ]; then CFG[$p]=$CONFIGS/$p.json; PRESET_FILES+=("$p")
  else echo "note: $CONFIGS/$p.json does not exist (yet): preset $p skipped" >&2; fi
done
[ ${#PRESET_FILES[@]} -gt 0 ] || die "none of the presets ($PRESETS) exists in $CONFIGS"
OBSERVER=$(json "$CONFIGS/w8a8.json" 'd.get("activations",{}).get("observer","minmax")' 2>/dev/null || echo '?')

# quantize SRC PRESET DST CALIBARGS... : quantize at 1 and 2 threads; sets QRC (exit code), QDET (identical?), QERR
quantize() {
  local src=$1 preset=$2 dst=$3; shift 3
  local base=${dst%.onnx} lg
  lg=$LOGS/$(basename "$base")
  QRC=0 QDET=- QERR=
  "$TOOL" quantize "$src" --config "${CFG[$preset]}" "$@" -o "$base.t1.onnx" --threads 1 -q \
    --report "$lg.report.json" >"$lg.log" 2>&1 || QRC=$?
  if [ "$QRC" != 0 ]; then QERR=$(grep -m1 -v '^\s*$' "$lg.log" | cut -c1-160 || true); return 0; fi
  "$TOOL" quantize "$src" --config "${CFG[$preset]}" "$@" -o "$base.t2.onnx" --threads 2 -q \
    >>"$lg.log" 2>&1 || { QRC=$?; QERR="--threads 2 failed: $(tail -1 "$lg.log")"; return 0; }
  if cmp -s "$base.t1.onnx" "$base.t2.onnx"; then QDET=yes; else QDET=NO; fi
  mv "$base.t1.onnx" "$dst"; rm -f "$base.t2.onnx"
}

# time_all MODEL... : ORT latency of the models, interleaved run by run; sets TIMES (median ms, or ERR, per model)
time_all() {
  TIMES=()
  if node "$ROOT/scripts/ort/time_model.js" "$@" --runs "$RUNS" --warmup "$WARMUP" --opt "$OPT" \
      --threads "$ORT_THREADS" --tokens "$TOKENS" --seq 128 >"$RUN/time.jsonl" 2>"$LOGS/time.err"; then
    mapfile -t TIMES < <("$PY" -c 'import json,sys; [print(json.loads(l)["median_ms"]) for l in open(sys.argv[1])]' "$RUN/time.jsonl")
  else
    echo "warning: timing failed: $(tail -1 "$LOGS/time.err")" >&2
    for _ in "$@"; do TIMES+=(ERR); done
  fi
}

ratio() { "$PY" -c 'import sys; a,b=sys.argv[1:]; print("-" if "ERR" in (a,b) else "%.2fx" % (float(a)/float(b)))' "$1" "$2"; }
pct() { "$PY" -c 'import sys; a,b=map(float,sys.argv[1:]); print("%+.2f%%" % (100*(a/b-1)))' "$1" "$2"; }

TSV=$CACHE/results-$MODE.tsv MD=$CACHE/results-$MODE.md
LM_ROWS=() VIT_ROWS=()
printf 'kind\tmodel\tpreset\tmetric\tvalue\tdelta\tagreement\tlatency_ms\tlatency_vs_fp32\tthreads_1_2_identical\n' >"$TSV"

# ---------------------------------------------------------------- language models
for name in $MODELS; do
  case $name in llama-jargon|gpt-fortunes) ;; vit_digits) continue ;; *) die "unknown model $name" ;; esac
  [ -f "$ZOO/$name.onnx" ] || die "missing $ZOO/$name.onnx"
  TOKENS=$ZOO/$name.val.i64
  for variant in orig outlier; do
    if [ $variant = orig ]; then model=$ZOO/$name.onnx label=$name
    else model=$(outlier_copy "$name"); label="$name+outliers"; fi
    ppl_fp='' done_q=()
    declare -A res=()
    for preset in "${PRESET_FILES[@]}"; do
      q=$RUN/$(basename "${model%.onnx}").$preset.onnx
      log "$label: quantize $preset (threads 1 and 2)"
      quantize "$model" "$preset" "$q" --calib "$ZOO/$name.calib.i64" --calib-shape 64x128
      if [ "$QRC" != 0 ]; then res[$preset]="FAILED (exit $QRC): $QERR|||||"; continue; fi
      log "$label: eval $preset ($WINDOWS windows)"
      rep=$LOGS/$(basename "${q%.onnx}").eval.json
      if ! "$TOOL" eval "$model" "$q" --tokens "$TOKENS" --seq 128 --windows "$WINDOWS" --report "$rep" \
          --threads "$EVAL_THREADS" >"$LOGS/$(basename "${q%.onnx}").eval.log" 2>&1; then
        res[$preset]="eval FAILED (see $LOGS)|||||$QDET"; rm -f "$q"; continue
      fi
      ppl_fp=$(json "$rep" '"%.4f" % d["language_model"]["perplexity_reference"]')
      ppl=$(json "$rep" '"%.4f" % d["language_model"]["perplexity_candidate"]')
      agree=$(json "$rep" '"%.4f" % d["language_model"]["top1_agreement"]')
      res[$preset]="$ppl|$(pct "$ppl" "$ppl_fp")|$agree|@|@|$QDET"
      done_q+=("$preset")
    done
    log "$label: ONNX Runtime latency of fp32 and ${done_q[*]:-nothing else} (interleaved)"
    qfiles=()
    for preset in "${done_q[@]}"; do qfiles+=("$RUN/$(basename "${model%.onnx}").$preset.onnx"); done
    time_all "$model" "${qfiles[@]}"
    t_fp=${TIMES[0]}
    LM_ROWS+=("$label|fp32|${ppl_fp:-?}||1|$t_fp|1.00x|")
    printf 'lm\t%s\tfp32\tppl\t%s\t\t1\t%s\t1.00x\t\n' "$label" "${ppl_fp:-?}" "$t_fp" >>"$TSV"
    k=1
    for preset in "${PRESET_FILES[@]}"; do
      r=${res[$preset]}
      if [[ $r == *'|@|@|'* ]]; then
        t=${TIMES[$k]}; k=$((k + 1))
        r=${r/|@|@|/|$t|$(ratio "$t" "$t_fp")|}
      fi
      LM_ROWS+=("$label|$preset|$r")
      printf 'lm\t%s\t%s\tppl\t%s\n' "$label" "$preset" "${r//|/$'\t'}" >>"$TSV"
    done
    [ "$KEEP" = 1 ] || rm -f "${qfiles[@]}"
    unset res
  done
done

# ---------------------------------------------------------------- ViT
for name in $MODELS; do
  [ "$name" = vit_digits ] || continue
  X=$ZOO/test_x_1000x1x20x20_f32.bin Y=$ZOO/test_y_1000_i64.bin C=$ZOO/calib_x_256x1x20x20_f32.bin
  for variant in orig outlier; do
    if [ $variant = orig ]; then model=$ZOO/$name.onnx label=$name
    else model=$(outlier_copy "$name"); label="$name+outliers"; fi
    acc_fp='' rows=()
    for preset in "${PRESET_FILES[@]}"; do
      q=$RUN/$(basename "${model%.onnx}").$preset.onnx
      log "$label: quantize $preset (threads 1 and 2)"
      quantize "$model" "$preset" "$q" --calib "x=$C" --calib-shape 256x1x20x20
      if [ "$QRC" != 0 ]; then rows+=("$label|$preset|FAILED (exit $QRC): $QERR|||"); continue; fi
      log "$label: eval $preset ($DIGITS digits)"
      rep=$LOGS/$(basename "${q%.onnx}").eval.json
      if ! "$TOOL" eval "$model" "$q" --data "x=$X" --data-shape 1000x1x20x20 --labels "$Y" --samples "$DIGITS" \
          --batch 50 --report "$rep" --threads "$EVAL_THREADS" >"$LOGS/$(basename "${q%.onnx}").eval.log" 2>&1; then
        rows+=("$label|$preset|eval FAILED (see $LOGS)|||$QDET"); continue
      fi
      acc_fp=$(json "$rep" '"%.3f" % d["outputs"][0]["classifier"]["accuracy_reference"]')
      acc=$(json "$rep" '"%.3f" % d["outputs"][0]["classifier"]["accuracy_candidate"]')
      agree=$(json "$rep" '"%.3f" % d["outputs"][0]["classifier"]["top1_agreement"]')
      rows+=("$label|$preset|$acc|$("$PY" -c "print('%+.3f' % ($acc - $acc_fp))")|$agree|$QDET")
      printf 'vit\t%s\t%s\taccuracy\t%s\t%s\t%s\t\t\t%s\n' "$label" "$preset" "$acc" \
        "$("$PY" -c "print('%+.3f' % ($acc - $acc_fp))")" "$agree" "$QDET" >>"$TSV"
      [ "$KEEP" = 1 ] || rm -f "$q"
    done
    VIT_ROWS+=("$label|fp32|${acc_fp:-?}||1|" "${rows[@]}")
    printf 'vit\t%s\tfp32\taccuracy\t%s\t\t1\t\t\t\n' "$label" "${acc_fp:-?}" >>"$TSV"
  done
done

# ---------------------------------------------------------------- table
{
  echo "## bench-smooth ($MODE): $(date -u +%Y-%m-%dT%H:%MZ), $("$TOOL" --version 2>/dev/null | head -1)"
  echo
  echo "Outlier copies: $CHANNELS channels per norm x$FACTOR (seed $SEED). Calibration: NAME.calib.i64 (64x128) /"
  echo "256 calibration digits. configs/w8a8.json activation observer: $OBSERVER."
  if [ ${#LM_ROWS[@]} -gt 0 ]; then
    echo
    echo "Language models: ptq-tool eval perplexity on $WINDOWS windows of 128 (NAME.val.i64), next-token top-1"
    echo "agreement with fp32; ONNX Runtime latency of one [1,128] window (median of $RUNS, opt=$OPT, $ORT_THREADS thread(s))."
    echo
    echo "| model | preset | ppl | vs fp32 | top-1 agree | latency ms | vs fp32 | -j1 = -j2 |"
    echo "|---|---|---|---|---|---|---|---|"
    for r in "${LM_ROWS[@]}"; do echo "| ${r//|/ | } |"; done
  fi
  if [ ${#VIT_ROWS[@]} -gt 0 ]; then
    echo
    echo "vit_digits: top-1 accuracy on $DIGITS test digits and top-1 agreement with fp32 (ptq-tool eval)."
    echo
    echo "| model | preset | accuracy | vs fp32 | top-1 agree | -j1 = -j2 |"
    echo "|---|---|---|---|---|---|"
    for r in "${VIT_ROWS[@]}"; do echo "| ${r//|/ | } |"; done
  fi
} | tee "$MD"
log "table saved in $MD (and $TSV); logs in $LOGS"
