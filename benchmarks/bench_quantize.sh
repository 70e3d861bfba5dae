#!/usr/bin/env bash
# bench_quantize.sh: end-to-end quantize time and peak memory against ggml's quantizer, measured in
# the same run (printed, not a timed test).
#
# Makes the GPT-2-small-shaped model of ../shared/tools/make_gpt2.py once (163M parameters; the same
# seeded weights as ONNX with inline weights and as the legacy ggml file that ggml's gpt-2-quantize
# reads), then, interleaved RUNS times at one thread: ptq-tool quantize with w4a16 (int4 g128, MSE
# clip search, MatMulNBits), the same without the clip search (w4a16-rtn: the work q4_0 does), and
# w8a16 (int8 per channel, QDQ), and, given its path, gpt-2-quantize
# q4_0 and q8_0. Prints the median wall / user+sys time and peak RSS of each (/usr/bin/time) and the
# ratios: ptq-tool w4a16 and w4a16-rtn / ggml q4_0, w8a16 / q8_0, and peak RSS / model file.
# With --ggml-perf (ggml's test-quantize-perf) it also compares the int8 and int4 kernels on a 64 MB
# fp32 matrix: bench_rtn's int8 per-channel and int4 g128, writing into buffers allocated once as
# test-quantize-perf does, against q8_0 and q4_0 in GB/s of fp32.
# ggml is built outside this repository from its own tree with its defaults (never committed), e.g.
#   cmake -S ggml -B ggml/build -DGGML_BUILD_TESTS=ON -DGGML_BUILD_EXAMPLES=ON && ninja -C ggml/build gpt-2-quantize test-quantize-perf
#
# usage: benchmarks/bench_quantize.sh [--ggml-quantize PATH] [--ggml-perf PATH] [--runs N] [--work DIR]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOL=${PTQ_TOOL:-$ROOT/build/apps/ptq-tool/ptq-tool}
BENCH_RTN=${PTQ_BENCH_RTN:-$ROOT/build/benchmarks/bench_rtn}
MAKE_GPT2=${MAKE_GPT2:-$ROOT/../shared/tools/make_gpt2.py}
PY=/usr/bin/python3
GGML_QUANTIZE= GGML_PERF= RUNS=3
WORK=${PTQ_CACHE:-$HOME/.cache/ptq-tool}/bench-quantize
while [ $# -gt 0 ]; do
  case $1 in
    --ggml-quantize) GGML_QUANTIZE=$2; shift ;;
    --ggml-perf) GGML_PERF=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --work) WORK=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_quantize.sh: unknown option $1" >&2; exit 1 ;;
  esac
  shift
done
[ -x "$TOOL" ] || { echo "bench_quantize.sh: no $TOOL (build first)" >&2; exit 1; }
mkdir -p "$WORK"
model="$WORK/gpt2.onnx" ggml_model="$WORK/gpt2.ggml.bin"
if [ ! -f "$model" ] || [ ! -f "$ggml_model" ]; then
  [ -f "$MAKE_GPT2" ] || { echo "bench_quantize.sh: needs $MAKE_GPT2 (../shared/tools)" >&2; exit 1; }
  "$PY" "$MAKE_GPT2" --out-dir "$WORK" --skip-check >&2
fi

# One timed run: name, then the command. Appends "name wall cpu rss_kb" to $WORK/times.txt.
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time.txt" "$@" > "$WORK/out.txt" 2>&1 || { cat "$WORK/out.txt" >&2; exit 1; }
  read -r wall user sys rss < "$WORK/time.txt"
  echo "$name $wall $(echo "$user + $sys" | bc) $rss" >> "$WORK/times.txt"
}
# w4a16 without its MSE clip search: plain round-to-nearest, as q4_0 (which also keeps no error figures).
sed 's/"clip_search": "mse"/"clip_search": "none"/; s/"name": "w4a16"/"name": "w4a16-rtn"/' \
  "$ROOT/configs/w4a16.json" > "$WORK/w4a16-rtn.json"
: > "$WORK/times.txt"
for ((r = 1; r <= RUNS; r++)); do
  timed "ptq-w4a16" "$TOOL" quantize "$model" --config w4a16 -j 1 -q -o "$WORK/out.w4a16.onnx"
  timed "ptq-w4a16-rtn" "$TOOL" quantize "$model" --config "$WORK/w4a16-rtn.json" -j 1 -q -o "$WORK/out.w4a16-rtn.onnx"
  [ -n "$GGML_QUANTIZE" ] && timed "ggml-q4_0" "$GGML_QUANTIZE" "$ggml_model" "$WORK/out.q4_0.bin" q4_0
  timed "ptq-w8a16" "$TOOL" quantize "$model" --config w8a16 -j 1 -q -o "$WORK/out.w8a16.onnx"
  [ -n "$GGML_QUANTIZE" ] && timed "ggml-q8_0" "$GGML_QUANTIZE" "$ggml_model" "$WORK/out.q8_0.bin" q8_0
done
rm -f "$WORK"/out.*

"$PY" - "$WORK/times.txt" "$(stat -c %s "$model")" "$RUNS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
size, runs = int(sys.argv[2]), int(sys.argv[3])
med = {}
for name in dict.fromkeys(r[0] for r in rows):
    mine = [r for r in rows if r[0] == name]
    med[name] = tuple(statistics.median(float(r[i]) for r in mine) for i in (1, 2, 3))
print(f"GPT-2-small-shaped model, {size / 1e6:.0f} MB ONNX file; median of {runs} interleaved runs, 1 thread")
print(f"{'run':<14} {'wall s':>8} {'cpu s':>8} {'peak RSS':>10} {'RSS/file':>9}")
for name, (wall, cpu, rss) in med.items():
    print(f"{name:<14} {wall:8.2f} {cpu:8.2f} {rss / 1024:7.0f} MB {rss * 1024 / size:8.2f}x")
for mine, theirs in (("ptq-w4a16", "ggml-q4_0"), ("ptq-w4a16-rtn", "ggml-q4_0"), ("ptq-w8a16", "ggml-q8_0")):
    if theirs in med:
        a, b = med[mine], med[theirs]
        print(f"{mine} / {theirs}: wall {a[0] / b[0]:.2f}x, cpu {a[1] / b[1]:.2f}x, peak RSS {a[2] / b[2]:.2f}x")
EOF

if [ -n "$GGML_PERF" ]; then
  [ -x "$BENCH_RTN" ] || { echo "bench_quantize.sh: no $BENCH_RTN (ninja bench_rtn)" >&2; exit 1; }
  ours=$("$BENCH_RTN")  # no arguments: the kernels alone
  theirs=$("$GGML_PERF" --type q8_0 --type q4_0 --op quantize_row_q --size 16777216 -i 5)
  int8=$(echo "$ours" | awk '/^int8 per-channel sym, into buffers/ {print $(NF-5)}')
  int4=$(echo "$ours" | awk '/^int4 group-128 asym, into buffers/ {print $(NF-5)}')
  q8=$(echo "$theirs" | awk '/^q8_0/ {t = 1} t && /float32 throughput/ {print $4; exit}')
  q4=$(echo "$theirs" | awk '/^q4_0/ {t = 1} t && /float32 throughput/ {print $4; exit}')
  echo "kernels, 64 MB fp32 matrix, 1 thread (GB/s of fp32): int8 per-channel $int8 vs q8_0 $q8 ($(echo "scale=2; $int8 / $q8" | bc)x);" \
       "int4 g128 asym $int4 vs q4_0 $q4 ($(echo "scale=2; $int4 / $q4" | bc)x)"
fi
