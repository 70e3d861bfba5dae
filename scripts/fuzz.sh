#!/usr/bin/env bash
# Bounded libFuzzer runs of every reader (tests/fuzz/harness.h): ONNX model, .ptq, .npy, .npz, .pb,
# config, batch manifest. Builds build-fuzz/ with clang-14 (-DPTQ_FUZZ=ON: coverage + ASan + UBSan), seeds each target
# from tests/fuzz/{seeds,regressions}/<target> plus the bundled and zoo models, the ONNX node-test
# models (libonnx-testdata) and .ptq files made from the digits CNN, runs each for SECONDS, and fails
# on any finding (crash, sanitizer report, uncaught exception = the CLI's exit 5, timeout, or an
# allocation over the limit). Findings land in build-fuzz/findings/<target>/; minimize one with
#   build-fuzz/tests/fuzz/fuzz_<target> -minimize_crash=1 -runs=100000 FILE
# and keep it in tests/fuzz/regressions/<target>/ (the normal test suite replays that folder).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   SECONDS per target (default 60); targets: onnx ptq npy npz pb config manifest
#   scripts/fuzz.sh --ci [TARGET...]        the CI run: a fixed number of executions per target (about 15 s
#                                           each on a CI machine) from libFuzzer seed 1 and a fresh corpus, so
#                                           the same tree gives the same result anywhere (a time bound would
#                                           explore further on a faster machine); 120 s per target at most
#   PTQ_FUZZ_NO_BUILD=1 scripts/fuzz.sh ... run the targets already built in build-fuzz/
#
# Exit status: 0 no finding; 1 a finding or a build failure; 77 when clang-14 / libFuzzer are not
# installed (scripts/setup-deps.sh installs them when it can), after saying so.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ci=0
if [[ "${1:-}" == "--ci" ]]; then
  ci=1
  seconds=120
else
  seconds="${1:-60}"
  [[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 1; }
fi
shift || true
# --ci executions per target: ~15 s at the rates a 2-core CI machine measured (onnx 354/s, ptq 422/s,
# npy 41k/s, npz 41k/s, pb 1.4k/s, config 9.1k/s).
declare -A ci_runs=([onnx]=5000 [ptq]=6000 [npy]=500000 [npz]=500000 [pb]=20000 [config]=120000 [manifest]=40000)
targets=("$@")
((${#targets[@]})) || targets=(onnx ptq npy npz pb config manifest)
build="$root/build-fuzz"
say() { printf 'fuzz.sh: %s\n' "$*" >&2; }

# --- toolchain: clang-14 with libFuzzer, or skip visibly
cxx="$(command -v clang++-14 || true)"
cc="$(command -v clang-14 || true)"
if [[ -z "$cxx" || -z "$cc" ]]; then
  say "skipped: clang-14 is not installed (apt-get install clang-14 libclang-rt-14-dev libfuzzer-14-dev libomp-14-dev)"
  exit 77
fi
probe="$(mktemp -d "${TMPDIR:-/tmp}/ptq-fuzz-probe.XXXXXX")"
trap 'rm -rf "$probe"' EXIT
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"$probe/p.cc"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe/p.cc" -o "$probe/p" >"$probe/log" 2>&1; then
  say "skipped: clang-14 cannot link libFuzzer + ASan (install libclang-rt-14-dev libfuzzer-14-dev): $(tail -1 "$probe/log")"
  exit 77
fi

# --- build (ccache keys on paths relative to the checkout, as scripts/test.sh does)
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
jobs="${PTQ_JOBS:-$(nproc)}"
if [[ "${PTQ_FUZZ_NO_BUILD:-0}" == 1 ]]; then
  say "PTQ_FUZZ_NO_BUILD=1: using the fuzz targets already in $build"
else
  say "building fuzz_${targets[*]} in $build (clang-14, ASan + UBSan + coverage)"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DPTQ_FUZZ=ON -DPTQ_BUILD_TESTS=OFF >/dev/null
  nice cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}"
fi

# --- seeds
seeds="$build/seeds"
rm -rf "$seeds"
mkdir -p "$seeds"/{onnx,ptq,npy,npz,pb,config,manifest}
zoo="${PTQ_ZOO-$root/../shared/zoo}"
testdata=/usr/share/libonnx-testdata/data/node
cp "$root/tests/data/digits_cnn.onnx" "$seeds/onnx/"
[[ -n "$zoo" && -f "$zoo/digits_cnn.onnx" ]] && cp "$zoo/digits_cnn.onnx" "$seeds/onnx/zoo_digits_cnn.onnx"
if [[ -d "$testdata" ]]; then
  n=0
  for m in "$testdata"/*/model.onnx; do
    cp "$m" "$seeds/onnx/$(basename "$(dirname "$m")").onnx"
    n=$((n + 1)); ((n < 200)) || break
  done
  n=0
  for p in "$testdata"/*/test_data_set_0/input_0.pb; do
    cp "$p" "$seeds/pb/$(basename "$(dirname "$(dirname "$p")")").pb"
    n=$((n + 1)); ((n < 100)) || break
  done
fi
cp "$root"/configs/*.json "$seeds/config/"
cp "$root/scripts/zoo/manifest.json" "$seeds/manifest/zoo.json"
tool="$root/build/apps/ptq-tool/ptq-tool"
if [[ -x "$tool" ]]; then
  for preset in w8a16 w4a16 w8a8-dynamic; do
    "$tool" quantize "$root/tests/data/digits_cnn.onnx" -c "$preset" -f packed -q -o "$seeds/ptq/digits_$preset.ptq" || true
  done
else
  say "no $tool (scripts/test.sh builds it): the .ptq target starts from tests/fuzz/seeds/ptq only"
fi

# --- runs
export TMPDIR="$build/tmp"
mkdir -p "$TMPDIR"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
summary=()
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  [[ -x "$bin" ]] || { say "unknown target '$t'"; exit 1; }
  corpus="$build/corpus/$t"
  if ((ci)); then
    corpus="$build/corpus-ci/$t"
    rm -rf "$corpus" "$build/findings/$t"
  fi
  findings="$build/findings/$t"
  mkdir -p "$corpus" "$findings"
  log="$build/fuzz_$t.log"
  dirs=("$corpus" "$seeds/$t")
  for extra in "$root/tests/fuzz/seeds/$t" "$root/tests/fuzz/regressions/$t"; do [[ -d "$extra" ]] && dirs+=("$extra"); done
  bound=(-max_total_time="$seconds")
  if ((ci)); then
    bound+=(-runs="${ci_runs[$t]}" -seed=1)
    say "fuzzing $t for ${ci_runs[$t]} executions from seed 1 ($log)"
  else
    say "fuzzing $t for ${seconds}s ($log)"
  fi
  rc=0
  # -malloc_limit_mb: inputs are at most a few MB, so a reader that asks for more than 512 MiB is
  # allocating from untrusted dims (a finding). -timeout: one input may not take 10 s.
  nice "$bin" "${bound[@]}" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
    -artifact_prefix="$findings/" "${dirs[@]}" >"$log" 2>&1 || rc=$?
  execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)"
  rate="$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)"
  found="$(find "$findings" -type f | wc -l)"
  line="$(printf '%-7s %10s execs %7s exec/s  corpus %5s files  findings %s' "$t" "${execs:-?}" "${rate:-?}" \
    "$(find "$corpus" -type f | wc -l)" "$found")"
  summary+=("$line")
  if ((rc != 0 || found > 0)); then
    status=1
    say "FINDING in $t (libFuzzer exit $rc); the report:"
    grep -E 'ERROR|fuzz finding|SUMMARY|Test unit written|out-of-memory|timeout' "$log" | head -20 >&2 || tail -30 "$log" >&2
  fi
done
printf 'fuzz.sh: %s\n' "${summary[@]}"
if ((status == 0)); then
  if ((ci)); then say "no findings (${#targets[@]} targets, fixed executions from seed 1)"
  else say "no findings (${#targets[@]} targets, ${seconds}s each)"; fi
fi
exit "$status"
